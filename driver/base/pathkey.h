/*
 * Object keys are untrusted: they come from S3 listings or from walking a
 * source tree, and become paths under the store. A key is accepted only if,
 * as a relative path, it cannot leave the directory it is placed under:
 * no leading '/', no empty, "." or ".." component, no NUL or control
 * character, components of at most 255 bytes, at most 1024 bytes in all
 * (S3's own key limit). The message names the key (escaped) and the rule.
 */
#pragma once

#include <stddef.h>

#include "base/error.h"

#define PATHKEY_MAX 1024
#define PATHKEY_COMPONENT_MAX 255

int pathkey_check(const char *key, size_t len, struct wc_error *e);

/* Writes a printable, escaped copy of key (for messages) into out. */
void pathkey_quote(const char *key, size_t len, char *out, size_t outlen);

/* An absolute local path given to us (a source directory, a kubelet path):
 * absolute, no ".." component, no control character, not absurdly long.
 * `what` names it in the message. */
int abspath_check(const char *path, const char *what, struct wc_error *e);
