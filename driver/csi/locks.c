/* See locks.h. A short list under a mutex: a node has tens of volumes, not millions. */
#include "csi/locks.h"
#include "base/macros.h"

#include <stdlib.h>
#include <string.h>

void vlocks_init(struct volume_locks *l)
{
    *l = (struct volume_locks){0};
    pthread_mutex_init(&l->lock, NULL);
}

void vlocks_fini(struct volume_locks *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->held[i]);
    free(l->held);
    pthread_mutex_destroy(&l->lock);
}

int vlocks_try(struct volume_locks *l, const char *volume_id, struct wc_error *e)
{
    int r = 0;
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->n; i++)
        if (streq(l->held[i], volume_id)) {
            r = wc_err(e, -EBUSY, "an operation on volume %.200s is already in progress; retry later", volume_id);
            goto out;
        }
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        char **nh = realloc(l->held, ncap * sizeof(*nh));
        if (!nh) {
            r = wc_err(e, -ENOMEM, "out of memory");
            goto out;
        }
        l->held = nh;
        l->cap = ncap;
    }
    if (!(l->held[l->n] = strdup(volume_id)))
        r = wc_err(e, -ENOMEM, "out of memory");
    else
        l->n++;
out:
    pthread_mutex_unlock(&l->lock);
    return r;
}

void vlocks_release(struct volume_locks *l, const char *volume_id)
{
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->n; i++)
        if (streq(l->held[i], volume_id)) {
            free(l->held[i]);
            l->held[i] = l->held[--l->n];
            break;
        }
    pthread_mutex_unlock(&l->lock);
}
