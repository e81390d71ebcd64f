/*
 * Controller service. CreateVolume is where a user's StorageClass meets
 * reality: the parameters are checked, the source is listed, the capacity is
 * compared with what the source holds, and the listing is pinned in the
 * volume context so every node fills the same data or says why it cannot.
 *
 * No ControllerPublish (nothing to attach), no snapshots, no expansion: the
 * volume is a copy of its source, and its size is the source's.
 */
#include "csi/csi.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/macros.h"
#include "base/units.h"
#include "cache/listing.h"
#include "cache/source.h"
#include "csi/params.h"
#include "csi/volid.h"
#include "rpc/pbutil.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int need_controller(struct csi_ctx *c, struct wc_error *e)
{
    return c->controller ? 0 : wc_err(e, -EOPNOTSUPP, "this plugin instance does not run the controller service");
}

/* A stable fingerprint of the user's parameters, for the re-create check.
 * Keys that Kubernetes adds per PVC (pvc name, namespace) are left out. */
static void params_fingerprint(const struct kv *kv, size_t n, char out[SHA256_HEX_LEN + 1])
{
    json_t *o _cleanup_json_ = json_object();
    for (size_t i = 0; i < n; i++)
        if (!param_key_is_kubernetes(kv[i].key))
            json_object_set_new(o, kv[i].key, json_string(kv[i].value ? kv[i].value : ""));
    _cleanup_free_ char *txt = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    sha256_hex(txt ? txt : "", txt ? strlen(txt) : 0, out);
}

static Csi__V1__CreateVolumeResponse *response_from_record(json_t *rec)
{
    Csi__V1__CreateVolumeResponse *r = pb_new(&csi__v1__create_volume_response__descriptor);
    Csi__V1__Volume *v = pb_new(&csi__v1__volume__descriptor);
    if (!r || !v) {
        free(r);
        free(v);
        return NULL;
    }
    r->volume = v;
    v->volume_id = xstrdup(json_string_value(json_object_get(rec, "volume_id")));
    v->capacity_bytes = json_integer_value(json_object_get(rec, "capacity_bytes"));
    const char *k;
    json_t *val;
    json_object_foreach(json_object_get(rec, "context"), k, val)
        if (pbmap_add(&v->volume_context, &v->n_volume_context, &csi__v1__volume__volume_context_entry__descriptor,
                      k, json_string_value(val)) < 0) {
            protobuf_c_message_free_unpacked(&r->base, NULL);
            return NULL;
        }
    return r;
}

static int capacity_fits(int64_t cap, const Csi__V1__CapacityRange *range)
{
    if (!range)
        return 1;
    return cap >= range->required_bytes && (range->limit_bytes == 0 || cap <= range->limit_bytes);
}

static int create_new(struct csi_ctx *c, const Csi__V1__CreateVolumeRequest *req, const struct volume_params *p,
                      const char *within, const char *volid, const char *fingerprint, const atomic_int *cancel,
                      json_t **ret_rec, struct wc_error *e)
{
    void *const *sec = (void *const *)req->secrets;
    struct source_use use = {.spec = &p->src, .allow_plain_http = p->allow_plain_http,
                             .has_secret = secrets_have_credentials(p->src.url, sec, req->n_secrets)};
    int r = policy_check(&c->policy, &use, e);
    if (r < 0)
        return r;
    struct source *src _cleanup_source_ = NULL;
    struct source_spec spec = source_with_secrets(&p->src, sec, req->n_secrets);
    struct source_tuning tune = {.env = c->sources, .list_timeout_s = c->list_timeout_s, .admit = policy_admit,
                                 .admit_ctx = &c->policy};
    r = source_open(&spec, &tune, &src, e);
    explicit_bzero(&spec, sizeof(spec));
    if (r < 0)
        return r;
    /* the listing may stop as soon as it passes the request: no need to see the rest to say no */
    const Csi__V1__CapacityRange *range = req->capacity_range;
    uint64_t stop = range && range->required_bytes > 0 ? (uint64_t)range->required_bytes : 0;
    if (range && range->limit_bytes > 0 && (stop == 0 || (uint64_t)range->limit_bytes < stop))
        stop = (uint64_t)range->limit_bytes;
    struct source_summary sum;
    if ((r = source_summarize(src, stop, cancel, &sum, e)) < 0)
        return r;
    char have[32], want[32];
    fmt_bytes(sum.bytes, have, sizeof(have));
    if (sum.over) {
        fmt_bytes(stop, want, sizeof(want));
        return wc_err(e, -ERANGE, "requested capacity %s is smaller than the source %s, which holds more than %s "
                      "(%s in the first %" PRIu64 " objects listed); request at least the source's size, or pick a "
                      "smaller prefix", want,
                      src->url, want, have, sum.objects);
    }
    if (sum.objects == 0)
        return wc_err(e, -EINVAL, "source %s holds no files: check the path or prefix", src->url);
    int64_t capacity = range && (uint64_t)range->required_bytes > sum.bytes ? range->required_bytes
                                                                             : (int64_t)sum.bytes;
    char nobj[24], nbytes[24], scratch[24];
    snprintf(nobj, sizeof(nobj), "%" PRIu64, sum.objects);
    snprintf(nbytes, sizeof(nbytes), "%" PRIu64, sum.bytes);
    /* a writable publish may write this much: scratchSize, else the volume's size */
    snprintf(scratch, sizeof(scratch), "%" PRIu64, p->scratch_bytes ? p->scratch_bytes : (uint64_t)capacity);
    json_t *rec = json_pack("{s:s, s:s, s:I, s:s, s:{s:s, s:s, s:s, s:s, s:s, s:s}}",
        "volume_id", volid, "name", req->name, "capacity_bytes", (json_int_t)capacity,
        "params_fingerprint", fingerprint, "context",
        CTX_SOURCE, src->url, CTX_POLICY, change_policy_name(p->policy), CTX_DIGEST, sum.digest,
        CTX_OBJECTS, nobj, CTX_BYTES, nbytes, CTX_SCRATCH, scratch);
    if (!rec)
        return -ENOMEM;
    json_t *ctx = json_object_get(rec, "context");
    if (p->src.region)
        json_object_set_new(ctx, CTX_REGION, json_string(p->src.region));
    if (p->src.endpoint)
        json_object_set_new(ctx, CTX_ENDPOINT, json_string(p->src.endpoint));
    if (p->src.addressing)
        json_object_set_new(ctx, CTX_ADDRESSING, json_string(p->src.addressing));
    if (within)
        json_object_set_new(ctx, CTX_WITHIN, json_string(within));
    if (p->prewarm)
        json_object_set_new(ctx, CTX_PREWARM, json_string(p->prewarm));
    if (p->allow_plain_http)
        json_object_set_new(ctx, CTX_PLAIN_HTTP, json_string("true"));
    /* who asked (csi-provisioner --extra-create-metadata): the node posts events there */
    static const char *const k8s[] = {K8S_PVC_NAME, K8S_PVC_NAMESPACE, K8S_PV_NAME};
    for (size_t i = 0; i < ARRAY_SIZE(k8s); i++) {
        const char *v = pbmap_get((void *const *)req->parameters, req->n_parameters, k8s[i]);
        if (v && *v)
            json_object_set_new(ctx, k8s[i], json_string(v));
    }
    if ((r = registry_put(c->registry, volid, rec, e)) < 0) {
        json_decref(rec);
        return r;
    }
    *ret_rec = rec;
    return 0;
}

/* PVC-level overrides (params_pvc_overrides): the PVC the parameters name,
 * read from the API server; *ret_merged's strings point into *ret_pvc. */
static int pvc_overrides(struct csi_ctx *c, const struct volume_params *class, const struct kv *kv, size_t *n,
                         struct kv **ret_merged, json_t **ret_pvc, struct wc_error *e)
{
    const char *name = NULL, *ns = NULL;
    for (size_t i = 0; i < *n; i++) {
        if (streq(kv[i].key, K8S_PVC_NAME))
            name = kv[i].value;
        else if (streq(kv[i].key, K8S_PVC_NAMESPACE))
            ns = kv[i].value;
    }
    if (!c->kube || !name || !ns)
        return 0;
    char path[700], ens[300], ename[300];
    if (kube_escape(ns, ens, sizeof(ens)) < 0 || kube_escape(name, ename, sizeof(ename)) < 0)
        return wc_err(e, -EINVAL, "PVC name %.60s/%.60s is too long to look up", ns, name);
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/persistentvolumeclaims/%s", ens, ename);
    int r = kube_get(c->kube, path, ret_pvc, e);
    if (r < 0)
        return wc_err_prefix(e, "reading PVC %s/%s for its warmcache annotations: ", ns, name);
    json_t *ann = json_object_get(json_object_get(*ret_pvc, "metadata"), "annotations");
    if ((r = params_pvc_overrides(ann, ns, name, class, kv, n, ret_merged, e)) < 0)
        return r;
    if (*ret_merged)
        log_json(LOG_INFO, "PVC annotations override class parameters",
                 json_pack("{s:s, s:s}", "pvc", name, "namespace", ns));
    return 0;
}

int controller_create_volume(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                             struct rpc_call *call, struct wc_error *e)
{
    struct csi_ctx *c = ctx;
    const Csi__V1__CreateVolumeRequest *q = (const void *)req;
    int r = need_controller(c, e);
    if (r < 0)
        return r;
    if (!q->name || !*q->name)
        return wc_err(e, -EINVAL, "volume name is required");
    if (strlen(q->name) > VOLID_MAX)
        return wc_err(e, -EINVAL, "volume name is longer than %d bytes", VOLID_MAX);
    if ((r = caps_check(q->volume_capabilities, q->n_volume_capabilities, e)) < 0)
        return r;
    if (q->volume_content_source)
        return wc_err(e, -EINVAL, "creating a volume from a snapshot or another volume is not supported: "
                                  "a warmcache volume is always filled from its source");
    if (q->capacity_range && (q->capacity_range->required_bytes < 0 || q->capacity_range->limit_bytes < 0))
        return wc_err(e, -EINVAL, "capacity range must not be negative");
    if (q->capacity_range && q->capacity_range->limit_bytes > 0 &&
        q->capacity_range->required_bytes > q->capacity_range->limit_bytes)
        return wc_err(e, -EINVAL, "capacity range: required bytes exceed the limit");

    _cleanup_free_ struct kv *kv = pbmap_pairs((void *const *)q->parameters, q->n_parameters);
    if (!kv)
        return -ENOMEM;
    struct volume_params p;
    if ((r = params_parse(kv, q->n_parameters, &p, e)) < 0)
        return r;
    /* the PVC's annotations override the class's parameters */
    size_t nkv = q->n_parameters;
    json_t *pvc _cleanup_json_ = NULL;
    _cleanup_free_ struct kv *merged = NULL;
    if ((r = pvc_overrides(c, &p, kv, &nkv, &merged, &pvc, e)) < 0)
        return r;
    /* the class's, kept: a PVC's own file:// source stays under them on the node too */
    const char *class_src = p.src.url, *within = p.pvc_source_prefixes ? p.pvc_source_prefixes : p.src.url;
    if (merged) {
        /* the class alone parsed: an error now is the PVC's annotation, and says so */
        json_t *meta = json_object_get(pvc, "metadata");
        char where[700];
        snprintf(where, sizeof(where), "PVC %s/%s: annotation " OVERRIDE_PREFIX,
                 json_string_value(json_object_get(meta, "namespace")) ?: "",
                 json_string_value(json_object_get(meta, "name")) ?: "");
        if ((r = params_parse_from(merged, nkv, where, &p, e)) < 0)
            return r;
    }
    if (!merged || streq(p.src.url, class_src) || strncmp(p.src.url, "file://", 7) != 0)
        within = NULL;
    const struct kv *eff = merged ? merged : kv;
    char volid[VOLID_LEN + 1], fp[SHA256_HEX_LEN + 1];
    volid_from_name(q->name, volid);
    params_fingerprint(eff, nkv, fp);

    if ((r = vlocks_try(&c->locks, volid, e)) < 0)
        return r;
    json_t *rec = registry_get(c->registry, volid);
    if (rec) {
        const char *old_fp = json_string_value(json_object_get(rec, "params_fingerprint"));
        int64_t cap = json_integer_value(json_object_get(rec, "capacity_bytes"));
        if (!old_fp || !streq(old_fp, fp))
            r = wc_err(e, -EEXIST, "volume %s already exists with other parameters", q->name);
        else if (!capacity_fits(cap, q->capacity_range))
            r = wc_err(e, -EEXIST, "volume %s already exists with capacity %" PRId64 " bytes, outside the "
                       "requested range", q->name, cap);
    } else {
        r = create_new(c, q, &p, within, volid, fp, rpc_call_cancelled(call), &rec, e);
    }
    vlocks_release(&c->locks, volid);
    if (r == 0) {
        Csi__V1__CreateVolumeResponse *resp = response_from_record(rec);
        r = resp ? 0 : -ENOMEM;
        if (resp)
            *ret_resp = &resp->base;
    }
    json_decref(rec);
    return r;
}

int controller_delete_volume(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                             struct rpc_call *call, struct wc_error *e)
{
    struct csi_ctx *c = ctx;
    const Csi__V1__DeleteVolumeRequest *q = (const void *)req;
    int r = need_controller(c, e);
    if (r < 0 || (r = volid_check(q->volume_id, "volume id", e)) < 0)
        return r;
    if ((r = vlocks_try(&c->locks, q->volume_id, e)) < 0)
        return r;
    /* Copies on nodes are a cache: they are evicted when unused, not here. */
    r = registry_delete(c->registry, q->volume_id, e);
    vlocks_release(&c->locks, q->volume_id);
    if (r < 0)
        return r;
    Csi__V1__DeleteVolumeResponse *resp = pb_new(&csi__v1__delete_volume_response__descriptor);
    if (!resp)
        return -ENOMEM;
    *ret_resp = &resp->base;
    return 0;
}

/* A volume exists if we created it, or (after a controller restart with no
 * state directory) if its id has our form and its context pins a listing. */
static int volume_known(struct csi_ctx *c, const Csi__V1__ValidateVolumeCapabilitiesRequest *q)
{
    json_t *rec _cleanup_json_ = registry_get(c->registry, q->volume_id);
    if (rec)
        return 1;
    return volid_is_ours(q->volume_id) &&
           pbmap_get((void *const *)q->volume_context, q->n_volume_context, CTX_DIGEST) != NULL;
}

int controller_validate_volume_capabilities(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                                            struct rpc_call *call, struct wc_error *e)
{
    struct csi_ctx *c = ctx;
    const Csi__V1__ValidateVolumeCapabilitiesRequest *q = (const void *)req;
    int r = need_controller(c, e);
    if (r < 0 || (r = volid_check(q->volume_id, "volume id", e)) < 0)
        return r;
    if (q->n_volume_capabilities == 0)
        return wc_err(e, -EINVAL, "volume capabilities are required");
    if (!volume_known(c, q))
        return wc_err(e, -ENOENT, "volume %.200s does not exist", q->volume_id);

    Csi__V1__ValidateVolumeCapabilitiesResponse *resp _cleanup_pb_ =
        pb_new(&csi__v1__validate_volume_capabilities_response__descriptor);
    if (!resp)
        return -ENOMEM;
    struct wc_error why;
    wc_error_clear(&why);
    if (caps_check(q->volume_capabilities, q->n_volume_capabilities, &why) < 0) {
        if (!(resp->message = xstrdup(why.msg)))
            return -ENOMEM;
        *ret_resp = &TAKE_PTR(resp)->base;
        return 0;
    }
    /* Confirm exactly what was asked: a deep copy of the request's fields. */
    Csi__V1__ValidateVolumeCapabilitiesRequest *copy _cleanup_pb_ = (void *)pb_dup(req);
    Csi__V1__ValidateVolumeCapabilitiesResponse__Confirmed *conf =
        pb_new(&csi__v1__validate_volume_capabilities_response__confirmed__descriptor);
    if (!copy || !conf) {
        free(conf);
        return -ENOMEM;
    }
    resp->confirmed = conf;
    conf->volume_capabilities = TAKE_PTR(copy->volume_capabilities);
    conf->n_volume_capabilities = copy->n_volume_capabilities;
    copy->n_volume_capabilities = 0;
    int rc = pbmap_copy(&conf->volume_context, &conf->n_volume_context,
                        &csi__v1__validate_volume_capabilities_response__confirmed__volume_context_entry__descriptor,
                        (void *const *)q->volume_context, q->n_volume_context);
    if (rc == 0)
        rc = pbmap_copy(&conf->parameters, &conf->n_parameters,
                        &csi__v1__validate_volume_capabilities_response__confirmed__parameters_entry__descriptor,
                        (void *const *)q->parameters, q->n_parameters);
    if (rc < 0)
        return rc;
    *ret_resp = &TAKE_PTR(resp)->base;
    return 0;
}

int controller_get_capabilities(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                                struct rpc_call *call, struct wc_error *e)
{
    struct csi_ctx *c = ctx;
    int r = need_controller(c, e);
    if (r < 0)
        return r;
    Csi__V1__ControllerGetCapabilitiesResponse *resp = pb_new(&csi__v1__controller_get_capabilities_response__descriptor);
    Csi__V1__ControllerServiceCapability *cap = pb_new(&csi__v1__controller_service_capability__descriptor);
    Csi__V1__ControllerServiceCapability__RPC *rpc = pb_new(&csi__v1__controller_service_capability__rpc__descriptor);
    if (!resp || !cap || !rpc || !(resp->capabilities = calloc(1, sizeof(void *)))) {
        free(resp);
        free(cap);
        free(rpc);
        return -ENOMEM;
    }
    rpc->type = CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CREATE_DELETE_VOLUME;
    cap->type_case = CSI__V1__CONTROLLER_SERVICE_CAPABILITY__TYPE_RPC;
    cap->rpc = rpc;
    resp->capabilities[resp->n_capabilities++] = cap;
    *ret_resp = &resp->base;
    return 0;
}
