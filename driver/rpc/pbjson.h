/*
 * protobuf-c message -> JSON, driven by the descriptors, for logs and for
 * warmcachectl's output. With redact set, every field whose name contains
 * "secret" is replaced by a marker, whatever its type: CSI puts credentials in
 * fields named secrets, and this keeps them out of every log line.
 */
#pragma once

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

json_t *pbjson_from_message(const ProtobufCMessage *m, int redact);

/* Zeroes the bytes of every field whose name contains "secret" (strings,
 * bytes, and the keys and values of the map entries under it), wherever it
 * sits in m: call before m is freed, so no credential stays in freed memory
 * (or a core file, or the next allocation). */
void pb_wipe_secrets(ProtobufCMessage *m);
