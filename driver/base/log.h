/*
 * Structured logs: one JSON object per line on stderr, which is what kubectl
 * logs and every log shipper on EKS expect. Callers pass a jansson object with
 * their fields; the logger adds ts, level and msg. Nothing here redacts: what
 * reaches the logger must already be free of secrets (rpc/pbjson.c redacts
 * requests before they get here).
 */
#pragma once

#include <jansson.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Set once at start-up, before any thread is started. */
void log_set_level(enum log_level level);
int log_parse_level(const char *s, enum log_level *ret);

/* Logs msg with the fields of `fields` (may be NULL); steals the reference. */
void log_json(enum log_level level, const char *msg, json_t *fields);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
