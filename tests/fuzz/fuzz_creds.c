/* Credential providers' answers off the network: STS XML (IRSA) and the JSON
 * of IMDS / Pod Identity. Never a crash; whatever is accepted must be fit for
 * an HTTP header (no control characters, no spaces) and carry an expiry. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3/creds.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct creds *c)
{
    const char *fields[] = {c->access_key_id, c->secret_access_key, c->session_token};
    for (size_t i = 0; i < 3; i++)
        for (const char *p = fields[i]; *p; p++)
            if (!isprint((unsigned char)*p) || *p == ' ')
                abort();
    if (c->expires == 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct creds c = {0};
    struct wc_error e;
    if (creds_parse_sts((const char *)data, size, &c, &e) == 0)
        check(&c);
    struct creds j = {0};
    if (creds_parse_json((const char *)data, size, &j, &e) == 0)
        check(&j);
    return 0;
}
