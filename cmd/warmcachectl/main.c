/*
 * warmcachectl: speaks CSI to a warmcache socket for a person (and for the
 * demo and the integration tests). Each subcommand is one or two RPCs; the
 * reply is printed as JSON, except `status`, which is a table for a person.
 * Exit status: 0 on OK, 1 when the plugin answered an error (printed as
 * "CODE: message", the same text kubectl describe would show), 2 on usage.
 */
#include "base/macros.h"
#include "base/units.h"
#include "admin.pb-c.h"
#include "csi.pb-c.h"
#include "rpc/client.h"
#include "rpc/pbjson.h"
#include "rpc/pbutil.h"
#include "rpc/status.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The command line and the connection: what every subcommand reads. */
struct ctl {
    struct rpc_client *client;
    char id[512];            /* the volume id argument */
    const char *socket;
    const char *file;        /* -f: create output with volume_id and context */
    json_t *kv;              /* -p / -c key=value pairs */
    json_t *secrets;         /* --secret key=value pairs */
    long long capacity;
    const char *access;      /* ReadOnlyMany | ReadWriteOnce | ReadWriteOncePod */
    int readonly;
    int json;
    double timeout;          /* seconds, may be fractional */
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: warmcachectl [-s SOCKET] COMMAND ...\n"
        "  create NAME -p source=URL [-p key=value]... [--capacity SIZE] [--access MODE] [--secret k=v]...\n"
        "  stage (VOLUME_ID -c key=value... | -f CREATE_OUTPUT.json) STAGING_PATH [--secret k=v]...\n"
        "  publish (VOLUME_ID [-c key=value]... | -f FILE) STAGING_PATH TARGET_PATH [--readonly] [--access MODE]\n"
        "          [--secret k=v]...   (inline volumes: STAGING_PATH \"\", -c csi.storage.k8s.io/ephemeral=true)\n"
        "  unpublish (VOLUME_ID | -f FILE) TARGET_PATH\n"
        "  unstage (VOLUME_ID | -f FILE) STAGING_PATH\n"
        "  delete (VOLUME_ID | -f FILE)\n"
        "  stats (VOLUME_ID | -f FILE) PATH\n"
        "  status [--json]\n"
        "  evict CONTENT_ID...   (delete ready copies nothing uses, as status lists them)\n"
        "  fill SOURCE DIR [-p key=value]... [--secret k=v]... [--secret-file FILE] [--json] ...\n"
        "       (no plugin needed: fills DIR from SOURCE with the node plugin's engine; fill --help)\n"
        "options: -s/--socket PATH (default /var/lib/kubelet/plugins/warmcache.csi.dev/csi.sock, env WARMCACHE_SOCKET)\n"
        "         --access ReadOnlyMany (default) | ReadWriteOnce | ReadWriteOncePod\n"
        "         --capacity SIZE as a PVC writes it (20Gi, 500M, 4096)\n"
        "         --timeout SECONDS (default 600)\n"
        "exit status: 0 OK, 1 the plugin answered an error (\"CODE: message\" on stderr), 2 usage or no socket\n");
}

static int call(struct ctl *x, const char *method, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *out,
                ProtobufCMessage **ret)
{
    struct wc_error e;
    grpc_status_code st = GRPC_STATUS_OK;
    wc_error_clear(&e);
    if (rpc_client_call(x->client, method, req, out, x->timeout, ret, &st, &e) < 0) {
        const char *m = strrchr(method, '/');
        fprintf(stderr, "warmcachectl: %s: %s: %s\n", m ? m + 1 : method, rpc_status_name(st), e.msg);
        return -1;
    }
    return 0;
}

static void print_json(const ProtobufCMessage *m)
{
    json_t *j _cleanup_json_ = pbjson_from_message(m, 1);
    _cleanup_free_ char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", s ? s : "{}");
}

/* Sends req (heap-built, freed here), prints the reply as JSON if asked. */
static int run(struct ctl *x, const char *method, void *req, const ProtobufCMessageDescriptor *out, int print)
{
    ProtobufCMessage *resp = NULL;
    int r = call(x, method, req, out, &resp);
    if (r == 0 && print)
        print_json(resp);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    protobuf_c_message_free_unpacked(req, NULL);
    return r;
}

static Csi__V1__VolumeCapability *capability(const struct ctl *x)
{
    Csi__V1__VolumeCapability *cap = pb_new(&csi__v1__volume_capability__descriptor);
    Csi__V1__VolumeCapability__MountVolume *mv = pb_new(&csi__v1__volume_capability__mount_volume__descriptor);
    Csi__V1__VolumeCapability__AccessMode *am = pb_new(&csi__v1__volume_capability__access_mode__descriptor);
    if (!cap || !mv || !am)
        exit(1);
    cap->access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT;
    cap->mount = mv;
    cap->access_mode = am;
    am->mode = CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_READER_ONLY;
    if (x->access && streq(x->access, "ReadWriteOnce"))
        am->mode = CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER;
    else if (x->access && streq(x->access, "ReadWriteOncePod"))
        am->mode = CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_SINGLE_WRITER;
    else if (x->access && !streq(x->access, "ReadOnlyMany")) {
        fprintf(stderr, "warmcachectl: --access wants ReadOnlyMany, ReadWriteOnce or ReadWriteOncePod\n");
        exit(2);
    }
    return cap;
}

/* The volume id and context: from -f (create output) or argv + -c pairs. */
static const char *volume_arg(struct ctl *x, int *argi, int argc, char **argv, json_t **ret_ctx)
{
    json_t *ctx = json_object();
    if (x->file) {
        json_error_t err;
        json_t *j _cleanup_json_ = streq(x->file, "-") ? json_loadf(stdin, 0, &err) : json_load_file(x->file, 0, &err);
        json_t *vol = json_object_get(j, "volume");
        const char *v = json_string_value(json_object_get(vol, "volume_id"));
        if (!v) {
            fprintf(stderr, "warmcachectl: %s: not the output of `warmcachectl create` (%s)\n", x->file, err.text);
            exit(2);
        }
        snprintf(x->id, sizeof(x->id), "%s", v);
        json_object_update(ctx, json_object_get(vol, "volume_context"));
    } else {
        if (*argi >= argc) {
            usage(stderr);
            exit(2);
        }
        snprintf(x->id, sizeof(x->id), "%s", argv[(*argi)++]);
    }
    json_object_update(ctx, x->kv);
    *ret_ctx = ctx;
    return x->id;
}

static const char *arg(int *argi, int argc, char **argv)
{
    if (*argi >= argc) {
        usage(stderr);
        exit(2);
    }
    return argv[(*argi)++];
}

static void fill_map(json_t *kv, void *field, size_t *n, const ProtobufCMessageDescriptor *d)
{
    const char *k;
    json_t *v;
    json_object_foreach(kv, k, v)
        if (pbmap_add(field, n, d, k, json_string_value(v)) < 0)
            exit(1);
}

static int cmd_create(struct ctl *x, int i, int argc, char **argv)
{
    Csi__V1__CreateVolumeRequest *q = pb_new(&csi__v1__create_volume_request__descriptor);
    q->name = xstrdup(arg(&i, argc, argv));
    q->volume_capabilities = calloc(1, sizeof(void *));
    q->volume_capabilities[q->n_volume_capabilities++] = capability(x);
    fill_map(x->kv, &q->parameters, &q->n_parameters, &csi__v1__create_volume_request__parameters_entry__descriptor);
    fill_map(x->secrets, &q->secrets, &q->n_secrets, &csi__v1__create_volume_request__secrets_entry__descriptor);
    if (x->capacity > 0) {
        q->capacity_range = pb_new(&csi__v1__capacity_range__descriptor);
        q->capacity_range->required_bytes = x->capacity;
    }
    return run(x, "/csi.v1.Controller/CreateVolume", q, &csi__v1__create_volume_response__descriptor, 1);
}

static int cmd_stage(struct ctl *x, int i, int argc, char **argv)
{
    json_t *ctx _cleanup_json_ = NULL;
    Csi__V1__NodeStageVolumeRequest *q = pb_new(&csi__v1__node_stage_volume_request__descriptor);
    q->volume_id = xstrdup(volume_arg(x, &i, argc, argv, &ctx));
    q->staging_target_path = xstrdup(arg(&i, argc, argv));
    q->volume_capability = capability(x);
    fill_map(ctx, &q->volume_context, &q->n_volume_context,
             &csi__v1__node_stage_volume_request__volume_context_entry__descriptor);
    fill_map(x->secrets, &q->secrets, &q->n_secrets, &csi__v1__node_stage_volume_request__secrets_entry__descriptor);
    return run(x, "/csi.v1.Node/NodeStageVolume", q, &csi__v1__node_stage_volume_response__descriptor, 0);
}

static int cmd_publish(struct ctl *x, int i, int argc, char **argv)
{
    json_t *ctx _cleanup_json_ = NULL;
    Csi__V1__NodePublishVolumeRequest *q = pb_new(&csi__v1__node_publish_volume_request__descriptor);
    q->volume_id = xstrdup(volume_arg(x, &i, argc, argv, &ctx));
    q->staging_target_path = xstrdup(arg(&i, argc, argv));
    q->target_path = xstrdup(arg(&i, argc, argv));
    q->volume_capability = capability(x);
    q->readonly = x->readonly;
    fill_map(ctx, &q->volume_context, &q->n_volume_context,
             &csi__v1__node_publish_volume_request__volume_context_entry__descriptor);
    /* an inline volume's nodePublishSecretRef, as kubelet sends it */
    fill_map(x->secrets, &q->secrets, &q->n_secrets, &csi__v1__node_publish_volume_request__secrets_entry__descriptor);
    return run(x, "/csi.v1.Node/NodePublishVolume", q, &csi__v1__node_publish_volume_response__descriptor, 0);
}

static int cmd_unpublish(struct ctl *x, int i, int argc, char **argv)
{
    json_t *ctx _cleanup_json_ = NULL;
    Csi__V1__NodeUnpublishVolumeRequest *q = pb_new(&csi__v1__node_unpublish_volume_request__descriptor);
    q->volume_id = xstrdup(volume_arg(x, &i, argc, argv, &ctx));
    q->target_path = xstrdup(arg(&i, argc, argv));
    return run(x, "/csi.v1.Node/NodeUnpublishVolume", q, &csi__v1__node_unpublish_volume_response__descriptor, 0);
}

static int cmd_unstage(struct ctl *x, int i, int argc, char **argv)
{
    json_t *ctx _cleanup_json_ = NULL;
    Csi__V1__NodeUnstageVolumeRequest *q = pb_new(&csi__v1__node_unstage_volume_request__descriptor);
    q->volume_id = xstrdup(volume_arg(x, &i, argc, argv, &ctx));
    q->staging_target_path = xstrdup(arg(&i, argc, argv));
    return run(x, "/csi.v1.Node/NodeUnstageVolume", q, &csi__v1__node_unstage_volume_response__descriptor, 0);
}

static int cmd_delete(struct ctl *x, int i, int argc, char **argv)
{
    json_t *ctx _cleanup_json_ = NULL;
    Csi__V1__DeleteVolumeRequest *q = pb_new(&csi__v1__delete_volume_request__descriptor);
    q->volume_id = xstrdup(volume_arg(x, &i, argc, argv, &ctx));
    return run(x, "/csi.v1.Controller/DeleteVolume", q, &csi__v1__delete_volume_response__descriptor, 0);
}

static int cmd_stats(struct ctl *x, int i, int argc, char **argv)
{
    json_t *ctx _cleanup_json_ = NULL;
    Csi__V1__NodeGetVolumeStatsRequest *q = pb_new(&csi__v1__node_get_volume_stats_request__descriptor);
    q->volume_id = xstrdup(volume_arg(x, &i, argc, argv, &ctx));
    q->volume_path = xstrdup(arg(&i, argc, argv));
    return run(x, "/csi.v1.Node/NodeGetVolumeStats", q, &csi__v1__node_get_volume_stats_response__descriptor, 1);
}

static void ago(int64_t t, char *out, size_t n)
{
    int64_t d = (int64_t)time(NULL) - t;
    if (t <= 0)
        snprintf(out, n, "-");
    else if (d < 120)
        snprintf(out, n, "%llds ago", (long long)d);
    else if (d < 7200)
        snprintf(out, n, "%lldm ago", (long long)d / 60);
    else
        snprintf(out, n, "%lldh ago", (long long)d / 3600);
}

static int cmd_status(struct ctl *x, int i, int argc, char **argv)
{
    Csi__V1__ProbeRequest probe = CSI__V1__PROBE_REQUEST__INIT;
    Csi__V1__ProbeResponse *pr = NULL;
    Warmcache__Admin__V1__StatusRequest sq = WARMCACHE__ADMIN__V1__STATUS_REQUEST__INIT;
    Warmcache__Admin__V1__StatusResponse *s = NULL;
    if (call(x, "/csi.v1.Identity/Probe", &probe.base, &csi__v1__probe_response__descriptor, (ProtobufCMessage **)&pr) < 0)
        return -1;
    if (call(x, "/warmcache.admin.v1.Admin/Status", &sq.base, &warmcache__admin__v1__status_response__descriptor,
             (ProtobufCMessage **)&s) < 0) {
        protobuf_c_message_free_unpacked(&pr->base, NULL);
        return -1;
    }
    int r = 0;
    if (x->json) {
        print_json(&s->base);
        goto out;
    }
    char tot[32], fr[32], ev[32], sz[32], when[32], got[32];
    fmt_bytes(s->store_total_bytes, tot, sizeof(tot));
    fmt_bytes(s->store_free_bytes, fr, sizeof(fr));
    fmt_bytes(s->store_evictable_bytes, ev, sizeof(ev));
    fmt_bytes(s->bytes_fetched_total, got, sizeof(got));
    printf("node %s   store %s   %s free + %s evictable, of %s   fetched %s since start   %s\n\n", s->node_id,
           s->store_root, fr, ev, tot, got, pr->ready && pr->ready->value ? "ready" : "NOT READY");
    printf("%-34s %-8s %7s %10s %4s %9s  %s\n", "COPY", "STATE", "FILES", "SIZE", "REFS", "LAST USE", "SOURCE");
    for (size_t k = 0; k < s->n_copies; k++) {
        const Warmcache__Admin__V1__Copy *cp = s->copies[k];
        fmt_bytes(cp->bytes_total, sz, sizeof(sz));
        ago(cp->last_used_unix, when, sizeof(when));
        printf("%-34s %-8s %7" PRIu64 " %10s %4u %9s  %s\n", cp->content_id, cp->state, cp->files_total, sz,
               cp->refs, when, cp->source[0] ? cp->source : "-");
        if (cp->message[0])
            printf("%-34s   %s\n", "", cp->message);
    }
    if (s->n_copies == 0)
        printf("(no copies on this node yet)\n");
    printf("\n%-40s %-34s %s\n", "VOLUME", "COPY", "STAGED AT -> PUBLISHED AT");
    for (size_t k = 0; k < s->n_volumes; k++) {
        const Warmcache__Admin__V1__StagedVolume *v = s->volumes[k];
        printf("%-40s %-34s %s\n", v->volume_id, v->content_id, v->staging_path);
        for (size_t t = 0; t < v->n_targets; t++)
            printf("%-40s %-34s   -> %s\n", "", "", v->targets[t]);
    }
    if (s->n_volumes == 0)
        printf("(no volumes staged)\n");
out:
    protobuf_c_message_free_unpacked(&pr->base, NULL);
    protobuf_c_message_free_unpacked(&s->base, NULL);
    return r;
}

static int cmd_evict(struct ctl *x, int i, int argc, char **argv)
{
    if (i >= argc) {
        usage(stderr);
        exit(2);
    }
    int r = 0;
    for (; i < argc && r == 0; i++) {
        Warmcache__Admin__V1__EvictRequest *q = pb_new(&warmcache__admin__v1__evict_request__descriptor);
        Warmcache__Admin__V1__EvictResponse *resp = NULL;
        q->content_id = xstrdup(argv[i]);
        r = call(x, "/warmcache.admin.v1.Admin/Evict", &q->base, &warmcache__admin__v1__evict_response__descriptor,
                 (ProtobufCMessage **)&resp);
        if (r == 0) {
            char b[32];
            fmt_bytes(resp->freed_bytes, b, sizeof(b));
            printf("evicted %s: %s freed\n", argv[i], b);
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        }
        protobuf_c_message_free_unpacked(&q->base, NULL);
    }
    return r;
}

int cmd_fill(int argc, char **argv); /* fill.c */

int main(int argc, char **argv)
{
    if (argc >= 2 && streq(argv[1], "fill"))
        return cmd_fill(argc - 1, argv + 1);
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'}, {"param", required_argument, NULL, 'p'},
        {"context", required_argument, NULL, 'c'}, {"file", required_argument, NULL, 'f'},
        {"capacity", required_argument, NULL, 'C'}, {"access", required_argument, NULL, 'a'},
        {"readonly", no_argument, NULL, 'r'},      {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {"secret", required_argument, NULL, 'S'},
        {0},
    };
    struct ctl ctl = {0}, *x = &ctl;
    x->socket = getenv("WARMCACHE_SOCKET") ?: "/var/lib/kubelet/plugins/warmcache.csi.dev/csi.sock";
    x->kv = json_object();
    x->secrets = json_object();
    x->timeout = 600;
    int o;
    /* "+" would stop at the first non-option; we allow options anywhere */
    while ((o = getopt_long(argc, argv, "s:p:c:f:h", opts, NULL)) != -1) {
        switch (o) {
        case 's': x->socket = optarg; break;
        case 'p': case 'c': case 'S': {
            char *eq = strchr(optarg, '=');
            if (!eq) {
                fprintf(stderr, "warmcachectl: %s wants key=value, got \"%s\"\n",
                        o == 'S' ? "--secret" : o == 'p' ? "-p" : "-c", optarg);
                return 2;
            }
            *eq = '\0';
            json_object_set_new(o == 'S' ? x->secrets : x->kv, optarg, json_string(eq + 1));
            break;
        }
        case 'f': x->file = optarg; break;
        case 'C': {
            uint64_t b;
            if (parse_bytes(optarg, &b) < 0 || b > INT64_MAX) {
                fprintf(stderr, "warmcachectl: --capacity wants bytes as a PVC writes them (20Gi, 500M, 4096), "
                                "not \"%s\"\n", optarg);
                return 2;
            }
            x->capacity = (long long)b;
            break;
        }
        case 'a': x->access = optarg; break;
        case 'r': x->readonly = 1; break;
        case 'j': x->json = 1; break;
        case 't': {
            char *end;
            x->timeout = strtod(optarg, &end);
            if (end == optarg || *end || !(x->timeout > 0 && x->timeout <= 86400)) {
                fprintf(stderr, "warmcachectl: --timeout wants seconds, more than 0 and at most 86400, not "
                                "\"%s\"\n", optarg);
                return 2;
            }
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    static const struct {
        const char *name;
        int (*fn)(struct ctl *, int, int, char **);
    } cmds[] = {
        {"create", cmd_create}, {"stage", cmd_stage}, {"publish", cmd_publish}, {"unpublish", cmd_unpublish},
        {"unstage", cmd_unstage}, {"delete", cmd_delete}, {"stats", cmd_stats}, {"status", cmd_status},
        {"evict", cmd_evict},
    };
    const char *name = argv[optind];
    for (size_t k = 0; k < ARRAY_SIZE(cmds); k++)
        if (streq(cmds[k].name, name)) {
            struct wc_error e;
            wc_error_clear(&e);
            if (rpc_client_open(x->socket, &x->client, &e) < 0) {
                fprintf(stderr, "warmcachectl: %s\n", e.msg);
                return 2;
            }
            int r = cmds[k].fn(x, optind + 1, argc, argv);
            rpc_client_close(x->client);
            json_decref(x->kv);
            json_decref(x->secrets);
            return r < 0 ? 1 : 0;
        }
    fprintf(stderr, "warmcachectl: unknown command \"%s\"\n", name);
    usage(stderr);
    return 2;
}
