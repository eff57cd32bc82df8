/* collectives/chan.c — a framed, non-blocking control connection (worker <-> coordinator):
 * whole frames in, a copied send buffer out, an optional MAC per frame (integrity).
 *
 * Reading is a small state machine (header, payload, MAC tag) so an event loop can feed it
 * whatever arrived; the header is validated before the payload is read, and the payload buffer
 * grows only up to the channel's limit.
 */
#include "collectives/comm_impl.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void loco_chan_open(loco_chan *ch, int fd, const char *name, uint32_t max_payload,
                    const loco_hs *hs, bool dialer, bool integrity)
{
    memset(ch, 0, sizeof *ch);
    ch->fd = fd;
    ch->max_payload = max_payload;
    loco_copy_str(ch->name, sizeof ch->name, name);
    loco_frame_mac_init(hs, dialer, integrity, &ch->tx_mac, &ch->rx_mac);
    loco_net_set_nonblocking(fd);
    int one = 1; /* small control frames must not wait for Nagle and delayed ACKs */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ch->last_rx_ns = loco_now_ns();
}

void loco_chan_close(loco_chan *ch)
{
    if (ch->fd >= 0) {
        close(ch->fd);
    }
    free(ch->rx_buf);
    free(ch->out);
    memset(ch, 0, sizeof *ch);
    ch->fd = -1;
}

bool loco_chan_is_open(const loco_chan *ch) { return ch->fd >= 0 && ch->max_payload > 0; }

loco_status loco_chan_queue(loco_chan *ch, uint8_t type, uint32_t epoch, uint64_t seq,
                            uint32_t aux, const void *payload, uint32_t len)
{
    if (len > ch->max_payload) {
        return LOCO_ERR_RANGE;
    }
    size_t tag = ch->tx_mac.on ? LOCO_FRAME_MAC_BYTES : 0;
    size_t need = ch->out_len + LOCO_FRAME_HEADER_BYTES + len + tag;
    if (need > ch->out_cap) {
        if (ch->out_off > 0) { /* drop what was written */
            memmove(ch->out, ch->out + ch->out_off, ch->out_len - ch->out_off);
            ch->out_len -= ch->out_off;
            ch->out_off = 0;
            need = ch->out_len + LOCO_FRAME_HEADER_BYTES + len + tag;
        }
        if (need > ch->out_cap) {
            size_t cap = need * 2 > 4096 ? need * 2 : 4096;
            uint8_t *grown = realloc(ch->out, cap);
            if (NULL == grown) {
                return LOCO_ERR_NOMEM;
            }
            ch->out = grown;
            ch->out_cap = cap;
        }
    }
    uint8_t *hdr = ch->out + ch->out_len;
    loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION, .type = type, .epoch = epoch,
                           .length = len, .seq = seq, .sig = aux};
    loco_frame_header_encode(&h, hdr);
    if (len > 0) {
        memcpy(hdr + LOCO_FRAME_HEADER_BYTES, payload, len);
    }
    if (ch->tx_mac.on) {
        loco_frame_mac_tag(&ch->tx_mac, hdr, hdr + LOCO_FRAME_HEADER_BYTES, len,
                           hdr + LOCO_FRAME_HEADER_BYTES + len);
    }
    ch->out_len = need;
    return LOCO_OK;
}

int loco_chan_flush(loco_chan *ch)
{
    while (ch->out_off < ch->out_len) {
        ssize_t w = send(ch->fd, ch->out + ch->out_off, ch->out_len - ch->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            ch->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && EINTR == errno) {
            continue;
        }
        if (w < 0 && (EAGAIN == errno || EWOULDBLOCK == errno)) {
            return 0;
        }
        return w < 0 ? -errno : -EPIPE;
    }
    ch->out_off = ch->out_len = 0;
    return 0;
}

bool loco_chan_want_write(const loco_chan *ch) { return ch->out_off < ch->out_len; }

/* recv into dst; returns bytes, 0 when nothing is available, -1 on EOF or error. */
static ssize_t chan_recv(loco_chan *ch, void *dst, size_t len, loco_error *err)
{
    for (;;) {
        ssize_t n = recv(ch->fd, dst, len, 0);
        if (n > 0) {
            ch->last_rx_ns = loco_now_ns();
            return n;
        }
        if (0 == n) {
            loco_error_set(err, LOCO_ERR_PEER_LOST, "%s: connection closed", ch->name);
            return -1;
        }
        if (EINTR == errno) {
            continue;
        }
        if (EAGAIN == errno || EWOULDBLOCK == errno) {
            return 0;
        }
        loco_error_errno(err, LOCO_ERR_PEER_LOST, errno, "%s", ch->name);
        return -1;
    }
}

int loco_chan_read(loco_chan *ch, loco_error *err)
{
    for (;;) {
        if (!ch->rx_in_payload) {
            ssize_t n = chan_recv(ch, ch->rx_hdr + ch->rx_hdr_got,
                                  LOCO_FRAME_HEADER_BYTES - ch->rx_hdr_got, err);
            if (n <= 0) {
                return n < 0 ? -1 : 0;
            }
            ch->rx_hdr_got += (uint32_t)n;
            if (ch->rx_hdr_got < LOCO_FRAME_HEADER_BYTES) {
                continue;
            }
            loco_error e = {0};
            if (LOCO_OK != loco_frame_header_decode(ch->rx_hdr, ch->max_payload, &ch->rx, &e)) {
                loco_error_set(err, LOCO_ERR_PROTOCOL, "%s: %s", ch->name, e.msg);
                return -1;
            }
            if (ch->rx.length > ch->rx_cap) {
                uint8_t *grown = realloc(ch->rx_buf, ch->rx.length);
                if (NULL == grown) {
                    loco_error_set(err, LOCO_ERR_NOMEM, "%s: no memory for a %u-byte frame",
                                   ch->name, ch->rx.length);
                    return -1;
                }
                ch->rx_buf = grown;
                ch->rx_cap = ch->rx.length;
            }
            ch->rx_in_payload = true;
            ch->rx_got = ch->rx_tag_got = 0;
        }
        if (ch->rx_got < ch->rx.length) {
            ssize_t n = chan_recv(ch, ch->rx_buf + ch->rx_got, ch->rx.length - ch->rx_got, err);
            if (n <= 0) {
                return n < 0 ? -1 : 0;
            }
            ch->rx_got += (uint32_t)n;
            continue;
        }
        if (ch->rx_mac.on && ch->rx_tag_got < LOCO_FRAME_MAC_BYTES) {
            ssize_t n = chan_recv(ch, ch->rx_tag + ch->rx_tag_got,
                                  LOCO_FRAME_MAC_BYTES - ch->rx_tag_got, err);
            if (n <= 0) {
                return n < 0 ? -1 : 0;
            }
            ch->rx_tag_got += (uint32_t)n;
            continue;
        }
        ch->rx_in_payload = false;
        ch->rx_hdr_got = 0;
        if (ch->rx_mac.on &&
            !loco_frame_mac_check(&ch->rx_mac, ch->rx_hdr, ch->rx_buf, ch->rx.length, ch->rx_tag)) {
            loco_error_set(err, LOCO_ERR_AUTH, "%s: a %s frame failed its integrity check "
                                               "(forged, corrupted, replayed or reordered)",
                           ch->name, loco_frame_type_name(ch->rx.type));
            return -1;
        }
        return 1;
    }
}
