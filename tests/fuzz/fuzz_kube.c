/* Kubernetes objects as the plugins read them from the API server: a PV
 * judged for pre-warming (selector, attributes, node-stage Secret), a pod list
 * searched for the pods mounting a claim, PVC annotations merged over class
 * parameters, and the watch stream cut into lines (arbitrary chunks). The
 * first input byte picks the chunk size of the watch stream. Never a crash,
 * and what comes out keeps its promises: a FILL verdict has a valid volume
 * context, every pod target has string fields, merged parameters parse or
 * fail with an error naming the PVC. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/macros.h"
#include "csi/params.h"
#include "csi/prewarm.h"
#include "csi/report.h"
#include "kube/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_t *labels;

static void judge(json_t *pv)
{
    struct volume_context vc;
    struct wc_error e;
    wc_error_clear(&e);
    enum prewarm_verdict v = prewarm_judge(pv, labels, &vc, &e);
    if (v == PREWARM_FILL && (!vc.src.url || !*vc.src.url || !vc.prewarm))
        abort(); /* a fill with nothing to fill from */
    if (v == PREWARM_BAD && !e.msg[0])
        abort(); /* refused without a reason */
}

static void pods(json_t *list)
{
    json_t *out = json_array();
    pods_mounting(list, "ml", "tiny-llm", out);
    size_t i;
    json_t *t;
    json_array_foreach(out, i, t)
        if (!json_is_string(json_object_get(t, "name")) || !json_is_string(json_object_get(t, "namespace")))
            abort(); /* an event would go to a pod with no name */
    json_decref(out);
}

static void overrides(json_t *pvc)
{
    static const struct kv cls[] = {{"source", "s3://models/llama/"}, {"region", "us-east-1"},
                                    {"pvcOverrides", "source,prewarm,sourceChangePolicy"}};
    size_t n = ARRAY_SIZE(cls);
    struct kv *merged = NULL;
    struct wc_error e;
    wc_error_clear(&e);
    struct volume_params class;
    if (params_parse(cls, n, &class, &e) < 0)
        abort();
    json_t *ann = json_object_get(json_object_get(pvc, "metadata"), "annotations");
    int r = params_pvc_overrides(ann, "ml", "tiny-llm", &class, cls, &n, &merged, &e);
    if (r < 0 && !strstr(e.msg, "PVC ml/tiny-llm"))
        abort(); /* the error must name the PVC */
    if (merged) {
        struct volume_params p;
        for (size_t i = 0; i < n; i++)
            if (!merged[i].key || !merged[i].value)
                abort();
        if (params_parse(merged, n, &p, &e) == 0 && strncmp(p.src.url, "s3://models/llama/", 18) != 0)
            abort(); /* a PVC's source outside the class's prefix got through */
        free(merged);
    }
}

static int on_event(void *ctx, const char *type, json_t *obj)
{
    (void)ctx;
    if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0)
        judge(obj);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (!labels)
        labels = json_pack("{s:s, s:s}", "gpu", "h100", "karpenter.sh/nodepool", "gpu");
    size_t chunk = 1 + data[0] % 64;
    data++, size--;

    json_error_t je;
    json_t *obj = json_loadb((const char *)data, size, 0, &je);
    if (obj) {
        judge(obj);
        pods(obj);
        overrides(obj);
        json_decref(obj);
    }

    struct kube_watch_lines *w = kube_watch_lines_new(on_event, NULL);
    for (size_t off = 0; w && off < size; off += chunk)
        if (kube_watch_lines_feed(w, (const char *)data + off, size - off < chunk ? size - off : chunk) < 0)
            break;
    kube_watch_lines_free(w);
    return 0;
}
