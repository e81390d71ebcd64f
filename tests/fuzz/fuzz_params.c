/* StorageClass parameters and volume context: "key=value" lines in, a parse
 * or a refusal out, and a refusal always carries a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "csi/params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = '\0';
    struct kv kv[16];
    size_t n = 0;
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line && n < 16; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        kv[n++] = (struct kv){line, eq + 1};
    }
    struct wc_error e = {0};
    struct volume_params p;
    if (params_parse(kv, n, &p, &e) < 0 && e.msg[0] == '\0')
        abort();
    struct volume_context c;
    e.msg[0] = '\0';
    if (volctx_parse(kv, n, &c, &e) < 0 && e.msg[0] == '\0')
        abort();
    free(buf);
    return 0;
}
