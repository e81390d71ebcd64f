/* See pbjson.h. Default values are left out to keep log lines short. */
#include "rpc/pbjson.h"

#include <string.h>

#define REDACTED "<redacted>"

static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    }
    return 0;
}

static int is_map_entry(const ProtobufCMessageDescriptor *d)
{
    size_t n = strlen(d->short_name);
    return d->n_fields == 2 && n > 5 && strcmp(d->short_name + n - 5, "Entry") == 0 &&
           strcmp(d->fields[0].name, "key") == 0 && strcmp(d->fields[1].name, "value") == 0;
}

static json_t *value_json(const ProtobufCFieldDescriptor *f, const void *p, int redact)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
        return json_integer(*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
        return json_integer((json_int_t) * (const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        return json_real(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return json_real(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)p);
        return ev ? json_string(ev->name) : json_integer(*(const int *)p);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return json_stringn(s ? s : "", s ? strlen(s) : 0);
    }
    case PROTOBUF_C_TYPE_BYTES:
        return json_pack("{s:I}", "bytes", (json_int_t)((const ProtobufCBinaryData *)p)->len);
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        return m ? pbjson_from_message(m, redact) : json_null();
    }
    }
    return json_null();
}

static int is_default(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return !s || !*s;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(void *const *)p == NULL;
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len == 0;
    default: {
        static const char zero[8];
        return memcmp(p, zero, elem_size(f->type)) == 0;
    }
    }
}

json_t *pbjson_from_message(const ProtobufCMessage *m, int redact)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    json_t *o = json_object();
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const void *p = base + f->offset;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
                continue;
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
                   f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING) {
            if (!*(const protobuf_c_boolean *)(base + f->quantifier_offset))
                continue;
        }
        int secret = redact && strstr(f->name, "secret") != NULL;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            if (n == 0)
                continue;
            if (secret) {
                json_object_set_new(o, f->name, json_string(REDACTED));
                continue;
            }
            const char *arr = *(char *const *)p;
            int map = f->type == PROTOBUF_C_TYPE_MESSAGE && is_map_entry(f->descriptor);
            json_t *v = map ? json_object() : json_array();
            for (size_t k = 0; k < n; k++) {
                const void *ep = arr + k * elem_size(f->type);
                if (map) {
                    const ProtobufCMessage *em = *(ProtobufCMessage *const *)ep;
                    const ProtobufCMessageDescriptor *ed = em->descriptor;
                    const char *key = *(char *const *)((const char *)em + ed->fields[0].offset);
                    json_object_set_new(v, key ? key : "",
                                        value_json(&ed->fields[1], (const char *)em + ed->fields[1].offset, redact));
                } else {
                    json_array_append_new(v, value_json(f, ep, redact));
                }
            }
            json_object_set_new(o, f->name, v);
            continue;
        }
        if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && is_default(f, p))
            continue;
        json_object_set_new(o, f->name, secret ? json_string(REDACTED) : value_json(f, p, redact));
    }
    return o;
}

static void wipe(ProtobufCMessage *m, int all)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    char *base = (char *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        int w = all || strstr(f->name, "secret") != NULL;
        if (f->type != PROTOBUF_C_TYPE_MESSAGE && (!w || (f->type != PROTOBUF_C_TYPE_STRING &&
                                                           f->type != PROTOBUF_C_TYPE_BYTES)))
            continue;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && *(const uint32_t *)(base + f->quantifier_offset) != f->id)
            continue; /* another member of the union is set */
        size_t n = 1;
        char *arr = base + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(const size_t *)(base + f->quantifier_offset);
            arr = *(char **)arr;
        }
        for (size_t k = 0; arr && k < n; k++) {
            void *p = arr + k * elem_size(f->type);
            if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (*(ProtobufCMessage **)p)
                    wipe(*(ProtobufCMessage **)p, w);
            } else if (f->type == PROTOBUF_C_TYPE_STRING) {
                char *str = *(char **)p;  /* an absent string is the shared "" default: length 0 */
                if (str && str != f->default_value)
                    explicit_bzero(str, strlen(str));
            } else {
                ProtobufCBinaryData *b = p;
                const ProtobufCBinaryData *dv = f->default_value;
                if (b->data && b->len && !(dv && b->data == dv->data))
                    explicit_bzero(b->data, b->len);
            }
        }
    }
}

void pb_wipe_secrets(ProtobufCMessage *m)
{
    if (m)
        wipe(m, 0);
}
