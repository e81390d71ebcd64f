/*
 * Generic protobuf-c helpers, driven by descriptors: CSI has a dozen
 * map<string,string> fields of distinct generated types, and these let one
 * piece of code read and build all of them.
 *
 * Everything built here is heap memory, so a reply made with these helpers is
 * freed by protobuf_c_message_free_unpacked(msg, NULL).
 */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

/* One entry of a string map, borrowed from wherever it lives. */
struct kv {
    const char *key;
    const char *value;
};

/* A map field's entries as kv pairs (malloc'd, n of them, at least one
 * slot), the strings borrowed from the message; NULL on ENOMEM. */
struct kv *pbmap_pairs(void *const *entries, size_t n);

/* Value for key in a map field (array of entries + count), or NULL. */
const char *pbmap_get(void *const *entries, size_t n, const char *key);

/* Appends key=value to a map field; entries is e.g. &resp->volume->volume_context. */
int pbmap_add(void *entries_field, size_t *n, const ProtobufCMessageDescriptor *entry_desc,
              const char *key, const char *value);

/* Appends every entry of one map field (any entry type) to another. */
int pbmap_copy(void *entries_field, size_t *n, const ProtobufCMessageDescriptor *entry_desc,
               void *const *src, size_t n_src);

/* Deep copy through pack + unpack: the copy is heap-only. */
ProtobufCMessage *pb_dup(const ProtobufCMessage *m);

/* A message local freed at scope end unless handed on with TAKE_PTR:
 *   Csi__V1__ProbeResponse *r _cleanup_pb_ = pb_new(...); ... *ret_resp = &TAKE_PTR(r)->base; */
static inline void pb_freep(void *p)
{
    ProtobufCMessage **m = p;
    if (*m)
        protobuf_c_message_free_unpacked(*m, NULL);
}
#define _cleanup_pb_ __attribute__((cleanup(pb_freep)))

/* A zeroed, initialised heap message of the given type. */
void *pb_new(const ProtobufCMessageDescriptor *d);

char *xstrdup(const char *s);

/* An empty reply of type d (NodeStageVolumeResponse, ...) into *ret_resp:
 * 0, or -ENOMEM with *ret_resp untouched. */
int rpc_empty_reply(const ProtobufCMessageDescriptor *d, ProtobufCMessage **ret_resp);
