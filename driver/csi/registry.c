/* See registry.h. */
#include "csi/registry.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/macros.h"
#include "csi/volid.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

int registry_open(const char *dir, struct registry **ret, struct wc_error *e)
{
    struct registry *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    pthread_mutex_init(&r->lock, NULL);
    r->vols = json_object();
    if (dir) {
        r->dir = strdup(dir);
        int rc = fs_mkdir_p(dir, 0700);
        if (rc < 0) {
            registry_free(r);
            return wc_err_errno(e, rc, "controller state directory %s", dir);
        }
        DIR *d = opendir(dir);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            size_t n = strlen(de->d_name);
            if (n != VOLID_LEN + 5 || strcmp(de->d_name + VOLID_LEN, ".json") != 0)
                continue;
            char p[PATH_MAX];
            snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
            json_t *rec = json_load_file(p, 0, NULL);
            const char *id = json_string_value(json_object_get(rec, "volume_id"));
            if (id && volid_is_ours(id))
                json_object_set(r->vols, id, rec);
            else
                log_warn("controller state: ignoring unreadable %s", p);
            json_decref(rec);
        }
        if (d)
            closedir(d);
    }
    *ret = r;
    return 0;
}

void registry_free(struct registry *r)
{
    if (!r)
        return;
    json_decref(r->vols);
    free(r->dir);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

json_t *registry_get(struct registry *r, const char *volume_id)
{
    pthread_mutex_lock(&r->lock);
    json_t *rec = json_incref(json_object_get(r->vols, volume_id));
    pthread_mutex_unlock(&r->lock);
    return rec;
}

static int file_of(struct registry *r, const char *volume_id, char *p, size_t n)
{
    if (!volid_is_ours(volume_id))
        return -EINVAL;
    return snprintf(p, n, "%s/%s.json", r->dir, volume_id) < (int)n ? 0 : -ENAMETOOLONG;
}

int registry_put(struct registry *r, const char *volume_id, json_t *record, struct wc_error *e)
{
    int rc = 0;
    pthread_mutex_lock(&r->lock);
    if (r->dir) {
        char p[PATH_MAX];
        _cleanup_free_ char *txt = json_dumps(record, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        rc = file_of(r, volume_id, p, sizeof(p));
        if (rc == 0)
            rc = txt ? fs_write_atomic(p, txt, strlen(txt), 0600) : -ENOMEM;
        if (rc < 0)
            wc_err_errno(e, rc, "saving controller state for %s", volume_id);
    }
    if (rc == 0)
        json_object_set(r->vols, volume_id, record);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int registry_delete(struct registry *r, const char *volume_id, struct wc_error *e)
{
    int rc = 0;
    pthread_mutex_lock(&r->lock);
    if (r->dir && volid_is_ours(volume_id)) {
        char p[PATH_MAX];
        if (file_of(r, volume_id, p, sizeof(p)) == 0 && unlink(p) < 0 && errno != ENOENT)
            rc = wc_err_errno(e, -errno, "removing controller state for %s", volume_id);
    }
    if (rc == 0)
        json_object_del(r->vols, volume_id);
    pthread_mutex_unlock(&r->lock);
    return rc;
}
