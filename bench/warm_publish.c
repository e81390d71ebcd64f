/*
 * Warm path benchmark: NodeStageVolume + NodePublishVolume of a volume whose
 * copy is already on the node, as kubelet calls them for the second pod on a
 * node. Each run stages and publishes at fresh paths (timed), then unpublishes
 * and unstages (not timed). Prints one JSON row with p50/p99 in milliseconds.
 *
 * usage: bench_warm_publish SOCKET VOLUME.json WORKDIR RUNS
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "csi.pb-c.h"
#include "rpc/client.h"
#include "rpc/pbutil.h"

static struct rpc_client *cl;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void must(const char *method, ProtobufCMessage *req, const ProtobufCMessageDescriptor *out)
{
    ProtobufCMessage *resp = NULL;
    grpc_status_code st;
    struct wc_error e;
    if (rpc_client_call(cl, method, req, out, 120, &resp, &st, &e) < 0) {
        fprintf(stderr, "bench_warm_publish: %s: %d: %s\n", method, st, e.msg);
        exit(1);
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    protobuf_c_message_free_unpacked(req, NULL);
}

static Csi__V1__VolumeCapability *cap(void)
{
    Csi__V1__VolumeCapability *c = pb_new(&csi__v1__volume_capability__descriptor);
    c->access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT;
    c->mount = pb_new(&csi__v1__volume_capability__mount_volume__descriptor);
    c->access_mode = pb_new(&csi__v1__volume_capability__access_mode__descriptor);
    c->access_mode->mode = CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_READER_ONLY;
    return c;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: bench_warm_publish SOCKET VOLUME.json WORKDIR RUNS\n");
        return 2;
    }
    int runs = atoi(argv[4]);
    json_t *vol = json_object_get(json_load_file(argv[2], 0, NULL), "volume");
    const char *id = json_string_value(json_object_get(vol, "volume_id"));
    json_t *ctx = json_object_get(vol, "volume_context");
    struct wc_error e;
    if (!id || runs < 1 || rpc_client_open(argv[1], &cl, &e) < 0) {
        fprintf(stderr, "bench_warm_publish: bad arguments\n");
        return 2;
    }
    double *ms = calloc((size_t)runs, sizeof(double));
    for (int i = 0; i < runs; i++) {
        char staging[512], target[512];
        snprintf(staging, sizeof(staging), "%s/staging-%d", argv[3], i);
        snprintf(target, sizeof(target), "%s/pod-%d/volume", argv[3], i);

        Csi__V1__NodeStageVolumeRequest *st = pb_new(&csi__v1__node_stage_volume_request__descriptor);
        st->volume_id = xstrdup(id);
        st->staging_target_path = xstrdup(staging);
        st->volume_capability = cap();
        const char *k;
        json_t *v;
        json_object_foreach(ctx, k, v)
            pbmap_add(&st->volume_context, &st->n_volume_context,
                      &csi__v1__node_stage_volume_request__volume_context_entry__descriptor, k, json_string_value(v));
        Csi__V1__NodePublishVolumeRequest *pu = pb_new(&csi__v1__node_publish_volume_request__descriptor);
        pu->volume_id = xstrdup(id);
        pu->staging_target_path = xstrdup(staging);
        pu->target_path = xstrdup(target);
        pu->volume_capability = cap();
        pu->readonly = 1;

        double t0 = now_ms();
        must("/csi.v1.Node/NodeStageVolume", &st->base, &csi__v1__node_stage_volume_response__descriptor);
        must("/csi.v1.Node/NodePublishVolume", &pu->base, &csi__v1__node_publish_volume_response__descriptor);
        ms[i] = now_ms() - t0;

        Csi__V1__NodeUnpublishVolumeRequest *un = pb_new(&csi__v1__node_unpublish_volume_request__descriptor);
        un->volume_id = xstrdup(id);
        un->target_path = xstrdup(target);
        must("/csi.v1.Node/NodeUnpublishVolume", &un->base, &csi__v1__node_unpublish_volume_response__descriptor);
        Csi__V1__NodeUnstageVolumeRequest *us = pb_new(&csi__v1__node_unstage_volume_request__descriptor);
        us->volume_id = xstrdup(id);
        us->staging_target_path = xstrdup(staging);
        must("/csi.v1.Node/NodeUnstageVolume", &us->base, &csi__v1__node_unstage_volume_response__descriptor);
    }
    qsort(ms, (size_t)runs, sizeof(double), cmp);
    double p50 = ms[runs / 2], p99 = ms[(int)(runs * 0.99) < runs ? (int)(runs * 0.99) : runs - 1];
    printf("{\"bench\": \"warm-publish\", \"runs\": %d, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f}\n", runs,
           p50, p99, ms[runs - 1]);
    rpc_client_close(cl);
    return 0;
}
