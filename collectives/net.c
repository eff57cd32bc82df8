/* collectives/net.c — TCP socket helpers: listen, dial with retries, options, and
 * blocking-with-deadline I/O on non-blocking sockets (for the handshake and the bootstrap; the
 * event loop does its own I/O).
 *
 * Every error message names the address and the cause, and says what to try when there is an
 * obvious fix (a port in use, an unreachable address).
 */
#define _GNU_SOURCE /* accept4 */
#include "collectives/comm_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

void loco_net_set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL, 0);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
}

void loco_net_tune(int fd, double timeout_s)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    int idle = timeout_s >= 4 ? (int)(timeout_s / 2) : 1;
    int intvl = 1, cnt = 3;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    unsigned int user_timeout_ms = (unsigned int)(timeout_s * 1000.0);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
}

static void format_addr(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (AF_INET == sa->sa_family) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        snprintf(out, cap, "%s:%d", host, port);
    } else if (AF_INET6 == sa->sa_family) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        snprintf(out, cap, "[%s]:%d", host, port);
    } else {
        snprintf(out, cap, "?");
    }
}

void loco_net_peer_name(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (0 != getpeername(fd, (struct sockaddr *)&ss, &len)) {
        snprintf(out, cap, "?");
        return;
    }
    format_addr((struct sockaddr *)&ss, out, cap);
}

void loco_net_local_host(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    snprintf(out, cap, "127.0.0.1");
    if (0 != getsockname(fd, (struct sockaddr *)&ss, &len)) {
        return;
    }
    if (AF_INET == ss.ss_family) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)cap);
    } else if (AF_INET6 == ss.ss_family) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)cap);
    }
}

void loco_net_default_host(char *out, size_t cap)
{
    snprintf(out, cap, "127.0.0.1");
    struct ifaddrs *list = NULL;
    if (0 != getifaddrs(&list)) {
        return;
    }
    for (struct ifaddrs *ifa = list; NULL != ifa; ifa = ifa->ifa_next) {
        if (NULL == ifa->ifa_addr || AF_INET != ifa->ifa_addr->sa_family) {
            continue;
        }
        struct in_addr a = ((struct sockaddr_in *)ifa->ifa_addr)->sin_addr;
        if (127 == (ntohl(a.s_addr) >> 24)) {
            continue;
        }
        inet_ntop(AF_INET, &a, out, (socklen_t)cap);
        break;
    }
    freeifaddrs(list);
}

uint32_t loco_net_retransmits(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (fd < 0 || 0 != getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len)) {
        return 0;
    }
    return ti.tcpi_total_retrans;
}

loco_status loco_net_split_hostport(const char *text, char *host, size_t host_cap, int *port,
                                    loco_error *err)
{
    const char *colon = NULL;
    const char *h = text;
    size_t hlen = 0;
    if ('[' == text[0]) {
        const char *close = strchr(text, ']');
        if (NULL == close || ':' != close[1]) {
            return loco_error_set(err, LOCO_ERR_CONFIG, "address '%s' is not [IPV6]:PORT", text);
        }
        h = text + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (NULL == colon) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "address '%s' has no port (use HOST:PORT, e.g. 10.0.0.1:29400)",
                                  text);
        }
        hlen = (size_t)(colon - text);
    }
    if (0 == hlen || hlen >= host_cap) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "address '%s': bad host part", text);
    }
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || '\0' != *end || p < 1 || p > 65535) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "address '%s': port must be 1..65535", text);
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return LOCO_OK;
}

loco_status loco_net_listen(const char *host, int port, int *fd_out, int *port_out,
                            loco_error *err)
{
    const char *bind_host = (NULL == host || '\0' == host[0]) ? "0.0.0.0" : host;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(bind_host, service, &hints, &res);
    if (0 != gai) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "cannot listen on %s:%d: %s", bind_host, port,
                              gai_strerror(gai));
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(res);
        return loco_error_errno(err, LOCO_ERR_SYSTEM, errno, "socket()");
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (0 != bind(fd, res->ai_addr, res->ai_addrlen)) {
        int e = errno;
        close(fd);
        freeaddrinfo(res);
        if (EADDRINUSE == e) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "cannot listen on %s:%d: address already in use (another loco "
                                  "run or program holds the port; pick another port or stop it)",
                                  bind_host, port);
        }
        return loco_error_errno(err, LOCO_ERR_SYSTEM, e, "cannot listen on %s:%d", bind_host,
                                port);
    }
    freeaddrinfo(res);
    if (0 != listen(fd, 256)) {
        int e = errno;
        close(fd);
        return loco_error_errno(err, LOCO_ERR_SYSTEM, e, "listen on %s:%d", bind_host, port);
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    *port_out = AF_INET == ss.ss_family ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                        : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    loco_net_set_nonblocking(fd);
    *fd_out = fd;
    return LOCO_OK;
}

loco_status loco_net_connect_start(const char *host, int port, int *fd_out, loco_error *err)
{
    *fd_out = -1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, service, &hints, &res);
    if (0 != gai) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "cannot resolve host '%s': %s", host,
                              gai_strerror(gai));
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        freeaddrinfo(res);
        return loco_error_errno(err, LOCO_ERR_SYSTEM, errno, "socket()");
    }
    int rc = connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (0 != rc && EINPROGRESS != errno) {
        int e = errno;
        close(fd);
        return loco_error_errno(err, LOCO_ERR_PEER_LOST, e, "cannot connect to %s:%d", host, port);
    }
    *fd_out = fd;
    return LOCO_OK;
}

int loco_net_remaining_ms(uint64_t deadline_ns)
{
    uint64_t now = loco_now_ns();
    if (now >= deadline_ns) {
        return 0;
    }
    uint64_t ms = (deadline_ns - now + 999999) / 1000000;
    return ms > 1000000 ? 1000000 : (int)ms;
}

/* Wait for a pending connect; returns 0 or the errno of the failure (ETIMEDOUT at deadline). */
static int connect_finish(int fd, uint64_t deadline_ns)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int rc = poll(&p, 1, loco_net_remaining_ms(deadline_ns));
    if (rc <= 0) {
        return rc < 0 ? errno : ETIMEDOUT;
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
    return soerr;
}

loco_status loco_net_dial(const char *host, int port, uint64_t deadline_ns, int *fd_out,
                          loco_error *err)
{
    int last = ETIMEDOUT;
    int attempts = 0;
    for (;;) {
        int fd = -1;
        loco_error local = {0};
        loco_status st = loco_net_connect_start(host, port, &fd, &local);
        if (LOCO_ERR_CONFIG == st || LOCO_ERR_SYSTEM == st) {
            return loco_error_set(err, st, "%s", local.msg);
        }
        attempts++;
        if (fd >= 0) {
            uint64_t attempt_deadline = loco_now_ns() + 2000000000ull;
            last = connect_finish(fd, attempt_deadline < deadline_ns ? attempt_deadline
                                                                      : deadline_ns);
            if (0 == last) {
                *fd_out = fd;
                return LOCO_OK;
            }
            close(fd);
        } else {
            last = ECONNREFUSED;
        }
        if (loco_now_ns() + 100000000ull >= deadline_ns) {
            break;
        }
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 100000000};
        nanosleep(&pause, NULL);
    }
    return loco_error_set(err, LOCO_ERR_PEER_LOST,
                          "cannot reach %s:%d after %d attempts: %s (is the peer running and "
                          "listening there? check the address and firewall)",
                          host, port, attempts, strerror(last));
}

loco_status loco_net_send_all(int fd, const void *buf, size_t len, uint64_t deadline_ns,
                              const char *what, loco_error *err)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && EINTR == errno) {
            continue;
        }
        if (n < 0 && (EAGAIN == errno || EWOULDBLOCK == errno)) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            int rc = poll(&pf, 1, loco_net_remaining_ms(deadline_ns));
            if (0 == rc) {
                return loco_error_set(err, LOCO_ERR_TIMEOUT, "%s: timed out sending", what);
            }
            continue;
        }
        return loco_error_errno(err, LOCO_ERR_PEER_LOST, errno, "%s: send failed", what);
    }
    return LOCO_OK;
}

loco_status loco_net_recv_all(int fd, void *buf, size_t len, uint64_t deadline_ns,
                              const char *what, loco_error *err)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (0 == n) {
            return loco_error_set(err, LOCO_ERR_PEER_LOST, "%s closed the connection", what);
        }
        if (EINTR == errno) {
            continue;
        }
        if (EAGAIN == errno || EWOULDBLOCK == errno) {
            struct pollfd pf = {.fd = fd, .events = POLLIN};
            int rc = poll(&pf, 1, loco_net_remaining_ms(deadline_ns));
            if (0 == rc) {
                return loco_error_set(err, LOCO_ERR_TIMEOUT, "%s: timed out waiting for a reply",
                                      what);
            }
            continue;
        }
        return loco_error_errno(err, LOCO_ERR_PEER_LOST, errno, "%s: receive failed", what);
    }
    return LOCO_OK;
}

loco_status loco_net_recv_frame(int fd, loco_frame_header *h, uint8_t *payload,
                                uint32_t max_payload, uint64_t deadline_ns, const char *what,
                                loco_error *err)
{
    uint8_t raw[LOCO_FRAME_HEADER_BYTES];
    LOCO_TRY(loco_net_recv_all(fd, raw, sizeof raw, deadline_ns, what, err));
    loco_error local = {0};
    loco_status st = loco_frame_header_decode(raw, max_payload, h, &local);
    if (LOCO_OK != st) {
        return loco_error_set(err, st, "%s: %s", what, local.msg);
    }
    return loco_net_recv_all(fd, payload, h->length, deadline_ns, what, err);
}

loco_status loco_net_send_frame(int fd, const loco_frame_header *h, const void *payload,
                                uint64_t deadline_ns, const char *what, loco_error *err)
{
    uint8_t raw[LOCO_FRAME_HEADER_BYTES];
    loco_frame_header_encode(h, raw);
    LOCO_TRY(loco_net_send_all(fd, raw, sizeof raw, deadline_ns, what, err));
    return loco_net_send_all(fd, payload, h->length, deadline_ns, what, err);
}
