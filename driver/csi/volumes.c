/* See volumes.h. Records are small JSON files replaced atomically. */
#include "csi/volumes.h"
#include "base/fsutil.h"
#include "base/macros.h"
#include "csi/volid.h"

#include <dirent.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct volumes {
    char dir[PATH_MAX];      /* <root>/volumes */
    char overlays[PATH_MAX]; /* <root>/overlays */
};

int volumes_open(const char *store_root, struct volumes **ret, struct wc_error *e)
{
    _cleanup_free_ struct volumes *v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    if (snprintf(v->dir, sizeof(v->dir), "%s/volumes", store_root) >= (int)sizeof(v->dir) ||
        snprintf(v->overlays, sizeof(v->overlays), "%s/overlays", store_root) >= (int)sizeof(v->overlays))
        return wc_err(e, -ENAMETOOLONG, "store root %s is too long", store_root);
    int r;
    if ((r = fs_mkdir_p(v->dir, 0700)) < 0 || (r = fs_mkdir_p(v->overlays, 0755)) < 0)
        return wc_err_errno(e, r, "creating the volume records under %s", store_root);
    *ret = TAKE_PTR(v);
    return 0;
}

void volumes_free(struct volumes *v) { free(v); }

struct vol_record *vol_record_new(const char *volume_id, const char *source, const char *staging_path)
{
    struct vol_record *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->volume_id = strdup(volume_id);
    r->source = strdup(source ? source : "");
    r->staging_path = strdup(staging_path ? staging_path : "");
    if (!r->volume_id || !r->source || !r->staging_path) {
        vol_record_free(r);
        return NULL;
    }
    return r;
}

void vol_record_free(struct vol_record *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_targets; i++) {
        free(r->targets[i].path);
        free(r->targets[i].flags);
    }
    free(r->targets);
    free(r->volume_id);
    free(r->source);
    free(r->staging_path);
    free(r);
}

static int path_of(const struct volumes *v, const char *volume_id, char out[PATH_MAX])
{
    char key[33];
    volid_key(volume_id, key);
    return snprintf(out, PATH_MAX, "%s/%s.json", v->dir, key) >= PATH_MAX ? -ENAMETOOLONG : 0;
}

static void set_cid(char dst[CONTENT_ID_LEN + 1], const char *src)
{
    snprintf(dst, CONTENT_ID_LEN + 1, "%s", src && strlen(src) == CONTENT_ID_LEN ? src : "");
}

/* A record from its JSON; older records (before targets named their copy)
 * give each target the record's copy. */
static struct vol_record *from_json(json_t *j)
{
    const char *id = json_string_value(json_object_get(j, "volume_id"));
    if (!id)
        return NULL;
    struct vol_record *r = vol_record_new(id, json_string_value(json_object_get(j, "source")),
                                          json_string_value(json_object_get(j, "staging_path")));
    if (!r)
        return NULL;
    set_cid(r->content_id, json_string_value(json_object_get(j, "content_id")));
    r->ephemeral = json_is_true(json_object_get(j, "ephemeral"));
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(j, "targets"), i, t) {
        const char *path = json_string_value(json_object_get(t, "path"));
        const char *cid = json_string_value(json_object_get(t, "content_id")) ?: r->content_id;
        if (!path)
            continue;
        if (vol_record_add_target(r, path, cid, json_is_true(json_object_get(t, "writable")),
                                  json_string_value(json_object_get(t, "flags")) ?: "",
                                  (uint64_t)json_integer_value(json_object_get(t, "scratch_bytes"))) < 0) {
            vol_record_free(r);
            return NULL;
        }
    }
    return r;
}

static json_t *to_json(const struct vol_record *r)
{
    json_t *targets = json_array();
    for (size_t i = 0; targets && i < r->n_targets; i++) {
        const struct vol_target *t = &r->targets[i];
        json_array_append_new(targets, json_pack("{s:s, s:s, s:b, s:s, s:I}", "path", t->path, "content_id",
                                                 t->content_id, "writable", t->writable, "flags", t->flags,
                                                 "scratch_bytes", (json_int_t)t->scratch_bytes));
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:b, s:o*}", "volume_id", r->volume_id, "content_id", r->content_id,
                     "source", r->source, "staging_path", r->staging_path, "ephemeral", r->ephemeral, "targets",
                     targets);
}

int volumes_get(struct volumes *v, const char *volume_id, struct vol_record **ret, struct wc_error *e)
{
    char p[PATH_MAX];
    if (path_of(v, volume_id, p) < 0)
        return wc_err(e, -ENAMETOOLONG, "volume record path too long");
    json_error_t je;
    json_t *j _cleanup_json_ = json_load_file(p, 0, &je);
    if (!j) {
        if (access(p, F_OK) < 0 && errno == ENOENT)
            return -ENOENT;
        return wc_err(e, -EIO, "the node record of volume %s (%s) cannot be read: %s", volume_id, p, je.text);
    }
    /* a record is this volume's only if it names it (a hash is not a proof) */
    if (!streq(json_string_value(json_object_get(j, "volume_id")) ?: "", volume_id))
        return -ENOENT;
    struct vol_record *r = from_json(j);
    if (!r)
        return wc_err(e, -ENOMEM, "out of memory reading the record of volume %s", volume_id);
    *ret = r;
    return 0;
}

int volumes_put(struct volumes *v, const struct vol_record *r, struct wc_error *e)
{
    char p[PATH_MAX];
    json_t *j _cleanup_json_ = to_json(r);
    _cleanup_free_ char *txt = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    int rc = txt ? path_of(v, r->volume_id, p) : -ENOMEM;
    if (rc == 0)
        rc = fs_write_atomic(p, txt, strlen(txt), 0600);
    return rc < 0 ? wc_err_errno(e, rc, "saving the node record of volume %s", r->volume_id) : 0;
}

void volumes_drop(struct volumes *v, const char *volume_id)
{
    char p[PATH_MAX];
    if (path_of(v, volume_id, p) == 0)
        unlink(p);
}

int volumes_each(struct volumes *v, int (*fn)(void *ctx, struct vol_record *r), void *ctx)
{
    DIR *d = opendir(v->dir);
    if (!d)
        return -errno;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/%s", v->dir, de->d_name);
        json_t *j _cleanup_json_ = json_load_file(p, 0, NULL);
        struct vol_record *r _cleanup_vol_record_ = j ? from_json(j) : NULL;
        if (r)
            rc = fn(ctx, r);
    }
    closedir(d);
    return rc;
}

struct count {
    const char *cid;
    unsigned n;
};

static int count_one(void *ctx, struct vol_record *r)
{
    struct count *c = ctx;
    c->n += streq(r->content_id, c->cid);
    for (size_t i = 0; i < r->n_targets; i++)
        c->n += streq(r->targets[i].content_id, c->cid);
    return 0;
}

unsigned volumes_refs(void *v, const char *cid)
{
    struct count c = {cid, 0};
    /* records that cannot be read may name cid: counted as in use, so that
     * no copy a mount may show is ever taken for unused (and evicted) */
    if (cid && *cid && volumes_each(v, count_one, &c) < 0)
        return UINT_MAX;
    return c.n;
}

struct vol_target *vol_record_target(const struct vol_record *r, const char *path, size_t *ret_index)
{
    for (size_t i = 0; i < r->n_targets; i++)
        if (streq(r->targets[i].path, path)) {
            if (ret_index)
                *ret_index = i;
            return &r->targets[i];
        }
    return NULL;
}

int vol_record_add_target(struct vol_record *r, const char *path, const char *cid, bool writable, const char *flags,
                          uint64_t scratch_bytes)
{
    if (vol_record_target(r, path, NULL))
        return 0;
    struct vol_target *nt = realloc(r->targets, (r->n_targets + 1) * sizeof(*nt));
    if (!nt)
        return -ENOMEM;
    r->targets = nt;
    struct vol_target *t = &nt[r->n_targets];
    *t = (struct vol_target){.path = strdup(path), .writable = writable, .flags = strdup(flags ? flags : ""),
                             .scratch_bytes = scratch_bytes};
    set_cid(t->content_id, cid);
    if (!t->path || !t->flags) {
        free(t->path);
        free(t->flags);
        return -ENOMEM;
    }
    r->n_targets++;
    return 0;
}

void vol_record_remove_target(struct vol_record *r, size_t index)
{
    if (index >= r->n_targets)
        return;
    free(r->targets[index].path);
    free(r->targets[index].flags);
    memmove(&r->targets[index], &r->targets[index + 1], (r->n_targets - index - 1) * sizeof(*r->targets));
    r->n_targets--;
}

int volumes_layer_dir(const struct volumes *v, const char *volume_id, const char *target, char *out, size_t n)
{
    char vkey[33], tkey[33];
    volid_key(volume_id, vkey);
    volid_key(target, tkey);
    return snprintf(out, n, "%s/%s/%s", v->overlays, vkey, tkey) >= (int)n ? -ENAMETOOLONG : 0;
}

/* ---- orphaned writable layers -------------------------------------------- */

struct layer_names {
    json_t *keep; /* "<vkey>/<tkey>" of every target a record names */
};

static int note_layers(void *ctx, struct vol_record *r)
{
    struct layer_names *ln = ctx;
    char vkey[33], tkey[33], name[80];
    volid_key(r->volume_id, vkey);
    for (size_t i = 0; i < r->n_targets; i++) {
        volid_key(r->targets[i].path, tkey);
        snprintf(name, sizeof(name), "%s/%s", vkey, tkey);
        json_object_set_new(ln->keep, name, json_true());
    }
    return 0;
}

void volumes_orphan_layers(struct volumes *v, void (*fn)(void *ctx, const char *dir), void *ctx)
{
    struct layer_names ln = {json_object()};
    volumes_each(v, note_layers, &ln);
    DIR *d = opendir(v->overlays);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char vdir[PATH_MAX];
        snprintf(vdir, sizeof(vdir), "%s/%s", v->overlays, de->d_name);
        DIR *t = opendir(vdir);
        struct dirent *te;
        while (t && (te = readdir(t))) {
            char name[600], p[PATH_MAX];
            if (te->d_name[0] == '.')
                continue;
            snprintf(name, sizeof(name), "%s/%s", de->d_name, te->d_name);
            if (json_object_get(ln.keep, name))
                continue;
            snprintf(p, sizeof(p), "%s/%s", vdir, te->d_name);
            fn(ctx, p);
        }
        if (t)
            closedir(t);
        rmdir(vdir); /* only if now empty */
    }
    if (d)
        closedir(d);
    json_decref(ln.keep);
}
