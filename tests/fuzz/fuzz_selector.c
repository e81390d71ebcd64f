/* Label selectors come from StorageClasses and PVC annotations (prewarm).
 * Never a crash; the checker and the matcher agree on what is well formed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kube/selector.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = strndup((const char *)data, size);
    if (!s)
        return 0;
    struct wc_error e;
    json_t *labels = json_pack("{s:s, s:s}", "gpu", "h100", "karpenter.sh/nodepool", "gpu");
    int ok = selector_check(s, &e) == 0;
    int m = selector_matches(s, labels);
    if (ok != (m >= 0))
        abort(); /* one grammar */
    json_decref(labels);
    free(s);
    return 0;
}
