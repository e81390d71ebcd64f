/* A docker config (the .dockerconfigjson of an image pull Secret, or
 * ~/.docker/config.json): the user name and password it holds for one
 * registry. Keys are matched by host the way docker and the kubelet write
 * them ("host", "host:port", "https://host/v1/"); "auth" is base64 of
 * user:password, or "username" and "password" stand apart. */
#include "oci/oci.h"
#include "base/macros.h"
#include "base/userpass.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DOCKER_CONFIG_MAX (1u << 20)

/* "https://host:port/v1/" -> "host:port" in out */
static void key_host(const char *k, char *out, size_t n)
{
    const char *p = strstr(k, "://");
    p = p ? p + 3 : k;
    size_t l = strcspn(p, "/");
    snprintf(out, n, "%.*s", (int)(l < n ? l : n - 1), p);
}

/* Both copies, or neither (ret_ written on success only). */
static int dup_pair(const char *u, const char *p, char **ret_user, char **ret_pass)
{
    char *du = strdup(u), *dp = strdup(p);
    if (!du || !dp) {
        free(du);
        free(dp);
        return -ENOMEM;
    }
    *ret_user = du;
    *ret_pass = dp;
    return 0;
}

int oci_docker_config_auth(const char *json, size_t len, const char *host, char **ret_user, char **ret_pass,
                           struct wc_error *e)
{
    if (len > DOCKER_CONFIG_MAX)
        return wc_err(e, -EINVAL, "the Secret's .dockerconfigjson is larger than 1 MiB");
    json_error_t je;
    json_t *j _cleanup_json_ = json_loadb(json, len, 0, &je);
    json_t *auths = json_object_get(j, "auths");
    if (!json_is_object(auths))
        auths = j; /* the old .dockercfg form: the hosts at the top */
    if (!json_is_object(auths))
        return wc_err(e, -EINVAL, "the Secret's .dockerconfigjson is not a docker config (no \"auths\" object)");
    const char *k;
    json_t *v;
    char names[256] = "";
    size_t o = 0;
    json_object_foreach(auths, k, v) {
        char kh[OCI_HOST_MAX];
        key_host(k, kh, sizeof(kh));
        if (o < sizeof(names))
            o += (size_t)snprintf(names + o, sizeof(names) - o, "%s%.60s", o ? ", " : "", kh);
        if (strcasecmp(kh, host) != 0)
            continue;
        const char *a = json_string_value(json_object_get(v, "auth"));
        const char *u = json_string_value(json_object_get(v, "username"));
        const char *p = json_string_value(json_object_get(v, "password"));
        if (a && *a) {
            int r = strlen(a) > 8192 ? -EINVAL : userpass_decode(a, ret_user, ret_pass);
            if (r == -ENOMEM)
                return r;
            if (r < 0)
                return wc_err(e, -EINVAL, "the Secret's .dockerconfigjson entry for %s: \"auth\" is not base64 of "
                              "user:password", host);
            return 0;
        }
        if (u && *u && p && *p)
            return dup_pair(u, p, ret_user, ret_pass);
        return wc_err(e, -EINVAL, "the Secret's .dockerconfigjson entry for %s has neither \"auth\" nor "
                      "\"username\" and \"password\" (identity tokens and credential helpers are not read)", host);
    }
    return wc_err(e, -ENOENT, "the Secret's .dockerconfigjson has no entry for registry %s (it has: %s)", host,
                  o ? names : "none");
}
