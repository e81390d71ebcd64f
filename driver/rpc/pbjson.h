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
