/* collectives/auth.c — who may connect: the run key, the HMAC challenge-response handshake that
 * opens every connection, and the per-frame MAC of `integrity` runs (comm_impl.h shows the
 * message flow).
 *
 * The handshake is a small state machine over a non-blocking socket so that event loops (the
 * worker's, the coordinator's) can run it without blocking; loco_hs_run drives it with poll for
 * code that may block (bootstrap, wiring, dialing the coordinator). Every message it reads is
 * hostile until proven otherwise: lengths and types are checked before use, and a refusal names
 * the cause in one line.
 */
#define _GNU_SOURCE
#include "collectives/comm_impl.h"

#include <errno.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_MIN_CHARS 16
#define KEY_FILE_MAX 4096

/* ---- the run key ---------------------------------------------------------------------------- */

void loco_random_bytes(void *buf, size_t n)
{
    if (sodium_init() < 0) {
        LOCO_ASSERT(!"libsodium failed to initialise");
    }
    randombytes_buf(buf, n);
}

/* Any secret text becomes a 32-byte key (BLAKE2b under a fixed personal label). */
static loco_status key_from_text(const uint8_t *text, size_t len, const char *where,
                                 uint8_t key[32], loco_error *err)
{
    while (len > 0 && ('\n' == text[len - 1] || '\r' == text[len - 1] || ' ' == text[len - 1])) {
        len--;
    }
    if (len < KEY_MIN_CHARS) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "run key from %s has %zu characters; at least %d are needed (e.g. "
                              "`head -c 32 /dev/urandom | base64 > run.key`)",
                              where, len, KEY_MIN_CHARS);
    }
    if (sodium_init() < 0) {
        return loco_error_set(err, LOCO_ERR_SYSTEM, "libsodium failed to initialise");
    }
    static const uint8_t label[] = "loco run key v1";
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, label, sizeof label);
    crypto_generichash_update(&st, text, len);
    crypto_generichash_final(&st, key, 32);
    return LOCO_OK;
}

static loco_status key_from_file(const char *path, uint8_t key[32], loco_error *err)
{
    struct stat sb;
    if (0 == stat(path, &sb) && (sb.st_mode & 077)) {
        LOCO_WARN("run key file %s is readable by others (chmod 600 it)", path);
    }
    FILE *fp = fopen(path, "rb");
    if (NULL == fp) {
        return loco_error_errno(err, LOCO_ERR_CONFIG, errno, "cannot read the run key file %s",
                                path);
    }
    uint8_t buf[KEY_FILE_MAX];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    char where[300];
    snprintf(where, sizeof where, "file %s", path);
    loco_status st = key_from_text(buf, n, where, key, err);
    sodium_memzero(buf, sizeof buf);
    return st;
}

loco_status loco_key_resolve(const loco_comm_config *cfg, bool required, uint8_t key[32],
                             bool *have, loco_error *err)
{
    *have = false;
    if ('\0' != cfg->key_file[0]) {
        LOCO_TRY(key_from_file(cfg->key_file, key, err));
        *have = true;
        return LOCO_OK;
    }
    if (cfg->has_key) {
        memcpy(key, cfg->key, 32);
        *have = true;
        return LOCO_OK;
    }
    const char *file = getenv("LOCO_RUN_KEY_FILE");
    if (NULL != file && '\0' != file[0]) {
        LOCO_TRY(key_from_file(file, key, err));
        *have = true;
        return LOCO_OK;
    }
    const char *text = getenv("LOCO_RUN_KEY");
    if (NULL != text && '\0' != text[0]) {
        LOCO_TRY(key_from_text((const uint8_t *)text, strlen(text), "LOCO_RUN_KEY", key, err));
        *have = true;
        return LOCO_OK;
    }
    if (required) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "no run key: every connection must prove it knows the run's key; "
                              "set transport.key_file, LOCO_RUN_KEY_FILE=PATH or LOCO_RUN_KEY "
                              "(never on the command line)");
    }
    return LOCO_OK;
}

/* ---- handshake MACs ------------------------------------------------------------------------- */

static void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

/* HMAC(K, label | nonce | HELLO | ca | extra). */
static void hs_mac(const loco_hs *hs, const char *label, const uint8_t *extra, size_t extra_len,
                   uint8_t out[LOCO_MAC_BYTES])
{
    crypto_auth_hmacsha512256_state st;
    uint8_t nonce[8];
    put_u64le(nonce, hs->nonce);
    crypto_auth_hmacsha512256_init(&st, hs->key, 32);
    crypto_auth_hmacsha512256_update(&st, (const uint8_t *)label, strlen(label) + 1);
    crypto_auth_hmacsha512256_update(&st, nonce, sizeof nonce);
    crypto_auth_hmacsha512256_update(&st, hs->hello_raw, sizeof hs->hello_raw);
    crypto_auth_hmacsha512256_update(&st, hs->ca, sizeof hs->ca);
    if (extra_len > 0) {
        crypto_auth_hmacsha512256_update(&st, extra, extra_len);
    }
    crypto_auth_hmacsha512256_final(&st, out);
}

static void hs_session(loco_hs *hs)
{
    hs_mac(hs, "loco handshake session", hs->ma, sizeof hs->ma, hs->session);
}

/* ---- handshake I/O -------------------------------------------------------------------------- */

static loco_hs_result hs_fail(loco_hs *hs, loco_status st, uint32_t code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static loco_hs_result hs_fail(loco_hs *hs, loco_status st, uint32_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(hs->reason, sizeof hs->reason, fmt, ap);
    va_end(ap);
    hs->state = LOCO_HS_FAILED;
    hs->status = st;
    hs->code = code;
    return LOCO_HS_ERROR;
}

/* Write a small frame at once (a handshake's frames fit any socket buffer). */
static bool hs_send(loco_hs *hs, loco_frame_type type, uint32_t epoch, const uint8_t *payload,
                    uint32_t len)
{
    uint8_t buf[LOCO_FRAME_HEADER_BYTES + LOCO_HELLO_BYTES + LOCO_CHALLENGE_PAYLOAD +
                LOCO_REASON_MAX];
    loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION, .type = (uint8_t)type,
                           .epoch = epoch, .length = len};
    loco_frame_header_encode(&h, buf);
    memcpy(buf + LOCO_FRAME_HEADER_BYTES, payload, len);
    size_t total = LOCO_FRAME_HEADER_BYTES + len, off = 0;
    for (int tries = 0; off < total && tries < 100; tries++) {
        ssize_t w = send(hs->fd, buf + off, total - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            off += (size_t)w;
        } else if (w < 0 && (EAGAIN == errno || EINTR == errno)) {
            struct pollfd p = {.fd = hs->fd, .events = POLLOUT};
            poll(&p, 1, 10);
        } else {
            return false;
        }
    }
    return off == total;
}

static void hs_refuse(loco_hs *hs, loco_ack_code code, const char *reason)
{
    uint8_t payload[4 + LOCO_REASON_MAX];
    uint32_t len = (uint32_t)loco_ack_encode(code, reason, payload);
    hs_send(hs, LOCO_FRAME_ACK, hs->hello_h.epoch, payload, len);
}

/* Read one whole frame (header + payload <= max) into hs->buf: 1 complete, 0 more needed,
 * -1 failed (hs failed with the reason). */
static int hs_read_frame(loco_hs *hs, uint32_t max, loco_frame_header *h)
{
    for (;;) {
        size_t need = LOCO_FRAME_HEADER_BYTES;
        if (hs->got >= LOCO_FRAME_HEADER_BYTES) {
            loco_error e = {0};
            loco_status st = loco_frame_header_decode(hs->buf, max, h, &e);
            if (LOCO_OK != st) {
                hs_fail(hs, st, LOCO_ERR_VERSION == st ? LOCO_ACK_BAD_VERSION : LOCO_ACK_BAD_PEER,
                        "%s", e.msg);
                return -1;
            }
            need += h->length;
            if (hs->got == need) {
                hs->got = 0;
                return 1;
            }
        }
        ssize_t n = recv(hs->fd, hs->buf + hs->got, need - hs->got, 0);
        if (n > 0) {
            hs->got += (size_t)n;
            continue;
        }
        if (0 == n && LOCO_HS_ACCEPT_PROOF == hs->state) { /* it could not check our proof */
            hs_fail(hs, LOCO_ERR_AUTH, LOCO_ACK_BAD_AUTH,
                    "hung up after our challenge instead of proving it knows the run key (a "
                    "peer with another key?)");
            return -1;
        }
        if (0 == n) {
            hs_fail(hs, LOCO_ERR_PEER_LOST, LOCO_ACK_BAD_PEER,
                    "connection closed during the handshake (after %zu bytes)", hs->got);
            return -1;
        }
        if (EAGAIN == errno || EWOULDBLOCK == errno || EINTR == errno) {
            return 0;
        }
        hs_fail(hs, LOCO_ERR_PEER_LOST, LOCO_ACK_BAD_PEER, "handshake: %s", strerror(errno));
        return -1;
    }
}

void loco_hs_dial(loco_hs *hs, int fd, const uint8_t key[32], uint32_t epoch,
                  const loco_hello *hello)
{
    memset(hs, 0, sizeof *hs);
    hs->fd = fd;
    memcpy(hs->key, key, 32);
    hs->hello = *hello;
    loco_random_bytes(hs->hello.challenge, sizeof hs->hello.challenge);
    hs->hello_h = (loco_frame_header){.version = LOCO_PROTOCOL_VERSION, .type = LOCO_FRAME_HELLO,
                                      .epoch = epoch, .length = LOCO_HELLO_BYTES};
    loco_frame_header_encode(&hs->hello_h, hs->hello_raw);
    loco_hello_encode(&hs->hello, hs->hello_raw + LOCO_FRAME_HEADER_BYTES);
    hs->state = LOCO_HS_DIAL_CHALLENGE;
    if (!hs_send(hs, LOCO_FRAME_HELLO, epoch, hs->hello_raw + LOCO_FRAME_HEADER_BYTES,
                 LOCO_HELLO_BYTES)) {
        hs_fail(hs, LOCO_ERR_PEER_LOST, 0, "cannot send HELLO: %s", strerror(errno));
    }
}

void loco_hs_accept(loco_hs *hs, int fd, const uint8_t key[32], uint64_t nonce)
{
    memset(hs, 0, sizeof *hs);
    hs->fd = fd;
    memcpy(hs->key, key, 32);
    hs->nonce = nonce;
    hs->state = LOCO_HS_ACCEPT_HELLO;
}

static loco_hs_result hs_dialer_step(loco_hs *hs)
{
    loco_frame_header h;
    int r = hs_read_frame(hs, 4 + LOCO_REASON_MAX, &h);
    if (r <= 0) {
        return r < 0 ? LOCO_HS_ERROR : LOCO_HS_AGAIN;
    }
    const uint8_t *p = hs->buf + LOCO_FRAME_HEADER_BYTES;
    if (LOCO_FRAME_ACK == h.type) {
        uint32_t code = 0;
        char reason[LOCO_REASON_MAX + 1];
        loco_error e = {0};
        if (LOCO_OK != loco_ack_decode(p, h.length, &code, reason, &e)) {
            return hs_fail(hs, LOCO_ERR_PROTOCOL, 0, "bad ACK: %s", e.msg);
        }
        if (LOCO_HS_DIAL_ACK == hs->state && LOCO_ACK_OK == code) {
            hs_session(hs);
            hs->state = LOCO_HS_DONE;
            return LOCO_HS_OK;
        }
        if (LOCO_ACK_OK == code) {
            return hs_fail(hs, LOCO_ERR_PROTOCOL, 0, "accepted without a challenge (a peer that "
                                                     "does not authenticate)");
        }
        loco_status st = LOCO_ACK_BAD_NONCE == code || LOCO_ACK_BAD_AUTH == code ? LOCO_ERR_AUTH
                         : LOCO_ACK_BAD_VERSION == code                          ? LOCO_ERR_VERSION
                                                                                 : LOCO_ERR_PROTOCOL;
        return hs_fail(hs, st, code, "refused: %s", reason);
    }
    if (LOCO_HS_DIAL_CHALLENGE != hs->state || LOCO_FRAME_CHALLENGE != h.type ||
        LOCO_CHALLENGE_PAYLOAD != h.length) {
        return hs_fail(hs, LOCO_ERR_PROTOCOL, 0, "answered the handshake with %s (%u bytes)",
                       loco_frame_type_name(h.type), h.length);
    }
    uint64_t nonce = get_u64le(p);
    if (0 != hs->hello.nonce && nonce != hs->hello.nonce) {
        return hs_fail(hs, LOCO_ERR_AUTH, 0, "the peer is in run 0x%016llx, not 0x%016llx",
                       (unsigned long long)nonce, (unsigned long long)hs->hello.nonce);
    }
    hs->nonce = nonce;
    memcpy(hs->ca, p + 8, sizeof hs->ca);
    memcpy(hs->ma, p + 8 + LOCO_CHALLENGE_BYTES, sizeof hs->ma);
    uint8_t expect[LOCO_MAC_BYTES];
    hs_mac(hs, "loco handshake acceptor", NULL, 0, expect);
    if (0 != sodium_memcmp(expect, hs->ma, sizeof expect)) {
        return hs_fail(hs, LOCO_ERR_AUTH, LOCO_ACK_BAD_AUTH,
                       "the peer could not prove it knows the run key (wrong key?)");
    }
    uint8_t md[LOCO_MAC_BYTES];
    hs_mac(hs, "loco handshake dialer", hs->ma, sizeof hs->ma, md);
    if (!hs_send(hs, LOCO_FRAME_PROOF, hs->hello_h.epoch, md, sizeof md)) {
        return hs_fail(hs, LOCO_ERR_PEER_LOST, 0, "cannot send PROOF: %s", strerror(errno));
    }
    hs->state = LOCO_HS_DIAL_ACK;
    return LOCO_HS_AGAIN;
}

static loco_hs_result hs_acceptor_step(loco_hs *hs, loco_hs_check check, void *ctx)
{
    loco_frame_header h;
    uint32_t max = LOCO_HS_ACCEPT_HELLO == hs->state ? LOCO_HELLO_BYTES : LOCO_PROOF_PAYLOAD;
    int r = hs_read_frame(hs, max, &h);
    if (r < 0) {
        if (LOCO_ACK_BAD_VERSION == hs->code || LOCO_ERR_FORMAT == hs->status ||
            LOCO_ERR_PROTOCOL == hs->status) {
            hs_refuse(hs, (loco_ack_code)hs->code, hs->reason);
        }
        return LOCO_HS_ERROR;
    }
    if (0 == r) {
        return LOCO_HS_AGAIN;
    }
    const uint8_t *p = hs->buf + LOCO_FRAME_HEADER_BYTES;
    if (LOCO_HS_ACCEPT_HELLO == hs->state) {
        loco_error e = {0};
        hs->hello_h = h;
        if (LOCO_FRAME_HELLO != h.type) {
            hs_fail(hs, LOCO_ERR_PROTOCOL, LOCO_ACK_BAD_PEER, "expected HELLO, got %s",
                    loco_frame_type_name(h.type));
        } else if (LOCO_OK != loco_hello_decode(p, h.length, &hs->hello, &e)) {
            hs_fail(hs, LOCO_ERR_PROTOCOL, LOCO_ACK_BAD_PEER, "%s", e.msg);
        } else if (0 != hs->nonce && 0 != hs->hello.nonce && hs->hello.nonce != hs->nonce) {
            hs_fail(hs, LOCO_ERR_AUTH, LOCO_ACK_BAD_NONCE,
                    "run nonce 0x%016llx, this run is 0x%016llx (a process of another run?)",
                    (unsigned long long)hs->hello.nonce, (unsigned long long)hs->nonce);
        } else if (NULL != check) {
            char reason[LOCO_REASON_MAX + 1] = "";
            loco_ack_code code = check(ctx, &h, &hs->hello, reason, sizeof reason);
            if (LOCO_ACK_OK != code) {
                hs_fail(hs, LOCO_ACK_BAD_NONCE == code ? LOCO_ERR_AUTH : LOCO_ERR_PROTOCOL, code,
                        "%s", reason);
            }
        }
        if (LOCO_HS_FAILED == hs->state) {
            hs_refuse(hs, (loco_ack_code)hs->code, hs->reason);
            return LOCO_HS_ERROR;
        }
        if (0 == hs->nonce) {
            hs->nonce = hs->hello.nonce; /* a coordinator that has not met the run yet */
        }
        memcpy(hs->hello_raw, hs->buf, sizeof hs->hello_raw);
        loco_random_bytes(hs->ca, sizeof hs->ca);
        hs_mac(hs, "loco handshake acceptor", NULL, 0, hs->ma);
        uint8_t payload[LOCO_CHALLENGE_PAYLOAD];
        put_u64le(payload, hs->nonce);
        memcpy(payload + 8, hs->ca, sizeof hs->ca);
        memcpy(payload + 8 + LOCO_CHALLENGE_BYTES, hs->ma, sizeof hs->ma);
        if (!hs_send(hs, LOCO_FRAME_CHALLENGE, h.epoch, payload, sizeof payload)) {
            return hs_fail(hs, LOCO_ERR_PEER_LOST, 0, "cannot send CHALLENGE: %s",
                           strerror(errno));
        }
        hs->state = LOCO_HS_ACCEPT_PROOF;
        return LOCO_HS_AGAIN;
    }
    if (LOCO_FRAME_PROOF != h.type || LOCO_PROOF_PAYLOAD != h.length) {
        hs_fail(hs, LOCO_ERR_PROTOCOL, LOCO_ACK_BAD_PEER, "expected PROOF, got %s (%u bytes)",
                loco_frame_type_name(h.type), h.length);
        hs_refuse(hs, LOCO_ACK_BAD_PEER, hs->reason);
        return LOCO_HS_ERROR;
    }
    uint8_t expect[LOCO_MAC_BYTES];
    hs_mac(hs, "loco handshake dialer", hs->ma, sizeof hs->ma, expect);
    if (0 != sodium_memcmp(expect, p, sizeof expect)) {
        hs_fail(hs, LOCO_ERR_AUTH, LOCO_ACK_BAD_AUTH,
                "authentication failed: the peer does not know the run key, or replayed an old "
                "handshake");
        hs_refuse(hs, LOCO_ACK_BAD_AUTH, hs->reason);
        return LOCO_HS_ERROR;
    }
    uint8_t ok[4];
    uint32_t len = (uint32_t)loco_ack_encode(LOCO_ACK_OK, "", ok);
    if (!hs_send(hs, LOCO_FRAME_ACK, h.epoch, ok, len)) {
        return hs_fail(hs, LOCO_ERR_PEER_LOST, 0, "cannot send ACK: %s", strerror(errno));
    }
    hs_session(hs);
    hs->state = LOCO_HS_DONE;
    return LOCO_HS_OK;
}

loco_hs_result loco_hs_step(loco_hs *hs, loco_hs_check check, void *ctx)
{
    switch (hs->state) {
    case LOCO_HS_DIAL_CHALLENGE:
    case LOCO_HS_DIAL_ACK: return hs_dialer_step(hs);
    case LOCO_HS_ACCEPT_HELLO:
    case LOCO_HS_ACCEPT_PROOF: return hs_acceptor_step(hs, check, ctx);
    case LOCO_HS_DONE: return LOCO_HS_OK;
    case LOCO_HS_FAILED: return LOCO_HS_ERROR;
    }
    return LOCO_HS_ERROR;
}

loco_hs_result loco_hs_run(loco_hs *hs, loco_hs_check check, void *ctx, uint64_t deadline_ns)
{
    for (;;) {
        loco_hs_result r = loco_hs_step(hs, check, ctx);
        if (LOCO_HS_AGAIN != r) {
            return r;
        }
        int ms = loco_net_remaining_ms(deadline_ns);
        if (0 == ms) {
            return hs_fail(hs, LOCO_ERR_TIMEOUT, 0, "no answer to the handshake in time");
        }
        struct pollfd p = {.fd = hs->fd, .events = POLLIN};
        poll(&p, 1, ms);
    }
}

loco_status loco_auth_dial(const char *host, int port, const uint8_t key[32], uint32_t epoch,
                           const loco_hello *hello, uint64_t deadline_ns, int *fd, loco_hs *hs,
                           loco_error *err)
{
    *fd = -1;
    for (;;) {
        loco_error e = {0};
        int s = -1;
        loco_status st = loco_net_dial(host, port, deadline_ns, &s, &e);
        if (LOCO_OK != st) {
            return loco_error_set(err, st, "%s", e.msg);
        }
        loco_hs_dial(hs, s, key, epoch, hello);
        if (LOCO_HS_OK == loco_hs_run(hs, NULL, NULL, deadline_ns)) {
            *fd = s;
            return LOCO_OK;
        }
        close(s);
        if (LOCO_ACK_RETRY != hs->code || loco_now_ns() + 20000000ull >= deadline_ns) {
            return loco_error_set(err, hs->status, "%s:%d: %s", host, port, hs->reason);
        }
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 20000000};
        nanosleep(&pause, NULL);
    }
}

/* ---- per-frame MAC -------------------------------------------------------------------------- */

void loco_frame_mac_init(const loco_hs *hs, bool dialer, bool on, loco_frame_mac *tx,
                         loco_frame_mac *rx)
{
    memset(tx, 0, sizeof *tx);
    memset(rx, 0, sizeof *rx);
    tx->on = rx->on = on && NULL != hs;
    if (!tx->on) {
        return;
    }
    uint8_t a2d[32], d2a[32];
    crypto_kdf_derive_from_key(a2d, sizeof a2d, 1, "locoA2D", hs->session);
    crypto_kdf_derive_from_key(d2a, sizeof d2a, 2, "locoD2A", hs->session);
    memcpy(tx->key, dialer ? d2a : a2d, 32);
    memcpy(rx->key, dialer ? a2d : d2a, 32);
    sodium_memzero(a2d, sizeof a2d);
    sodium_memzero(d2a, sizeof d2a);
}

/* One-time Poly1305 key of frame `counter`: ChaCha20 keystream under the direction's key. */
static void frame_tag(loco_frame_mac *m, const uint8_t *hdr, const uint8_t *payload, size_t len,
                      uint8_t tag[LOCO_FRAME_MAC_BYTES])
{
    uint8_t otk[crypto_onetimeauth_poly1305_KEYBYTES];
    uint8_t nonce[crypto_stream_chacha20_NONCEBYTES] = {0};
    put_u64le(nonce, m->counter++);
    crypto_stream_chacha20(otk, sizeof otk, nonce, m->key);
    crypto_onetimeauth_poly1305_state st;
    crypto_onetimeauth_poly1305_init(&st, otk);
    crypto_onetimeauth_poly1305_update(&st, hdr, LOCO_FRAME_HEADER_BYTES);
    if (len > 0) {
        crypto_onetimeauth_poly1305_update(&st, payload, len);
    }
    crypto_onetimeauth_poly1305_final(&st, tag);
    sodium_memzero(otk, sizeof otk);
}

void loco_frame_mac_tag(loco_frame_mac *m, const uint8_t *hdr, const uint8_t *payload,
                        size_t len, uint8_t tag[LOCO_FRAME_MAC_BYTES])
{
    frame_tag(m, hdr, payload, len, tag);
}

bool loco_frame_mac_check(loco_frame_mac *m, const uint8_t *hdr, const uint8_t *payload,
                          size_t len, const uint8_t tag[LOCO_FRAME_MAC_BYTES])
{
    uint8_t expect[LOCO_FRAME_MAC_BYTES];
    frame_tag(m, hdr, payload, len, expect);
    return 0 == sodium_memcmp(expect, tag, sizeof expect);
}
