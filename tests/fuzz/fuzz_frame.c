/* tests/fuzz/fuzz_frame.c — hostile bytes against everything that decodes what peers send:
 * the frame header, the HELLO / ACK / JOIN / TABLE / ABORT payloads, and a DATA frame checked
 * and applied by a running collective (ring.c's accept_header + on_payload: reduce, decode,
 * forward), on a communicator that has no sockets (frames it would send are only queued).
 *
 * Input layout: byte 0 picks the decoder; for DATA, bytes 1..4 shape the operation (kind, dtype,
 * count, root), then a 32-byte header, then the payload.
 */
#include "collectives/comm_impl.h"

#include <stdlib.h>
#include <string.h>

/* A 3-member communicator seen from rank 1, without connections or a loop thread. */
static loco_comm_t fuzz_comm(void)
{
    static struct loco_comm comm;
    static loco_conn conns[3 + 2 * 2];
    static loco_conn *ctl[3], *out[2], *in[2];
    static loco_link links[3];
    static bool ready;
    if (ready) {
        return &comm;
    }
    loco_comm_config cfg = LOCO_COMM_CONFIG_INIT;
    cfg.streams = 2;
    cfg.chunk_bytes = 4096;
    comm.cfg = cfg;
    comm.rank = 1;
    comm.world = 3;
    comm.prev = 0;
    comm.next = 2;
    comm.conns = conns;
    comm.nconns = 7;
    comm.ctl = ctl;
    comm.out = out;
    comm.in = in;
    comm.links = links;
    for (int k = 0; k < 2; k++) {
        out[k] = &conns[3 + k];
        in[k] = &conns[5 + k];
        *out[k] = (loco_conn){.fd = -1, .peer = 2, .kind = LOCO_CONN_DATA, .outbound = true,
                              .stream = k, .live = true, .name = "rank 2 data out"};
        *in[k] = (loco_conn){.fd = -1, .peer = 0, .kind = LOCO_CONN_DATA, .stream = k,
                             .live = true, .name = "rank 0 data in"};
    }
    ready = true;
    return &comm;
}

static void fuzz_payloads(const uint8_t *data, size_t size)
{
    loco_hello hello;
    loco_join join;
    loco_member members[4];
    uint64_t nonce;
    uint32_t epoch, code;
    int lost;
    char reason[LOCO_REASON_MAX + 1];
    loco_hello_decode(data, size, &hello, NULL);
    loco_join_decode(data, size, &join, NULL);
    loco_table_decode(data, size, 4, &nonce, &epoch, members, NULL);
    loco_ack_decode(data, size, &code, reason, NULL);
    loco_abort_decode(data, size, &lost, reason, NULL);
}

static void fuzz_data_frame(const uint8_t *data, size_t size)
{
    if (size < 4 + LOCO_FRAME_HEADER_BYTES) {
        return;
    }
    loco_comm_t comm = fuzz_comm();
    static size_t counts[3], displs[3];
    static uint8_t sendbuf[3 * 8192], recvbuf[3 * 8192];
    loco_op op = {.root = -1, .sendbuf = sendbuf, .recvbuf = recvbuf};
    op.kind = (loco_op_kind)(1 + data[0] % 4);
    op.dtype = LOCO_OP_ALLREDUCE == op.kind ? (loco_dtype)(data[1] & 1) : LOCO_DTYPE_BYTE;
    op.reduce = (loco_reduce_op)((data[1] >> 1) & 1);
    op.count = (size_t)data[2] * 24 + data[3] % 24; /* up to ~6 KiB: several chunks */
    if (LOCO_OP_ALLGATHERV == op.kind) {
        for (int r = 0; r < 3; r++) {
            counts[r] = (size_t)((data[2] + 7 * r) % 5) * 1000;
            displs[r] = (size_t)r * 8192;
        }
        op.counts = counts;
        op.displs = displs;
    } else if (LOCO_OP_BROADCAST == op.kind) {
        op.root = data[3] % 3;
    }
    data += 4;
    size -= 4;
    loco_op_prepare(comm, &op);
    op.seq = 1;
    for (int k = 0; k < 2; k++) {
        comm->out[k]->tx_count = 0;
    }
    if (LOCO_OK != loco_op_start(comm, &op, NULL)) {
        return;
    }
    /* Feed frames until the input runs out: each one is validated before it touches memory. */
    while (size >= LOCO_FRAME_HEADER_BYTES) {
        loco_conn *c = comm->in[data[0] & 1];
        if (LOCO_OK != loco_frame_header_decode(data, LOCO_FRAME_MAX_PAYLOAD, &c->rx_frame, NULL)) {
            break;
        }
        data += LOCO_FRAME_HEADER_BYTES;
        size -= LOCO_FRAME_HEADER_BYTES;
        c->rx_frame.sig = op.sig; /* reach the deeper checks more often */
        if (LOCO_FRAME_DATA != c->rx_frame.type ||
            LOCO_OK != loco_op_accept_header(comm, &op, c, NULL)) {
            break;
        }
        size_t len = c->rx_frame.length;
        size_t take = len < size ? len : size;
        memcpy(c->rx_dst, data, take);
        memset(c->rx_dst + take, 0, len - take);
        data += take;
        size -= take;
        if (LOCO_OK != loco_op_on_payload(comm, &op, c, NULL)) {
            break;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint8_t which = data[0] % 3;
    data++;
    size--;
    if (0 == which && size >= LOCO_FRAME_HEADER_BYTES) {
        loco_frame_header h;
        loco_frame_header_decode(data, LOCO_FRAME_MAX_PAYLOAD, &h, NULL);
        fuzz_payloads(data + LOCO_FRAME_HEADER_BYTES, size - LOCO_FRAME_HEADER_BYTES);
    } else if (1 == which) {
        fuzz_payloads(data, size);
    } else {
        fuzz_data_frame(data, size);
    }
    return 0;
}
