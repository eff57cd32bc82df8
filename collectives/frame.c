/* collectives/frame.c — the wire format: frame headers and the handshake/bootstrap payloads.
 *
 * Pure functions, no I/O. Every decoder treats its input as hostile: it checks the length before
 * reading, validates every field it returns, and describes a failure in one line (the caller
 * prefixes the peer's name). Layouts are documented in comm_impl.h.
 */
#include "collectives/comm_impl.h"

#include <stdio.h>
#include <string.h>

/* ---- little-endian helpers ------------------------------------------------------------------ */

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t get_u64(const uint8_t *p) { return get_u32(p) | ((uint64_t)get_u32(p + 4) << 32); }

void loco_sanitize_text(const uint8_t *in, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < cap; i++) {
        if (0 == in[i]) {
            break;
        }
        out[n++] = (in[i] >= 0x20 && in[i] < 0x7f) ? (char)in[i] : '?';
    }
    out[n] = '\0';
}

const char *loco_frame_type_name(int type)
{
    switch (type) {
    case LOCO_FRAME_HELLO: return "HELLO";
    case LOCO_FRAME_ACK: return "ACK";
    case LOCO_FRAME_DATA: return "DATA";
    case LOCO_FRAME_PING: return "PING";
    case LOCO_FRAME_ABORT: return "ABORT";
    case LOCO_FRAME_BYE: return "BYE";
    case LOCO_FRAME_JOIN: return "JOIN";
    case LOCO_FRAME_TABLE: return "TABLE";
    case LOCO_FRAME_DONE: return "DONE";
    case LOCO_FRAME_CHALLENGE: return "CHALLENGE";
    case LOCO_FRAME_PROOF: return "PROOF";
    case LOCO_FRAME_REGISTER: return "REGISTER";
    case LOCO_FRAME_WELCOME: return "WELCOME";
    case LOCO_FRAME_BEGIN: return "BEGIN";
    case LOCO_FRAME_RESULT: return "RESULT";
    case LOCO_FRAME_VERDICT: return "VERDICT";
    case LOCO_FRAME_RECONF: return "RECONF";
    case LOCO_FRAME_PLAN: return "PLAN";
    case LOCO_FRAME_PLAN_DONE: return "PLAN_DONE";
    case LOCO_FRAME_COMMIT: return "COMMIT";
    case LOCO_FRAME_JOIN_REQ: return "JOIN_REQ";
    case LOCO_FRAME_REDIRECT: return "REDIRECT";
    case LOCO_FRAME_XFER_REQ: return "XFER_REQ";
    case LOCO_FRAME_XFER_DATA: return "XFER_DATA";
    }
    return "unknown";
}

/* ---- header --------------------------------------------------------------------------------- */

void loco_frame_header_encode(const loco_frame_header *h, uint8_t out[LOCO_FRAME_HEADER_BYTES])
{
    put_u32(out + 0, LOCO_FRAME_MAGIC);
    out[4] = h->version;
    out[5] = h->type;
    put_u16(out + 6, h->step);
    put_u32(out + 8, h->epoch);
    put_u32(out + 12, h->length);
    put_u64(out + 16, h->seq);
    put_u32(out + 24, h->chunk);
    put_u32(out + 28, h->sig);
}

loco_status loco_frame_header_decode(const uint8_t in[LOCO_FRAME_HEADER_BYTES],
                                     uint32_t max_payload, loco_frame_header *h, loco_error *err)
{
    uint32_t magic = get_u32(in);
    if (LOCO_FRAME_MAGIC != magic) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "bad frame magic 0x%08x (not a loco peer, or a corrupted stream)",
                              magic);
    }
    h->version = in[4];
    h->type = in[5];
    h->step = get_u16(in + 6);
    h->epoch = get_u32(in + 8);
    h->length = get_u32(in + 12);
    h->seq = get_u64(in + 16);
    h->chunk = get_u32(in + 24);
    h->sig = get_u32(in + 28);
    if (LOCO_PROTOCOL_VERSION != h->version) {
        return loco_error_set(err, LOCO_ERR_VERSION,
                              "protocol version %u, this loco speaks %u (run the same loco "
                              "version on every member)",
                              h->version, LOCO_PROTOCOL_VERSION);
    }
    if (h->type < LOCO_FRAME_HELLO || h->type > LOCO_FRAME_TYPE_MAX) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "unknown frame type %u", h->type);
    }
    if (h->length > max_payload) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL,
                              "%s frame length %u exceeds the limit %u",
                              loco_frame_type_name(h->type), h->length, max_payload);
    }
    return LOCO_OK;
}

/* ---- HELLO ---------------------------------------------------------------------------------- */

void loco_hello_encode(const loco_hello *hello, uint8_t out[LOCO_HELLO_BYTES])
{
    memset(out, 0, LOCO_HELLO_BYTES);
    put_u64(out + 0, hello->nonce);
    put_u32(out + 8, hello->from);
    put_u32(out + 12, hello->to);
    put_u32(out + 16, hello->world);
    put_u16(out + 20, hello->kind);
    put_u16(out + 22, hello->stream);
    put_u16(out + 24, hello->streams);
    put_u16(out + 26, hello->flags);
    put_u32(out + 28, hello->caps);
    memcpy(out + 32, hello->challenge, LOCO_CHALLENGE_BYTES);
}

loco_status loco_hello_decode(const uint8_t *in, size_t len, loco_hello *hello, loco_error *err)
{
    if (LOCO_HELLO_BYTES != len) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "HELLO payload of %zu bytes, expected %d",
                              len, LOCO_HELLO_BYTES);
    }
    hello->nonce = get_u64(in + 0);
    hello->from = get_u32(in + 8);
    hello->to = get_u32(in + 12);
    hello->world = get_u32(in + 16);
    hello->kind = get_u16(in + 20);
    hello->stream = get_u16(in + 22);
    hello->streams = get_u16(in + 24);
    hello->flags = get_u16(in + 26);
    hello->caps = get_u32(in + 28);
    memcpy(hello->challenge, in + 32, LOCO_CHALLENGE_BYTES);
    if (hello->kind > LOCO_CONN_KIND_MAX) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "HELLO for connection kind %u",
                              hello->kind);
    }
    bool ranked = LOCO_CONN_CONTROL == hello->kind || LOCO_CONN_DATA == hello->kind ||
                  LOCO_CONN_STATE == hello->kind || LOCO_CONN_BOOT == hello->kind;
    if (hello->world > LOCO_MAX_WORLD ||
        (ranked && (0 == hello->world || hello->from >= hello->world ||
                    hello->to >= hello->world))) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "HELLO with ranks %u -> %u in a world of %u",
                              hello->from, hello->to, hello->world);
    }
    if (0 == hello->streams || hello->streams > LOCO_MAX_STREAMS ||
        hello->stream >= hello->streams) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL,
                              "HELLO for connection kind %u stream %u of %u", hello->kind,
                              hello->stream, hello->streams);
    }
    return LOCO_OK;
}

/* ---- ACK ------------------------------------------------------------------------------------ */

size_t loco_ack_encode(loco_ack_code code, const char *reason, uint8_t *out)
{
    put_u32(out, (uint32_t)code);
    size_t n = NULL == reason ? 0 : strlen(reason);
    if (n > LOCO_REASON_MAX) {
        n = LOCO_REASON_MAX;
    }
    memcpy(out + 4, reason, n);
    return 4 + n;
}

loco_status loco_ack_decode(const uint8_t *in, size_t len, uint32_t *code,
                            char reason[LOCO_REASON_MAX + 1], loco_error *err)
{
    if (len < 4 || len > 4 + LOCO_REASON_MAX) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "ACK payload of %zu bytes (4..%d allowed)",
                              len, 4 + LOCO_REASON_MAX);
    }
    *code = get_u32(in);
    loco_sanitize_text(in + 4, len - 4, reason, LOCO_REASON_MAX + 1);
    return LOCO_OK;
}

/* ---- JOIN and TABLE ------------------------------------------------------------------------- */

static void put_host(uint8_t *p, const char *host)
{
    memset(p, 0, LOCO_HOST_MAX);
    size_t n = strnlen(host, LOCO_HOST_MAX - 1);
    memcpy(p, host, n);
}

/* A host field must be NUL-terminated inside its 64 bytes and made of host-name characters. */
static loco_status get_host(const uint8_t *p, char *host, const char *what, loco_error *err)
{
    size_t n = 0;
    while (n < LOCO_HOST_MAX && 0 != p[n]) {
        uint8_t c = p[n];
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  '.' == c || '-' == c || ':' == c || '_' == c || '%' == c;
        if (!ok) {
            return loco_error_set(err, LOCO_ERR_PROTOCOL,
                                  "%s: host name has a bad character 0x%02x", what, c);
        }
        n++;
    }
    if (LOCO_HOST_MAX == n) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "%s: host name is not terminated", what);
    }
    memcpy(host, p, n);
    host[n] = '\0';
    return LOCO_OK;
}

void loco_join_encode(const loco_join *join, uint8_t out[LOCO_JOIN_BYTES])
{
    memset(out, 0, LOCO_JOIN_BYTES);
    put_u64(out + 0, join->nonce);
    put_u32(out + 8, join->rank);
    put_u32(out + 12, join->world);
    put_u32(out + 16, join->caps);
    put_u16(out + 20, join->port);
    put_u16(out + 22, join->cport);
    put_host(out + 24, join->host);
}

loco_status loco_join_decode(const uint8_t *in, size_t len, loco_join *join, loco_error *err)
{
    if (LOCO_JOIN_BYTES != len) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "JOIN payload of %zu bytes, expected %d",
                              len, LOCO_JOIN_BYTES);
    }
    join->nonce = get_u64(in + 0);
    join->rank = get_u32(in + 8);
    join->world = get_u32(in + 12);
    join->caps = get_u32(in + 16);
    join->port = get_u16(in + 20);
    join->cport = get_u16(in + 22);
    LOCO_TRY(get_host(in + 24, join->host, "JOIN", err));
    if (0 == join->world || join->world > LOCO_MAX_WORLD || join->rank >= join->world) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "JOIN as rank %u of a world of %u",
                              join->rank, join->world);
    }
    if (0 == join->port) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "JOIN with listening port 0");
    }
    return LOCO_OK;
}

size_t loco_table_encode(uint64_t nonce, uint32_t epoch, int world, const loco_member *members,
                         uint8_t *out)
{
    put_u64(out + 0, nonce);
    put_u32(out + 8, (uint32_t)world);
    put_u32(out + 12, epoch);
    for (int r = 0; r < world; r++) {
        loco_member_encode(&members[r], out + LOCO_TABLE_HEAD_BYTES + (size_t)r * LOCO_MEMBER_BYTES);
    }
    return LOCO_TABLE_HEAD_BYTES + (size_t)world * LOCO_MEMBER_BYTES;
}

loco_status loco_table_decode(const uint8_t *in, size_t len, int expected_world, uint64_t *nonce,
                              uint32_t *epoch, loco_member *members, loco_error *err)
{
    if (len < LOCO_TABLE_HEAD_BYTES) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "TABLE payload of %zu bytes is too short",
                              len);
    }
    uint32_t world = get_u32(in + 8);
    if ((uint32_t)expected_world != world) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "TABLE for a world of %u, expected %d",
                              world, expected_world);
    }
    if (len != LOCO_TABLE_HEAD_BYTES + (size_t)world * LOCO_MEMBER_BYTES) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL,
                              "TABLE payload of %zu bytes for %u members", len, world);
    }
    *nonce = get_u64(in);
    *epoch = get_u32(in + 12);
    for (uint32_t r = 0; r < world; r++) {
        LOCO_TRY(loco_member_decode(in + LOCO_TABLE_HEAD_BYTES + (size_t)r * LOCO_MEMBER_BYTES,
                                    &members[r], "TABLE", err));
    }
    return LOCO_OK;
}

void loco_member_encode(const loco_member *m, uint8_t *out)
{
    put_host(out, m->host);
    put_u16(out + 64, m->port);
    put_u16(out + 66, m->cport);
    put_u32(out + 68, m->caps);
    put_u32(out + 72, m->id);
}

loco_status loco_member_decode(const uint8_t *in, loco_member *m, const char *what,
                               loco_error *err)
{
    LOCO_TRY(get_host(in, m->host, what, err));
    m->port = get_u16(in + 64);
    m->cport = get_u16(in + 66);
    m->caps = get_u32(in + 68);
    m->id = get_u32(in + 72);
    if (0 == m->port || LOCO_ID_ANY == m->id) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "%s: member %u has port %u", what, m->id,
                              m->port);
    }
    return LOCO_OK;
}

/* ---- ABORT ---------------------------------------------------------------------------------- */

size_t loco_abort_encode(int lost_rank, const char *reason, uint8_t *out)
{
    put_u32(out, (uint32_t)lost_rank);
    put_u32(out + 4, 0);
    size_t n = NULL == reason ? 0 : strlen(reason);
    if (n > LOCO_REASON_MAX) {
        n = LOCO_REASON_MAX;
    }
    memcpy(out + 8, reason, n);
    return 8 + n;
}

loco_status loco_abort_decode(const uint8_t *in, size_t len, int *lost_rank,
                              char reason[LOCO_REASON_MAX + 1], loco_error *err)
{
    if (len < 8 || len > 8 + LOCO_REASON_MAX) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "ABORT payload of %zu bytes (8..%d allowed)",
                              len, 8 + LOCO_REASON_MAX);
    }
    int32_t lost = (int32_t)get_u32(in);
    if (lost < -1 || lost >= LOCO_MAX_WORLD) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "ABORT names rank %d", lost);
    }
    *lost_rank = lost;
    loco_sanitize_text(in + 8, len - 8, reason, LOCO_REASON_MAX + 1);
    return LOCO_OK;
}
