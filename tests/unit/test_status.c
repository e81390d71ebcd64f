/* The one error table: the codes kubelet and the provisioner act on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>

#include "rpc/status.h"

static void maps_what_the_spec_asks(void **state)
{
    assert_int_equal(rpc_status_from_errno(0), GRPC_STATUS_OK);
    assert_int_equal(rpc_status_from_errno(-EINVAL), GRPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(rpc_status_from_errno(-ENOENT), GRPC_STATUS_NOT_FOUND);
    assert_int_equal(rpc_status_from_errno(-EEXIST), GRPC_STATUS_ALREADY_EXISTS);
    assert_int_equal(rpc_status_from_errno(-EBUSY), GRPC_STATUS_ABORTED);
    assert_int_equal(rpc_status_from_errno(-ERANGE), GRPC_STATUS_OUT_OF_RANGE);
    assert_int_equal(rpc_status_from_errno(-ENOSPC), GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(rpc_status_from_errno(-ESTALE), GRPC_STATUS_FAILED_PRECONDITION);
    assert_int_equal(rpc_status_from_errno(-ENOTCONN), GRPC_STATUS_FAILED_PRECONDITION);
    assert_int_equal(rpc_status_from_errno(-EOPNOTSUPP), GRPC_STATUS_UNIMPLEMENTED);
    assert_int_equal(rpc_status_from_errno(-ECANCELED), GRPC_STATUS_CANCELLED);
    assert_int_equal(rpc_status_from_errno(-EACCES), GRPC_STATUS_PERMISSION_DENIED);
}

static void unknown_errors_are_internal(void **state)
{
    assert_int_equal(rpc_status_from_errno(-EXFULL), GRPC_STATUS_INTERNAL);
    assert_int_equal(rpc_status_from_errno(-9999), GRPC_STATUS_INTERNAL);
}

static void sign_does_not_matter(void **state)
{
    assert_int_equal(rpc_status_from_errno(EINVAL), rpc_status_from_errno(-EINVAL));
}

static void names(void **state)
{
    assert_string_equal(rpc_status_name(GRPC_STATUS_ABORTED), "ABORTED");
    assert_string_equal(rpc_status_name(GRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_string_equal(rpc_status_name((grpc_status_code)99), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(maps_what_the_spec_asks), cmocka_unit_test(unknown_errors_are_internal),
        cmocka_unit_test(sign_does_not_matter), cmocka_unit_test(names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
