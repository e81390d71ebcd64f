/* See client.h. One completion queue per client, plucked per call. */
#include "rpc/client.h"
#include "rpc/server.h"
#include "rpc/status.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rpc_client {
    grpc_channel *channel;
    grpc_completion_queue *cq;
};

int rpc_client_open(const char *endpoint, struct rpc_client **ret, struct wc_error *e)
{
    const char *path = rpc_endpoint_path(endpoint);
    if (!path)
        return wc_err(e, -EINVAL, "endpoint \"%s\" is not a unix socket path", endpoint);
    grpc_init();
    struct rpc_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    char target[4200];
    snprintf(target, sizeof(target), "unix:%s", path);
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    c->channel = grpc_channel_create(target, creds, NULL);
    grpc_channel_credentials_release(creds);
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    *ret = c;
    return 0;
}

void rpc_client_close(struct rpc_client *c)
{
    if (!c)
        return;
    grpc_channel_destroy(c->channel);
    grpc_completion_queue_shutdown(c->cq);
    grpc_completion_queue_destroy(c->cq);
    free(c);
    grpc_shutdown();
}

int rpc_client_call(struct rpc_client *c, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *out_desc, double timeout_s,
                    ProtobufCMessage **ret_resp, grpc_status_code *ret_status, struct wc_error *e)
{
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis((int64_t)(timeout_s * 1000), GPR_TIMESPAN));
    grpc_slice mslice = grpc_slice_from_copied_string(method);
    grpc_call *call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, mslice, NULL,
                                               deadline, NULL);
    grpc_slice_unref(mslice);

    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    protobuf_c_message_pack(req, buf);
    grpc_slice s = grpc_slice_new(buf, len, free);
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);

    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_byte_buffer *recv = NULL;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();

    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;

    int r = 0;
    if (grpc_call_start_batch(call, ops, 6, call, NULL) != GRPC_CALL_OK) {
        r = wc_err(e, -EIO, "cannot start the call %s", method);
    } else {
        grpc_completion_queue_pluck(c->cq, call, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        *ret_status = status;
        if (status != GRPC_STATUS_OK) {
            char *d = grpc_slice_to_c_string(details);
            wc_err(e, -EIO, "%s", d);
            gpr_free(d);
            r = -1;
        } else {
            ProtobufCMessage *out = NULL;
            grpc_byte_buffer_reader reader;
            if (recv && grpc_byte_buffer_reader_init(&reader, recv)) {
                grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
                grpc_byte_buffer_reader_destroy(&reader);
                out = protobuf_c_message_unpack(out_desc, NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
                grpc_slice_unref(all);
            }
            if (!out)
                r = wc_err(e, -EBADMSG, "%s: the reply is not a valid %s", method, out_desc->name);
            else
                *ret_resp = out;
        }
    }
    grpc_byte_buffer_destroy(send);
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    grpc_slice_unref(details);
    grpc_call_unref(call);
    return r;
}
