/* See selector.h. */
#include "kube/selector.h"
#include "base/macros.h"

#include <ctype.h>
#include <string.h>

#define SEL_MAX 4096

static int key_ok(const char *k, size_t n)
{
    if (n == 0 || n > 253 + 1 + 63)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)k[i]) && !strchr("./_-", k[i]))
            return 0;
    return isalnum((unsigned char)k[n - 1]);
}

static int value_ok(const char *v, size_t n)
{
    if (n > 63)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)v[i]) && !strchr("._-", v[i]))
            return 0;
    return 1;
}

static void trim(const char **s, size_t *n)
{
    while (*n && isspace((unsigned char)**s))
        (*s)++, (*n)--;
    while (*n && isspace((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

/* Is `want` (n bytes) one of the comma-separated values in list (ln bytes)? -1: malformed. */
static int in_list(const char *list, size_t ln, const char *want, size_t wn)
{
    int found = 0, any = 0;
    while (ln) {
        const char *c = memchr(list, ',', ln);
        size_t vn = c ? (size_t)(c - list) : ln;
        const char *v = list;
        size_t tn = vn;
        trim(&v, &tn);
        if (!value_ok(v, tn) || tn == 0)
            return -1;
        any = 1;
        if (want && tn == wn && memcmp(v, want, wn) == 0)
            found = 1;
        list += vn + (c ? 1 : 0);
        ln -= vn + (c ? 1 : 0);
        if (c && ln == 0)
            return -1; /* trailing comma */
    }
    return any ? found : -1;
}

/* One term: 1 holds, 0 does not, -1 malformed. labels NULL: syntax only. */
static int term(const char *t, size_t n, json_t *labels)
{
    trim(&t, &n);
    if (n == 0)
        return -1;
    int neg = t[0] == '!';
    if (neg) {
        t++, n--;
        trim(&t, &n);
        if (!key_ok(t, n))
            return -1;
    }
    char key[400];
    size_t kn = 0;
    while (kn < n && (isalnum((unsigned char)t[kn]) || strchr("./_-", t[kn])))
        kn++;
    if (!key_ok(t, kn) || kn >= sizeof(key))
        return -1;
    memcpy(key, t, kn);
    key[kn] = '\0';
    const char *have = labels ? json_string_value(json_object_get(labels, key)) : NULL;
    const char *rest = t + kn;
    size_t rn = n - kn;
    trim(&rest, &rn);
    if (rn == 0)
        return neg ? !have : have != NULL;
    if (neg)
        return -1;
    const char *op = rest;
    size_t on = 0;
    int eq;
    if (rn >= 2 && memcmp(op, "==", 2) == 0)
        on = 2, eq = 1;
    else if (rn >= 2 && memcmp(op, "!=", 2) == 0)
        on = 2, eq = 0;
    else if (op[0] == '=')
        on = 1, eq = 1;
    else
        on = 0, eq = -1;
    if (eq >= 0) {
        const char *v = rest + on;
        size_t vn = rn - on;
        trim(&v, &vn);
        if (!value_ok(v, vn))
            return -1;
        int same = have && strlen(have) == vn && memcmp(have, v, vn) == 0;
        return eq ? same : !same; /* != also holds when the label is absent, as in Kubernetes */
    }
    int notin = rn > 6 && strncmp(rest, "notin", 5) == 0 && (isspace((unsigned char)rest[5]) || rest[5] == '(');
    int in = !notin && rn > 3 && strncmp(rest, "in", 2) == 0 && (isspace((unsigned char)rest[2]) || rest[2] == '(');
    if (!in && !notin)
        return -1;
    const char *l = rest + (in ? 2 : 5);
    size_t ln = rn - (in ? 2 : 5);
    trim(&l, &ln);
    if (ln < 2 || l[0] != '(' || l[ln - 1] != ')')
        return -1;
    int found = in_list(l + 1, ln - 2, have, have ? strlen(have) : 0);
    if (found < 0)
        return -1;
    return in ? (have && found) : !found;
}

static int walk(const char *sel, json_t *labels)
{
    size_t n = strlen(sel);
    if (n == 0 || n > SEL_MAX)
        return -1;
    int all = 1;
    size_t start = 0, depth = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && sel[i] == '(')
            depth++;
        else if (i < n && sel[i] == ')') {
            if (depth == 0)
                return -1;
            depth--;
        } else if (i == n || (sel[i] == ',' && depth == 0)) {
            int r = term(sel + start, i - start, labels);
            if (r < 0)
                return -1;
            all = all && r;
            start = i + 1;
        }
    }
    return depth ? -1 : all;
}

int selector_check(const char *sel, struct wc_error *e)
{
    if (walk(sel, NULL) < 0)
        return wc_err(e, -EINVAL, "\"%.200s\" is not a label selector; write terms such as key=value, key!=value, "
                      "key, !key, key in (a,b), key notin (a,b), separated by commas", sel);
    return 0;
}

int selector_matches(const char *sel, json_t *labels)
{
    return walk(sel, labels); /* NULL: a node with no labels */
}
