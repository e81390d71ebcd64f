/*
 * The node handlers against a fake mounter (fake_mount.h), without root:
 * what kubelet's retries rely on. Each call made twice gives the same answer
 * and mounts nothing twice; a mount that fails or a reboot leaves nothing a
 * retry trips on; and each refusal maps to the gRPC code the CSI spec names
 * for it. The real mounts are covered by the integration tests (root).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fsutil.h"
#include "csi/csi.h"
#include "csi/params.h"
#include "fake_mount.h"
#include "rpc/pbutil.h"
#include "rpc/status.h"

#define VOL "pvc-7d3c-model"

struct t {
    char root[PATH_MAX], src[PATH_MAX], url[PATH_MAX + 16], staging[PATH_MAX], target[PATH_MAX];
    struct fake_mounter fm;
    struct csi_config cfg;      /* strings below live as long as the test */
    char store[PATH_MAX + 16], kubelet[PATH_MAX + 16], allowed[PATH_MAX + 32];
    struct csi_ctx c;
    struct wc_error e;
};

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    struct t *t = calloc(1, sizeof(*t));
    snprintf(t->root, sizeof(t->root), "/tmp/wc-node.XXXXXX");
    assert_non_null(mkdtemp(t->root));
    snprintf(t->src, sizeof(t->src), "%s/src", t->root);
    assert_int_equal(fs_mkdir_p(t->src, 0755), 0);
    char p[PATH_MAX + 32];
    snprintf(p, sizeof(p), "%s/config.json", t->src);
    write_file(p, "{\"hidden_size\": 4096}\n");
    snprintf(p, sizeof(p), "%s/model.safetensors", t->src);
    write_file(p, "weights weights weights\n");
    snprintf(t->url, sizeof(t->url), "file://%s/", t->src);
    snprintf(t->staging, sizeof(t->staging), "%s/kubelet/staging/" VOL, t->root);
    snprintf(t->target, sizeof(t->target), "%s/kubelet/pods/p1/mount", t->root);
    snprintf(t->store, sizeof(t->store), "%s/store", t->root);
    snprintf(t->kubelet, sizeof(t->kubelet), "%s/kubelet", t->root);
    snprintf(t->allowed, sizeof(t->allowed), "file://%s", t->src);
    fake_mounter_init(&t->fm);
    t->cfg = (struct csi_config){
        .node = 1, .node_id = "node-a", .disks = {.mode = STORE_DIRECTORY, .path = t->store}, .fill_wait_s = 20,
        .high_pct = 95, .low_pct = 90, .kube = "off", .allowed_sources = t->allowed, .kubelet_dir = t->kubelet,
        .mounter = &t->fm.base, .bound_ops = &fake_bounds,
    };
    wc_error_clear(&t->e);
    if (csi_ctx_init(&t->c, &t->cfg, &t->e) < 0)
        fail_msg("csi_ctx_init: %s", t->e.msg);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct t *t = *state;
    csi_ctx_fini(&t->c);
    fs_rm_rf(t->root);
    free(t);
    return 0;
}

static Csi__V1__VolumeCapability *capability(int mode)
{
    Csi__V1__VolumeCapability *cap = pb_new(&csi__v1__volume_capability__descriptor);
    cap->access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT;
    cap->mount = pb_new(&csi__v1__volume_capability__mount_volume__descriptor);
    cap->access_mode = pb_new(&csi__v1__volume_capability__access_mode__descriptor);
    cap->access_mode->mode = mode;
    return cap;
}

#define RO CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_READER_ONLY
#define RWO CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER

/* Runs a handler the way rpc/ does and answers the gRPC code a CO would see. */
static grpc_status_code call(struct t *t, rpc_handler_fn fn, ProtobufCMessage *req)
{
    ProtobufCMessage *resp = NULL;
    wc_error_clear(&t->e);
    int r = fn(&t->c, req, &resp, NULL, &t->e);
    protobuf_c_message_free_unpacked(req, NULL);
    if (r == 0)
        assert_non_null(resp); /* a reply on success, always */
    else
        assert_null(resp);     /* and none on failure */
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return r == 0 ? GRPC_STATUS_OK : rpc_status_from_errno(r);
}

static grpc_status_code stage_at(struct t *t, const char *volid, const char *url, const char *staging)
{
    Csi__V1__NodeStageVolumeRequest *q = pb_new(&csi__v1__node_stage_volume_request__descriptor);
    q->volume_id = xstrdup(volid);
    q->staging_target_path = xstrdup(staging);
    q->volume_capability = capability(RO);
    pbmap_add(&q->volume_context, &q->n_volume_context,
              &csi__v1__node_stage_volume_request__volume_context_entry__descriptor, CTX_SOURCE, url);
    return call(t, node_stage_volume, &q->base);
}

static grpc_status_code stage(struct t *t)
{
    return stage_at(t, VOL, t->url, t->staging);
}

static grpc_status_code publish_as(struct t *t, const char *target, int mode, int readonly)
{
    Csi__V1__NodePublishVolumeRequest *q = pb_new(&csi__v1__node_publish_volume_request__descriptor);
    q->volume_id = xstrdup(VOL);
    q->staging_target_path = xstrdup(t->staging);
    q->target_path = xstrdup(target);
    q->volume_capability = capability(mode);
    q->readonly = readonly;
    pbmap_add(&q->volume_context, &q->n_volume_context,
              &csi__v1__node_publish_volume_request__volume_context_entry__descriptor, CTX_SOURCE, t->url);
    return call(t, node_publish_volume, &q->base);
}

/* A read-write publish with the PV's mountOptions. */
static grpc_status_code publish_flags(struct t *t, const char *const *flags, size_t n)
{
    Csi__V1__NodePublishVolumeRequest *q = pb_new(&csi__v1__node_publish_volume_request__descriptor);
    q->volume_id = xstrdup(VOL);
    q->staging_target_path = xstrdup(t->staging);
    q->target_path = xstrdup(t->target);
    q->volume_capability = capability(RWO);
    q->volume_capability->mount->mount_flags = calloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        q->volume_capability->mount->mount_flags[q->volume_capability->mount->n_mount_flags++] = xstrdup(flags[i]);
    pbmap_add(&q->volume_context, &q->n_volume_context,
              &csi__v1__node_publish_volume_request__volume_context_entry__descriptor, CTX_SOURCE, t->url);
    return call(t, node_publish_volume, &q->base);
}

static grpc_status_code publish(struct t *t)
{
    return publish_as(t, t->target, RO, 1);
}

static grpc_status_code unpublish_at(struct t *t, const char *target)
{
    Csi__V1__NodeUnpublishVolumeRequest *q = pb_new(&csi__v1__node_unpublish_volume_request__descriptor);
    q->volume_id = xstrdup(VOL);
    q->target_path = xstrdup(target);
    return call(t, node_unpublish_volume, &q->base);
}

static grpc_status_code unpublish(struct t *t)
{
    return unpublish_at(t, t->target);
}

static grpc_status_code unstage(struct t *t)
{
    Csi__V1__NodeUnstageVolumeRequest *q = pb_new(&csi__v1__node_unstage_volume_request__descriptor);
    q->volume_id = xstrdup(VOL);
    q->staging_target_path = xstrdup(t->staging);
    return call(t, node_unstage_volume, &q->base);
}

/* ---- idempotence: the same call twice, the same answer, one mount -------- */

static void stage_twice_mounts_once(void **state)
{
    struct t *t = *state;
    assert_int_equal(stage(t), GRPC_STATUS_OK);
    const struct fake_mount *m = NULL;
    assert_int_equal(fake_mounted(&t->fm, t->staging, &m), 1);
    assert_true(m->readonly);
    assert_non_null(strstr(m->source, "/store/content/")); /* the copy, never the source itself */
    char file[PATH_MAX + 32];
    snprintf(file, sizeof(file), "%s/model.safetensors", m->source);
    assert_int_equal(access(file, R_OK), 0); /* filled before it was mounted */
    unsigned mounts = t->fm.mounts;
    assert_int_equal(stage(t), GRPC_STATUS_OK);
    assert_int_equal(t->fm.mounts, mounts);
    assert_int_equal(fake_mounted(&t->fm, t->staging, NULL), 1);
}

static void stage_elsewhere_is_refused(void **state)
{
    struct t *t = *state;
    assert_int_equal(stage(t), GRPC_STATUS_OK);
    char other[PATH_MAX + 16];
    snprintf(other, sizeof(other), "%s-other", t->staging);
    assert_int_equal(stage_at(t, VOL, t->url, other), GRPC_STATUS_ALREADY_EXISTS);
    assert_non_null(strstr(t->e.msg, "already staged at"));
    assert_int_equal(fake_mounted(&t->fm, other, NULL), 0);
}

static void publish_twice_mounts_once(void **state)
{
    struct t *t = *state;
    assert_int_equal(stage(t), GRPC_STATUS_OK);
    assert_int_equal(publish(t), GRPC_STATUS_OK);
    const struct fake_mount *m = NULL;
    assert_int_equal(fake_mounted(&t->fm, t->target, &m), 1);
    assert_true(m->readonly);
    unsigned mounts = t->fm.mounts;
    assert_int_equal(publish(t), GRPC_STATUS_OK);
    assert_int_equal(t->fm.mounts, mounts);
    assert_int_equal(fake_mounted(&t->fm, t->target, NULL), 1);
}

static void publish_again_with_other_options_is_refused(void **state)
{
    struct t *t = *state;
    assert_int_equal(stage(t), GRPC_STATUS_OK);
    assert_int_equal(publish(t), GRPC_STATUS_OK);
    assert_int_equal(publish_as(t, t->target, RWO, 0), GRPC_STATUS_ALREADY_EXISTS);
    assert_non_null(strstr(t->e.msg, "other options"));
    const struct fake_mount *m = NULL;
    assert_int_equal(fake_mounted(&t->fm, t->target, &m), 1);
    assert_true(m->readonly); /* the read-only mount stays as it was */
}

static void unpublish_twice_is_ok(void **state)
{
    struct t *t = *state;
    assert_int_equal(stage(t), GRPC_STATUS_OK);
    assert_int_equal(publish(t), GRPC_STATUS_OK);
    assert_int_equal(unpublish(t), GRPC_STATUS_OK);
    assert_int_equal(fake_mounted(&t->fm, t->target, NULL), 0);
    struct stat st;
    assert_int_equal(stat(t->target, &st), -1); /* the target directory is ours to remove */
    unsigned umounts = t->fm.umounts;
    assert_int_equal(unpublish(t), GRPC_STATUS_OK);
    assert_int_equal(t->fm.umounts, umounts);
    /* kubelet may unpublish a target it never got to publish */
    char never[PATH_MAX + 16];
    snprintf(never, sizeof(never), "%s-never", t->target);
    assert_int_equal(unpublish_at(t, never), GRPC_STATUS_OK);
}

static void unstage_twice_is_ok(void **state)
{
    struct t *t = *state;
    assert_int_equal(stage(t), GRPC_STATUS_OK);
    uint64_t fetched = atomic_load(&t->c.jobs.fetched_total);
    assert_true(fetched > 0);
    assert_int_equal(unstage(t), GRPC_STATUS_OK);
    assert_int_equal(fake_mounted(&t->fm, t->staging, NULL), 0);
    unsigned umounts = t->fm.umounts;
    assert_int_equal(unstage(t), GRPC_STATUS_OK);
    assert_int_equal(t->fm.umounts, umounts);
    /* and the volume stages again from the copy still there: listed again (it
     * pins no listing), not one byte fetched again */
    assert_int_equal(stage(t), GRPC_STATUS_OK);
    assert_int_equal(atomic_load(&t->c.jobs.fetched_total), fetched);
    assert_int_equal(fake_mounted(&t->fm, t->staging, NULL), 1);
}

/* ---- order and failure ---------------------------------------------------- */

static void unstage_while_published_is_refused(void **state)
{
    struct t *t = *state;
    assert_int_equal(stage(t), GRPC_STATUS_OK);
    assert_int_equal(publish(t), GRPC_STATUS_OK);
    assert_int_equal(unstage(t), GRPC_STATUS_FAILED_PRECONDITION);
    assert_non_null(strstr(t->e.msg, "still published"));
    assert_int_equal(fake_mounted(&t->fm, t->staging, NULL), 1); /* the pod's copy is still there */
    assert_int_equal(unpublish(t), GRPC_STATUS_OK);
    assert_int_equal(unstage(t), GRPC_STATUS_OK);
}

static void publish_before_stage_is_a_failed_precondition(void **state)
{
    struct t *t = *state;
    assert_int_equal(publish(t), GRPC_STATUS_FAILED_PRECONDITION);
    assert_non_null(strstr(t->e.msg, "NodeStageVolume must come first"));
    assert_int_equal(t->fm.n, 0);
}

static void a_failed_mount_leaves_nothing_a_retry_trips_on(void **state)
{
    struct t *t = *state;
    t->fm.fail_next_mount = -EIO;
    assert_int_equal(stage(t), GRPC_STATUS_INTERNAL);
    assert_int_equal(fake_mounted(&t->fm, t->staging, NULL), 0);
    assert_int_equal(stage(t), GRPC_STATUS_OK); /* kubelet's retry */
    t->fm.fail_next_mount = -EIO;
    assert_int_equal(publish(t), GRPC_STATUS_INTERNAL);
    /* the failed target is not counted as published: unstage is not blocked */
    assert_int_equal(unstage(t), GRPC_STATUS_OK);
    assert_int_equal(t->fm.n, 0);
}

static void after_a_reboot_stage_and_publish_mount_again(void **state)
{
    struct t *t = *state;
    assert_int_equal(stage(t), GRPC_STATUS_OK);
    assert_int_equal(publish(t), GRPC_STATUS_OK);
    fake_reboot(&t->fm);
    assert_int_equal(stage(t), GRPC_STATUS_OK);
    assert_int_equal(fake_mounted(&t->fm, t->staging, NULL), 1);
    assert_int_equal(publish(t), GRPC_STATUS_OK);
    assert_int_equal(fake_mounted(&t->fm, t->target, NULL), 1);
}

/* The node rebooted and the plugin starts again: it reconciles its records
 * with what is mounted (nothing), and kubelet's calls mount it all again. */
static void after_a_reboot_and_a_restart_the_calls_mount_again(void **state)
{
    struct t *t = *state;
    assert_int_equal(stage(t), GRPC_STATUS_OK);
    assert_int_equal(publish(t), GRPC_STATUS_OK);
    unsigned mounts = t->fm.mounts;
    csi_ctx_fini(&t->c);
    fake_reboot(&t->fm);
    if (csi_ctx_init(&t->c, &t->cfg, &t->e) < 0)
        fail_msg("csi_ctx_init after the reboot: %s", t->e.msg);
    assert_int_equal(t->fm.n, 0);
    assert_int_equal(publish(t), GRPC_STATUS_FAILED_PRECONDITION); /* publish before stage: stage first */
    assert_non_null(strstr(t->e.msg, "NodeStageVolume must come first"));
    assert_int_equal(stage(t), GRPC_STATUS_OK);
    assert_int_equal(atomic_load(&t->c.jobs.fetched_total), 0); /* the copy was kept: found, not filled again */
    assert_int_equal(publish(t), GRPC_STATUS_OK);
    assert_int_equal(t->fm.mounts, mounts + 2);
    assert_int_equal(unpublish(t), GRPC_STATUS_OK);
    assert_int_equal(unstage(t), GRPC_STATUS_OK);
    assert_int_equal(t->fm.n, 0);
}

/* Two pods writing to one volume each get a layer of their own, and a pod
 * published again starts from an empty one. */
static void each_writable_publish_has_a_fresh_layer_of_its_own(void **state)
{
    struct t *t = *state;
    char second[PATH_MAX + 16], upper1[PATH_MAX], note[PATH_MAX + 16];
    snprintf(second, sizeof(second), "%s/kubelet/pods/p2/mount", t->root);
    assert_int_equal(stage(t), GRPC_STATUS_OK);
    assert_int_equal(publish_as(t, t->target, RWO, 0), GRPC_STATUS_OK);
    assert_int_equal(publish_as(t, second, RWO, 0), GRPC_STATUS_OK);
    const struct fake_mount *a = NULL, *b = NULL;
    assert_int_equal(fake_mounted(&t->fm, t->target, &a), 1);
    assert_int_equal(fake_mounted(&t->fm, second, &b), 1);
    assert_true(a->overlay && b->overlay && a->upper[0] && b->upper[0]);
    assert_string_not_equal(a->upper, b->upper);
    snprintf(upper1, sizeof(upper1), "%s", a->upper);
    snprintf(note, sizeof(note), "%s/written-by-p1", upper1);
    write_file(note, "p1's scratch\n");
    assert_int_equal(unpublish(t), GRPC_STATUS_OK);
    assert_int_equal(publish_as(t, t->target, RWO, 0), GRPC_STATUS_OK);
    assert_int_equal(access(note, F_OK), -1); /* the next pod does not see it */
}

static void a_writable_publish_gets_its_own_layer(void **state)
{
    struct t *t = *state;
    assert_int_equal(stage(t), GRPC_STATUS_OK);
    assert_int_equal(publish_as(t, t->target, RWO, 0), GRPC_STATUS_OK);
    const struct fake_mount *m = NULL;
    assert_int_equal(fake_mounted(&t->fm, t->target, &m), 1);
    assert_true(m->overlay);
    assert_false(m->readonly);
    assert_int_equal(publish_as(t, t->target, RWO, 0), GRPC_STATUS_OK); /* idempotent too */
    assert_int_equal(fake_mounted(&t->fm, t->target, NULL), 1);
    assert_int_equal(unpublish(t), GRPC_STATUS_OK);
    assert_int_equal(unstage(t), GRPC_STATUS_OK);
    assert_int_equal(t->fm.n, 0);
}

/* ---- bad requests --------------------------------------------------------- */

static void bad_requests_name_what_to_fix(void **state)
{
    struct t *t = *state;
    assert_int_equal(stage_at(t, "", t->url, t->staging), GRPC_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(t->e.msg, "volume id is required"));
    assert_int_equal(stage_at(t, VOL, t->url, "relative/staging"), GRPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(stage_at(t, VOL, "file:///etc/", t->staging), GRPC_STATUS_PERMISSION_DENIED);
    assert_non_null(strstr(t->e.msg, "is never served"));
    /* the kubelet's own tree (other pods' volumes, their tokens) is never served, even if allowed */
    char kubelet_url[PATH_MAX + 32];
    snprintf(kubelet_url, sizeof(kubelet_url), "file://%s/pods/", t->kubelet);
    assert_int_equal(stage_at(t, VOL, kubelet_url, t->staging), GRPC_STATUS_PERMISSION_DENIED);
    assert_non_null(strstr(t->e.msg, "is never served"));
    assert_int_equal(stage_at(t, VOL, "ftp://models/", t->staging), GRPC_STATUS_INVALID_ARGUMENT);
    char missing[PATH_MAX + 32];
    snprintf(missing, sizeof(missing), "file://%s/none/", t->src);
    assert_int_not_equal(stage_at(t, VOL, missing, t->staging), GRPC_STATUS_OK);
    assert_int_equal(t->fm.n, 0); /* nothing mounted for any of them */
}

/* mountOptions: whole words of the allowed list only, named back when not */
static void mount_options_are_whole_allowed_words(void **state)
{
    struct t *t = *state;
    assert_int_equal(stage(t), GRPC_STATUS_OK);
    const char *const joined[] = {"noatime nodiratime"};
    const char *const part[] = {"noat"};
    const char *const other[] = {"noatime", "exec"};
    const char *const comma[] = {"noatime,suid"};
    const char *const *bad[] = {joined, part, other, comma};
    const size_t nbad[] = {1, 1, 2, 1};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(publish_flags(t, bad[i], nbad[i]), GRPC_STATUS_INVALID_ARGUMENT);
        assert_non_null(strstr(t->e.msg, "is not supported; allowed: noexec"));
        assert_int_equal(fake_mounted(&t->fm, t->target, NULL), 0);
    }
    const char *const good[] = {"noatime", "nodiratime", "ro"};
    assert_int_equal(publish_flags(t, good, 3), GRPC_STATUS_OK);
    const struct fake_mount *m = NULL;
    assert_int_equal(fake_mounted(&t->fm, t->target, &m), 1);
    assert_true(m->readonly); /* "ro" makes the writable request a read-only bind */
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(stage_twice_mounts_once),
        T(mount_options_are_whole_allowed_words),
        T(after_a_reboot_and_a_restart_the_calls_mount_again),
        T(each_writable_publish_has_a_fresh_layer_of_its_own),
        T(stage_elsewhere_is_refused),
        T(publish_twice_mounts_once),
        T(publish_again_with_other_options_is_refused),
        T(unpublish_twice_is_ok),
        T(unstage_twice_is_ok),
        T(unstage_while_published_is_refused),
        T(publish_before_stage_is_a_failed_precondition),
        T(a_failed_mount_leaves_nothing_a_retry_trips_on),
        T(after_a_reboot_stage_and_publish_mount_again),
        T(a_writable_publish_gets_its_own_layer),
        T(bad_requests_name_what_to_fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
