/* Manifests and indexes off the network, references and docker configs
 * from users. The parsers must never crash; every file handed on has a
 * safe relative path (an archive none) and a sha256 digest; an index gives a digest to fetch
 * and no files. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/pathkey.h"
#include "oci/oci.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct oci_manifest m = {0};
    char next[OCI_DIGEST_LEN + 1];
    struct wc_error e;
    if (oci_manifest_parse((const char *)data, size, &m, next, &e) == 0) {
        if (next[0] && (m.n || !oci_digest_ok(next, strlen(next))))
            abort();
        for (size_t i = 0; i < m.n; i++)
            if ((m.v[i].unpack ? m.v[i].path != NULL || !(m.v[i].unpack & OCI_UNPACK_TAR)
                               : pathkey_check(m.v[i].path, strlen(m.v[i].path), &e) != 0) ||
                !oci_digest_ok(m.v[i].digest, strlen(m.v[i].digest)))
                abort(); /* a file has a safe path; an archive has none and is a tar */
    }
    oci_manifest_free(&m);
    struct oci_ref r;
    char *s = malloc(size + 1);
    if (s) {
        memcpy(s, data, size);
        s[size] = '\0';
        if (oci_ref_parse(s, &r, &e) == 0 && (strchr(r.repo, '/') == r.repo || strstr(r.repo, "..") ||
                                              strchr(r.host, '/') || strchr(r.host, '@')))
            abort();
        free(s);
    }
    char *u = NULL, *p = NULL;
    if (oci_docker_config_auth((const char *)data, size, "reg.example", &u, &p, &e) == 0 && (!u || !p || !*u))
        abort(); /* a user name, even empty-handed, is never handed on */
    free(u);
    free(p);
    return 0;
}
