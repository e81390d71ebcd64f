/* Node volume records: what the store asks before it evicts a copy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fsutil.h"
#include "csi/volumes.h"

static char root[PATH_MAX];
static struct wc_error e;
#define CID_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define CID_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static int setup(void **state)
{
    snprintf(root, sizeof(root), "/tmp/wc-volumes.XXXXXX");
    assert_non_null(mkdtemp(root));
    return 0;
}

static int teardown(void **state)
{
    fs_rm_rf(root);
    return 0;
}

static void every_mount_counts_for_the_copy_it_shows(void **state)
{
    struct volumes *v;
    assert_int_equal(volumes_open(root, &v, &e), 0);
    struct vol_record *r = vol_record_new("vol-1", "s3://m/x/", "/stage/1");
    snprintf(r->content_id, sizeof(r->content_id), CID_A);
    assert_int_equal(vol_record_add_target(r, "/pods/a", CID_A, false, "nosuid,nodev", 0), 0);
    /* refilled under a new id (Follow): the old pod's mount still shows A */
    snprintf(r->content_id, sizeof(r->content_id), CID_B);
    assert_int_equal(vol_record_add_target(r, "/pods/b", CID_B, true, "nosuid,nodev", 1 << 20), 0);
    assert_int_equal(volumes_put(v, r, &e), 0);
    vol_record_free(r);
    assert_int_equal(volumes_refs(v, CID_A), 1);
    assert_int_equal(volumes_refs(v, CID_B), 2);

    struct vol_record *back;
    assert_int_equal(volumes_get(v, "vol-1", &back, &e), 0);
    assert_int_equal(back->n_targets, 2);
    assert_string_equal(back->targets[0].content_id, CID_A);
    assert_true(back->targets[1].writable);
    assert_int_equal(back->targets[1].scratch_bytes, 1 << 20);
    /* a staging mount that is gone shows nothing */
    back->content_id[0] = '\0';
    vol_record_remove_target(back, 0);
    assert_int_equal(volumes_put(v, back, &e), 0);
    vol_record_free(back);
    assert_int_equal(volumes_refs(v, CID_A), 0);
    assert_int_equal(volumes_refs(v, CID_B), 1);
    volumes_drop(v, "vol-1");
    assert_int_equal(volumes_get(v, "vol-1", &back, &e), -ENOENT);
    volumes_free(v);
}

/* Records written before targets named their copy still count. */
static void older_records_are_read(void **state)
{
    struct volumes *v;
    assert_int_equal(volumes_open(root, &v, &e), 0);
    struct vol_record *r = vol_record_new("vol-2", "file:///m/", "/s");
    assert_int_equal(volumes_put(v, r, &e), 0); /* to learn the file's name */
    vol_record_free(r);
    char cmd[PATH_MAX * 2];
    snprintf(cmd, sizeof(cmd), "for f in %s/volumes/*.json; do printf '%%s' '{\"volume_id\":\"vol-2\",\"content_id\":\""
             CID_A "\",\"source\":\"file:///m/\",\"staging_path\":\"/s\",\"targets\":[{\"path\":\"/t\","
             "\"writable\":false,\"flags\":\"nosuid,nodev\"}]}' > $f; done", root);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(volumes_refs(v, CID_A), 2);
    assert_int_equal(volumes_get(v, "vol-2", &r, &e), 0);
    assert_string_equal(r->targets[0].content_id, CID_A);
    vol_record_free(r);
    volumes_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(every_mount_counts_for_the_copy_it_shows, setup, teardown),
        cmocka_unit_test_setup_teardown(older_records_are_read, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
