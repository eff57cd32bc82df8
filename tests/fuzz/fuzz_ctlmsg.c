/* tests/fuzz/fuzz_ctlmsg.c — hostile bytes against everything of the control plane that reads
 * what peers send: every control message decoder (REGISTER, WELCOME, RESULT/VERDICT, PING,
 * RECONF, PLAN, PLAN_DONE/COMMIT, JOIN_REQ, REDIRECT, XFER_REQ), the handshake state machines
 * of both sides (auth.c) and the framed channel reader (chan.c), the last two fed through a
 * socket pair exactly as a peer's bytes would arrive.
 *
 * Input layout: byte 0 picks the target; the rest is the message (or the byte stream). Mode 12
 * builds a valid message from the input first and then corrupts one byte, so decoding goes past
 * the first checks more often.
 */
#include "collectives/ft_impl.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void decode_all(const uint8_t *d, size_t n)
{
    loco_msg_register reg;
    if (LOCO_OK == loco_msg_register_decode(d, n, &reg, NULL)) {
        loco_msg_register_free(&reg);
    }
    loco_msg_welcome w;
    loco_msg_welcome_decode(d, n, &w, NULL);
    loco_msg_outcome o;
    loco_msg_outcome_decode(d, n, &o, NULL);
    loco_msg_progress pr;
    loco_msg_progress_decode(d, n, &pr, NULL);
    loco_msg_reconf rc;
    if (LOCO_OK == loco_msg_reconf_decode(d, n, &rc, NULL)) {
        loco_msg_reconf_free(&rc);
    }
    loco_plan p;
    if (LOCO_OK == loco_plan_decode(d, n, 3, &p, NULL)) {
        for (int i = 0; i < p.n_recv; i++) { /* what xfer.c reads from a plan */
            (void)loco_mask_has(p.masks + (size_t)i * LOCO_STATE_MASK_BYTES, p.nbuf - 1);
        }
        loco_plan_free(&p);
    }
    uint32_t round = 0, id = 0, stripe = 0, nstripes = 0;
    int32_t status = 0;
    char reason[LOCO_REASON_MAX + 1];
    loco_msg_round_decode(d, n, &round, &status, reason, NULL);
    loco_member m;
    loco_join_req_decode(d, n, &id, &m, NULL);
    char host[LOCO_HOST_MAX];
    uint16_t port = 0;
    loco_redirect_decode(d, n, host, &port, NULL);
    loco_xfer_req_decode(d, n, &round, &id, &stripe, &nstripes, NULL);
}

/* Feed a byte stream to one side of a handshake (or a channel) through a socket pair. */
static void feed(int target, const uint8_t *d, size_t n)
{
    int sp[2];
    if (0 != socketpair(AF_UNIX, SOCK_STREAM, 0, sp)) {
        return;
    }
    loco_net_set_nonblocking(sp[0]);
    loco_net_set_nonblocking(sp[1]);
    uint8_t key[32] = {1, 2, 3};
    if (0 == target) { /* acceptor: whatever a dialer sends */
        loco_hs hs;
        loco_hs_accept(&hs, sp[0], key, 77);
        size_t off = 0;
        while (off < n) {
            ssize_t w = send(sp[1], d + off, n - off > 512 ? 512 : n - off, MSG_NOSIGNAL);
            off += w > 0 ? (size_t)w : n;
            if (LOCO_HS_AGAIN != loco_hs_step(&hs, NULL, NULL)) {
                break;
            }
        }
    } else if (1 == target) { /* dialer: whatever an acceptor answers */
        loco_hs hs;
        loco_hello hello = {.nonce = 77, .from = 0, .to = 1, .world = 2, .streams = 1};
        loco_hs_dial(&hs, sp[0], key, 0, &hello);
        send(sp[1], d, n < 4096 ? n : 4096, MSG_NOSIGNAL);
        for (int i = 0; i < 4 && LOCO_HS_AGAIN == loco_hs_step(&hs, NULL, NULL); i++) {
        }
    } else { /* a channel, with or without frame MACs */
        loco_chan ch;
        loco_hs hs = {0};
        loco_chan_open(&ch, sp[0], "fuzz", 1u << 16, &hs, true, 3 == target);
        sp[0] = -1;
        send(sp[1], d, n < 65536 ? n : 65536, MSG_NOSIGNAL);
        shutdown(sp[1], SHUT_WR);
        for (int i = 0; i < 64 && loco_chan_read(&ch, NULL) > 0; i++) {
        }
        loco_chan_close(&ch);
    }
    if (sp[0] >= 0) {
        close(sp[0]);
    }
    close(sp[1]);
}

/* Build a valid message from the input, corrupt one byte, decode. */
static void valid_then_corrupt(const uint8_t *d, size_t n)
{
    if (n < 8) {
        return;
    }
    static uint8_t buf[1 << 16];
    size_t len = 0;
    loco_member members[4];
    for (int i = 0; i < 4; i++) {
        members[i] = (loco_member){.port = (uint16_t)(1000 + d[i]), .id = (uint32_t)i,
                                   .cport = d[4]};
        snprintf(members[i].host, sizeof members[i].host, "h%u", d[i]);
    }
    switch (d[5] % 4) {
    case 0: {
        loco_msg_register m = {.id = d[1], .epoch = d[2], .pend_seq = d[3], .self = members[0],
                               .n = d[6] % 5, .table = members};
        len = loco_msg_register_encode(&m, buf, sizeof buf);
        break;
    }
    case 1: {
        loco_state_desc bufs[3] = {{8, d[1], "a"}, {16, d[2], "bb"}, {0, d[3], "ccc"}};
        loco_msg_reconf m = {.kind = 1 + d[6] % 2, .flags = d[7] % 8, .step = d[1],
                             .nbuf = d[6] % 4, .bufs = bufs};
        len = loco_msg_reconf_encode(&m, buf, sizeof buf);
        break;
    }
    case 2: {
        uint64_t digests[3] = {d[1], d[2], d[3]}, bytes[3] = {8, 16, 0};
        uint32_t ids[2] = {0, 1};
        uint8_t masks[2 * LOCO_STATE_MASK_BYTES] = {0x7, 0x3};
        loco_plan p = {.round = d[1], .kind = 2, .n = d[6] % 5, .members = members,
                       .nbuf = 3, .digests = digests, .bytes = bytes, .n_send = 2,
                       .senders = ids, .n_recv = d[7] % 3, .receivers = ids, .masks = masks,
                       .streams = 1 + d[2] % 4};
        len = loco_plan_encode(&p, buf, sizeof buf);
        break;
    }
    default: {
        loco_msg_outcome o = {.status = -(int32_t)(d[1] % 30), .blame = d[2] % 4 - 1,
                              .verdict = d[3] % 3, .digest = d[6]};
        len = loco_msg_outcome_encode(&o, buf);
    }
    }
    if (len > 0) {
        buf[d[7] % len] ^= (uint8_t)(1u << (d[6] % 8));
        decode_all(buf, len - (d[4] % 2) * (len > 1 ? 1 : 0));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint8_t which = data[0] % 6;
    data++;
    size--;
    switch (which) {
    case 0: decode_all(data, size); break;
    case 1: feed(0, data, size); break;
    case 2: feed(1, data, size); break;
    case 3: feed(2, data, size); break;
    case 4: feed(3, data, size); break;
    default: valid_then_corrupt(data, size);
    }
    return 0;
}
