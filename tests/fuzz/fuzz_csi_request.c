/* A CSI request off the wire: unpacked with protobuf-c as the server does,
 * checked by the same validators, and logged with secrets redacted. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "csi/csi.h"
#include "csi/params.h"
#include "rpc/pbjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Csi__V1__NodeStageVolumeRequest *q = csi__v1__node_stage_volume_request__unpack(NULL, size, data);
    if (!q)
        return 0;
    struct wc_error e;
    if (q->volume_capability)
        caps_check_one(q->volume_capability, &e);
    struct kv *kv = calloc(q->n_volume_context + 1, sizeof(*kv));
    for (size_t i = 0; i < q->n_volume_context; i++)
        kv[i] = (struct kv){q->volume_context[i]->key, q->volume_context[i]->value};
    struct volume_context c;
    volctx_parse(kv, q->n_volume_context, &c, &e);
    free(kv);
    json_t *j = pbjson_from_message(&q->base, 1);
    char *s = json_dumps(j, JSON_COMPACT);
    /* What the request says outside its secrets, for telling a leak from the
     * same bytes sent twice (in a secret and in, say, the volume context). */
    size_t n_secrets = q->n_secrets;
    q->n_secrets = 0;
    json_t *pub = pbjson_from_message(&q->base, 0);
    q->n_secrets = n_secrets;
    char *ps = json_dumps(pub, JSON_COMPACT);
    /* a secret value must never survive redaction */
    for (size_t i = 0; s && ps && i < q->n_secrets; i++) {
        const char *v = q->secrets[i]->value;
        if (v && strlen(v) > 12 && strstr(s, v) && !strstr(ps, v))
            abort();
    }
    free(s);
    free(ps);
    json_decref(j);
    json_decref(pub);
    csi__v1__node_stage_volume_request__free_unpacked(q, NULL);
    return 0;
}
