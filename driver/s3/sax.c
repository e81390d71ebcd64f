/* See sax.h. */
#include "s3/sax.h"

#include <stdio.h>
#include <string.h>

#define FEED_CHUNK (1u << 20)          /* XML_Parse takes an int length */


void sax_text_start(struct text *t, size_t max)
{
    t->n = 0;
    t->max = max < S3_KEY_MAX ? max : S3_KEY_MAX;
    t->over = 0;
    t->s[0] = '\0';
}

/* Keeps at most t->max bytes; -1 once more arrived (what fits is kept). */
int sax_text_add(struct text *t, const char *s, size_t len)
{
    size_t room = t->max - t->n;
    if (len > room) {
        memcpy(t->s + t->n, s, room);
        t->n = t->max;
        t->s[t->n] = '\0';
        t->over = 1;
        return -1;
    }
    memcpy(t->s + t->n, s, len);
    t->n += len;
    t->s[t->n] = '\0';
    return 0;
}

static size_t quoted_len(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' ? 1 : 4;
}

/* Server text is untrusted and S3's own is ASCII: keep printable ASCII, write
 * anything else as \xNN (controls, escapes, C1 and bidi tricks alike), and cut
 * with "..." to fit n, or when `cut` says the input was already cut. */
void sax_ascii_quote(const char *s, size_t len, int cut, char *out, size_t n)
{
    if (n == 0)
        return;
    size_t total = 0;
    for (size_t i = 0; i < len; i++)
        total += quoted_len((unsigned char)s[i]);
    int dots = cut || total > n - 1;
    size_t room = !dots ? n - 1 : n - 1 > 3 ? n - 1 - 3 : 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t need = quoted_len(c);
        if (o + need > room)
            break;
        if (need == 1)
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, n - o, "\\x%02x", c);
    }
    if (dots && o + 3 <= n - 1) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

int sax_parse_decimal(const char *s, uint64_t max, uint64_t *ret)
{
    if (!*s)
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > max) /* checked every digit, so v * 10 never wraps */
            return -1;
    }
    *ret = v;
    return 0;
}

/* Expat has no DTD-less mode; these make any DOCTYPE or entity declaration
 * end the parse before an entity could be declared, let alone expanded. */
void sax_set_no_dtd(XML_Parser p, XML_StartDoctypeDeclHandler doctype, XML_EntityDeclHandler entity)
{
    XML_SetStartDoctypeDeclHandler(p, doctype);
    XML_SetEntityDeclHandler(p, entity);
    XML_SetParamEntityParsing(p, XML_PARAM_ENTITY_PARSING_NEVER);
}

enum XML_Status sax_feed(XML_Parser p, const char *body, size_t len)
{
    size_t off = 0;
    do {
        size_t n = len - off > FEED_CHUNK ? FEED_CHUNK : len - off;
        enum XML_Status s = XML_Parse(p, body + off, (int)n, off + n == len);
        if (s != XML_STATUS_OK)
            return s;
        off += n;
    } while (off < len);
    return XML_STATUS_OK;
}
