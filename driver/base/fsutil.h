/*
 * File-system helpers that every layer needs and that are easy to get subtly
 * wrong: atomic replace (temp + fsync + rename + fsync dir), recursive removal
 * that never follows a symlink or crosses a mount, and a SHA-256 helper.
 * All return 0 or a negative errno.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

int fs_mkdir_p(const char *path, mode_t mode);
int fs_fsync_path(const char *path);
/* Parent directory of path is fsynced too, so the rename itself is durable. */
int fs_write_atomic(const char *path, const void *buf, size_t len, mode_t mode);
/* Removes path and everything under it; refuses to cross a mount point (-EBUSY). */
int fs_rm_rf(const char *path);
int fs_is_dir(const char *path);
/* The real path of path as far as it exists, the rest appended as spelt
 * (a path not there yet is judged by where it would be). */
void fs_real_as_far(const char *path, char *out, size_t n);
/* url under one of the comma-separated URL prefixes of list, a file:// URL
 * and file:// prefixes compared by their real paths here (a link under a
 * prefix may lead anywhere), others as spelt. A prefix is a directory:
 * "s3://models/llama" admits "s3://models/llama/8b/", not "s3://models/llama-x/". */
int fs_url_under_any(const char *list, const char *url);

#define SHA256_HEX_LEN 64
void sha256_hex(const void *data, size_t len, char out[SHA256_HEX_LEN + 1]);

/* Reads a small secret file (a token) into out, trailing white space cut;
 * -EINVAL if it is empty, too long, or holds anything but printable ASCII
 * (it goes into an HTTP header). The caller wipes out after use. */
int fs_read_token(const char *path, char *out, size_t n);
