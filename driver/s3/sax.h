/*
 * What the S3 body parsers share (inside s3/ only): a bounded text buffer
 * for the one element being read, the quoting of untrusted server text,
 * and an expat parser with no DTD and no entities, fed in chunks.
 */
#pragma once

#include <expat.h>
#include <stddef.h>
#include <stdint.h>

#include "s3/xml.h"

/* One element's text, kept up to a bound. */
struct text {
    char s[S3_KEY_MAX + 1]; /* the largest bound of any element we keep */
    size_t n, max;
    int over;
};

void sax_text_start(struct text *t, size_t max);
/* Keeps at most t->max bytes; -1 once more arrived (what fits is kept). */
int sax_text_add(struct text *t, const char *s, size_t len);
/* Server text is untrusted and S3's own is ASCII: printable ASCII kept,
 * anything else as \xNN, cut with "..." to fit n (or when cut says the
 * input was already cut). */
void sax_ascii_quote(const char *s, size_t len, int cut, char *out, size_t n);
/* A decimal of at most max; -1 for anything else. */
int sax_parse_decimal(const char *s, uint64_t max, uint64_t *ret);
/* Any DOCTYPE or entity declaration ends the parse (no "billion laughs"). */
void sax_set_no_dtd(XML_Parser p, XML_StartDoctypeDeclHandler doctype, XML_EntityDeclHandler entity);
/* The whole body, in chunks XML_Parse's int length can take. */
enum XML_Status sax_feed(XML_Parser p, const char *body, size_t len);
