/* See pbutil.h. Map entries are messages whose field 1 is key and 2 is value. */
#include "rpc/pbutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *entry_str(const ProtobufCMessage *m, unsigned idx)
{
    return *(char *const *)((const char *)m + m->descriptor->fields[idx].offset);
}

struct kv *pbmap_pairs(void *const *entries, size_t n)
{
    struct kv *kv = calloc(n ? n : 1, sizeof(*kv));
    for (size_t i = 0; kv && i < n; i++)
        kv[i] = (struct kv){entry_str(entries[i], 0), entry_str(entries[i], 1)};
    return kv;
}

const char *pbmap_get(void *const *entries, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        const ProtobufCMessage *m = entries[i];
        const char *k = entry_str(m, 0);
        if (k && strcmp(k, key) == 0)
            return entry_str(m, 1);
    }
    return NULL;
}

void *pb_new(const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = calloc(1, d->sizeof_message);
    if (m)
        protobuf_c_message_init(d, m);
    return m;
}

char *xstrdup(const char *s)
{
    return strdup(s ? s : "");
}

int pbmap_add(void *entries_field, size_t *n, const ProtobufCMessageDescriptor *entry_desc,
              const char *key, const char *value)
{
    void ***arr = entries_field;
    void **nv = realloc(*arr, (*n + 1) * sizeof(void *));
    if (!nv)
        return -ENOMEM;
    *arr = nv;
    ProtobufCMessage *m = pb_new(entry_desc);
    char *k = xstrdup(key), *v = xstrdup(value);
    if (!m || !k || !v) {
        free(m);
        free(k);
        free(v);
        return -ENOMEM;
    }
    *(char **)((char *)m + entry_desc->fields[0].offset) = k;
    *(char **)((char *)m + entry_desc->fields[1].offset) = v;
    nv[(*n)++] = m;
    return 0;
}

int pbmap_copy(void *entries_field, size_t *n, const ProtobufCMessageDescriptor *entry_desc,
               void *const *src, size_t n_src)
{
    for (size_t i = 0; i < n_src; i++) {
        int r = pbmap_add(entries_field, n, entry_desc, entry_str(src[i], 0), entry_str(src[i], 1));
        if (r < 0)
            return r;
    }
    return 0;
}

ProtobufCMessage *pb_dup(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return NULL;
    protobuf_c_message_pack(m, buf);
    ProtobufCMessage *copy = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
    free(buf);
    return copy;
}

int rpc_empty_reply(const ProtobufCMessageDescriptor *d, ProtobufCMessage **ret_resp)
{
    ProtobufCMessage *m = pb_new(d);
    if (!m)
        return -ENOMEM;
    *ret_resp = m;
    return 0;
}
