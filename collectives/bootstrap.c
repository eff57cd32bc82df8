/* collectives/bootstrap.c — who the members are: MPI, JOIN (dial rank 0), LOCAL (threads), or
 * ADMIT (a joiner: only its listeners; the coordinator admits it later, membership.c).
 *
 * Each path binds this rank's listeners first (its worker port and, with a control plane, its
 * coordinator port: any member may have to host the coordinator), then exchanges one member
 * record per rank — {host, ports, capabilities, run nonce, protocol version} — and returns the
 * member table of epoch 0 (member id = rank). It also settles the run key: a configured one
 * (auth.c), else MPI shares a random key of rank 0's in its one MPI_Allgather and a LOCAL group
 * makes one; JOIN connections to rank 0 are authenticated with it like every other connection.
 * Nothing else happens here: wire.c connects the mesh.
 *
 * MPI is used only here and only as the design allows (DESIGN.md §1): MPI_Init (unless the
 * caller already initialised MPI, as the allreduce benchmark does for its baseline), one
 * MPI_Allgather, MPI_Finalize at once (unless the caller owns MPI). Each call runs under
 * alarm(mpi_timeout_s): Open MPI blocks forever when a peer died before MPI_Init, and a thread
 * stuck inside MPI cannot be recovered, so the alarm handler prints one line and _exits(1).
 */
#define _GNU_SOURCE /* accept4 */
#include "collectives/comm_impl.h"

#include <errno.h>
#include <mpi.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t random_nonce(void)
{
    uint64_t v = 0;
    while (0 == v) {
        if (sizeof v != getrandom(&v, sizeof v, 0)) {
            v = loco_now_ns() ^ ((uint64_t)getpid() << 32);
        }
    }
    return v;
}

/* The run nonce this rank brings: the config's, else LOCO_RUN_NONCE, else 0 (= accept rank 0's). */
static loco_status configured_nonce(const loco_comm_config *cfg, uint64_t *nonce, loco_error *err)
{
    *nonce = cfg->run_nonce;
    const char *env = getenv("LOCO_RUN_NONCE");
    if (0 == *nonce && NULL != env && '\0' != env[0]) {
        char *end = NULL;
        errno = 0;
        *nonce = strtoull(env, &end, 0);
        if (0 != errno || '\0' != *end || 0 == *nonce) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "LOCO_RUN_NONCE='%s' is not a non-zero integer", env);
        }
    }
    return LOCO_OK;
}

static int host_caps(void) { return LOCO_HAVE_CUDA ? LOCO_CAP_CUDA : 0; }

void loco_boot_free(loco_boot *boot)
{
    free(boot->members);
    boot->members = NULL;
    if (boot->listen_fd >= 0) {
        close(boot->listen_fd);
    }
    if (boot->coord_fd >= 0) {
        close(boot->coord_fd);
    }
    boot->listen_fd = boot->coord_fd = -1;
}

/* The coordinator listener every member binds when the run has a control plane (port 0 = any;
 * a fixed port is a per-host range like the worker port). */
static loco_status bind_coord_listener(const loco_comm_config *cfg, const char *host,
                                       int local_index, loco_boot *boot, loco_error *err)
{
    if (LOCO_COORD_NONE == cfg->ft.coordinator) {
        return LOCO_OK;
    }
    int want = cfg->ft.coordinator_port > 0 ? cfg->ft.coordinator_port + local_index : 0;
    int port = 0;
    LOCO_TRY(loco_net_listen(host, want, &boot->coord_fd, &port, err));
    boot->cport = (uint16_t)port;
    return LOCO_OK;
}

/* =============================================================================================
 * MPI */

/* The alarm handler may only use async-signal-safe calls, so its line is composed beforehand.
 * This is the one piece of process-wide state in collectives/: only the bootstrap touches it. */
static char g_mpi_alarm_line[256];

static void mpi_alarm_handler(int sig)
{
    (void)sig;
    ssize_t ignored = write(STDERR_FILENO, g_mpi_alarm_line, strlen(g_mpi_alarm_line));
    (void)ignored;
    _exit(1);
}

static void mpi_guard(const char *call, double timeout_s)
{
    snprintf(g_mpi_alarm_line, sizeof g_mpi_alarm_line,
             "loco: %s did not return within %.0f s (a peer probably died before or during the "
             "MPI bootstrap); exiting\n",
             call, timeout_s);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = mpi_alarm_handler;
    sigaction(SIGALRM, &sa, NULL);
    unsigned int secs = timeout_s < 1 ? 1 : (unsigned int)timeout_s;
    alarm(secs);
}

static void mpi_unguard(void) { alarm(0); }

/* MPI record: u32 magic, u32 protocol version, a JOIN payload (nonce, rank, world, caps, ports,
 * host), then rank 0's key field (u8 kind, 32 bytes). */
#define MPI_RECORD_BYTES (8 + LOCO_JOIN_BYTES + 1 + 32)

static loco_status bootstrap_mpi(const loco_comm_config *cfg, loco_boot *boot, loco_error *err)
{
    /* mpirun exports these before MPI_Init: all ranks on this host -> loopback only. */
    const char *local_size = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    const char *size = getenv("OMPI_COMM_WORLD_SIZE");
    bool all_local = NULL != local_size && NULL != size && 0 == strcmp(local_size, size);
    const char *listen_host = cfg->listen_host[0] ? cfg->listen_host
                                                   : (all_local ? "127.0.0.1" : "0.0.0.0");
    /* A fixed port becomes a range: base + this rank's index on its host. */
    const char *local_rank = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    int want = cfg->listen_port > 0 && NULL != local_rank ? cfg->listen_port + atoi(local_rank)
                                                           : cfg->listen_port;
    int port = 0;
    LOCO_TRY(loco_net_listen(listen_host, want, &boot->listen_fd, &port, err));
    LOCO_TRY(bind_coord_listener(cfg, listen_host, NULL != local_rank ? atoi(local_rank) : 0, boot,
                                 err));
    bool have_key = false;
    LOCO_TRY(loco_key_resolve(cfg, false, boot->key, &have_key, err));

    int initialized = 0;
    MPI_Initialized(&initialized);
    bool own_mpi = !initialized;
    if (own_mpi) {
        mpi_guard("MPI_Init", cfg->mpi_timeout_s);
        int rc = MPI_Init(NULL, NULL);
        mpi_unguard();
        if (MPI_SUCCESS != rc) {
            return loco_error_set(err, LOCO_ERR_MPI, "MPI_Init failed (code %d)", rc);
        }
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &boot->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &boot->world);
    if (boot->world > LOCO_MAX_WORLD) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "world of %d ranks exceeds %d", boot->world,
                              LOCO_MAX_WORLD);
    }

    uint64_t nonce = 0;
    LOCO_TRY(configured_nonce(cfg, &nonce, err));
    if (0 == nonce && 0 == boot->rank) {
        nonce = random_nonce();
    }
    loco_join mine = {.nonce = nonce, .rank = (uint32_t)boot->rank,
                      .world = (uint32_t)boot->world, .caps = (uint32_t)host_caps(),
                      .port = (uint16_t)port, .cport = boot->cport};
    if (cfg->advertise_host[0]) {
        loco_copy_str(mine.host, sizeof mine.host, cfg->advertise_host);
    } else if (all_local) {
        snprintf(mine.host, sizeof mine.host, "127.0.0.1");
    } else {
        loco_net_default_host(mine.host, sizeof mine.host);
    }
    uint8_t record[MPI_RECORD_BYTES] = {0};
    uint32_t head[2] = {LOCO_FRAME_MAGIC, LOCO_PROTOCOL_VERSION};
    for (int i = 0; i < 8; i++) {
        record[i] = (uint8_t)(head[i / 4] >> (8 * (i % 4)));
    }
    loco_join_encode(&mine, record + 8);
    /* Without a configured key rank 0 makes one and shares it here (byte 0: 1 = shared key
     * follows, 2 = rank 0 has a configured key of its own). */
    uint8_t *key_field = record + 8 + LOCO_JOIN_BYTES;
    if (0 == boot->rank) {
        if (!have_key) {
            loco_random_bytes(boot->key, sizeof boot->key);
            key_field[0] = 1;
            memcpy(key_field + 1, boot->key, sizeof boot->key);
        } else {
            key_field[0] = 2;
        }
    }

    uint8_t *all = malloc((size_t)boot->world * MPI_RECORD_BYTES);
    boot->members = calloc((size_t)boot->world, sizeof *boot->members);
    if (NULL == all || NULL == boot->members) {
        free(all);
        return LOCO_ERR_NOMEM;
    }
    mpi_guard("MPI_Allgather", cfg->mpi_timeout_s);
    int rc = MPI_Allgather(record, MPI_RECORD_BYTES, MPI_BYTE, all, MPI_RECORD_BYTES, MPI_BYTE,
                           MPI_COMM_WORLD);
    mpi_unguard();
    if (own_mpi) {
        mpi_guard("MPI_Finalize", cfg->mpi_timeout_s);
        MPI_Finalize();
        mpi_unguard();
    }
    if (MPI_SUCCESS != rc) {
        free(all);
        return loco_error_set(err, LOCO_ERR_MPI, "MPI_Allgather failed (code %d)", rc);
    }

    loco_status st = LOCO_OK;
    for (int r = 0; r < boot->world && LOCO_OK == st; r++) {
        const uint8_t *rec = all + (size_t)r * MPI_RECORD_BYTES;
        uint32_t magic = (uint32_t)rec[0] | (uint32_t)rec[1] << 8 | (uint32_t)rec[2] << 16 |
                         (uint32_t)rec[3] << 24;
        uint32_t version = (uint32_t)rec[4] | (uint32_t)rec[5] << 8 | (uint32_t)rec[6] << 16 |
                           (uint32_t)rec[7] << 24;
        if (LOCO_FRAME_MAGIC != magic || LOCO_PROTOCOL_VERSION != version) {
            st = loco_error_set(err, LOCO_ERR_VERSION,
                                "rank %d runs loco protocol version %u (magic 0x%08x), this rank "
                                "speaks %u: run the same loco build on every rank",
                                r, version, magic, LOCO_PROTOCOL_VERSION);
            break;
        }
        loco_join j;
        loco_error local = {0};
        st = loco_join_decode(rec + 8, LOCO_JOIN_BYTES, &j, &local);
        if (LOCO_OK != st || j.rank != (uint32_t)r || j.world != (uint32_t)boot->world) {
            st = loco_error_set(err, LOCO_ERR_PROTOCOL, "rank %d sent a bad bootstrap record%s%s",
                                r, local.msg[0] ? ": " : "", local.msg);
            break;
        }
        snprintf(boot->members[r].host, LOCO_HOST_MAX, "%s", j.host);
        boot->members[r].port = j.port;
        boot->members[r].cport = j.cport;
        boot->members[r].caps = j.caps;
        boot->members[r].id = (uint32_t)r;
        if (0 == r) {
            boot->nonce = j.nonce;
            const uint8_t *kf = rec + 8 + LOCO_JOIN_BYTES;
            if (1 == kf[0] && !have_key) {
                memcpy(boot->key, kf + 1, sizeof boot->key);
                have_key = true;
            } else if (2 == kf[0] && !have_key) {
                st = loco_error_set(err, LOCO_ERR_AUTH,
                                    "rank 0 has a run key but rank %d has none: give every rank "
                                    "the same LOCO_RUN_KEY / LOCO_RUN_KEY_FILE / key_file",
                                    boot->rank);
            }
        } else if (0 != j.nonce && j.nonce != boot->nonce) {
            st = loco_error_set(err, LOCO_ERR_AUTH,
                                "rank %d (%s:%u) has run nonce 0x%016llx but rank 0 has 0x%016llx: "
                                "set the same LOCO_RUN_NONCE on every rank",
                                r, j.host, j.port, (unsigned long long)j.nonce,
                                (unsigned long long)boot->nonce);
        }
    }
    free(all);
    return st;
}

/* =============================================================================================
 * JOIN: rank 0 listens on the join address; the others dial it and get the table back. */

static loco_status join_rank_world(const loco_comm_config *cfg, loco_boot *boot, loco_error *err)
{
    boot->rank = cfg->rank;
    boot->world = cfg->world;
    const char *env_rank = getenv("LOCO_RANK"), *env_world = getenv("LOCO_WORLD");
    if (boot->rank < 0 && NULL != env_rank) {
        boot->rank = atoi(env_rank);
    }
    if (boot->world < 0 && NULL != env_world) {
        boot->world = atoi(env_world);
    }
    if (boot->world < 1 || boot->world > LOCO_MAX_WORLD || boot->rank < 0 ||
        boot->rank >= boot->world) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "join needs 0 <= rank < world <= %d (got rank %d, world %d): give "
                              "--rank/--world or LOCO_RANK/LOCO_WORLD",
                              LOCO_MAX_WORLD, boot->rank, boot->world);
    }
    return LOCO_OK;
}

static void send_refusal(int fd, loco_ack_code code, const char *reason, uint64_t deadline_ns)
{
    uint8_t payload[4 + LOCO_REASON_MAX];
    loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION, .type = LOCO_FRAME_ACK};
    h.length = (uint32_t)loco_ack_encode(code, reason, payload);
    loco_net_send_frame(fd, &h, payload, deadline_ns, "refused peer", NULL);
}

/* Rank 0 accepts only bootstrap connections of its world size. */
static loco_ack_code join_check_hello(void *ctx, const loco_frame_header *h,
                                      const loco_hello *hello, char *reason, size_t cap)
{
    const loco_boot *boot = ctx;
    if (LOCO_CONN_BOOT != hello->kind) {
        snprintf(reason, cap, "rank 0 is forming the group: only bootstrap connections (kind "
                              "%u): retry", hello->kind);
        return LOCO_ACK_RETRY;
    }
    if (hello->world != (uint32_t)boot->world) {
        snprintf(reason, cap, "world size %u, rank 0 runs a world of %d", hello->world,
                 boot->world);
        return LOCO_ACK_BAD_WORLD;
    }
    return LOCO_ACK_OK;
}

/* Rank 0: authenticate a fresh connection and read its JOIN; refuse and return false if it is
 * not welcome. */
static bool join_accept_one(loco_boot *boot, int fd, int *fds, uint64_t deadline_ns)
{
    char who[96];
    loco_net_peer_name(fd, who, sizeof who);
    uint8_t payload[LOCO_JOIN_BYTES];
    loco_frame_header h;
    loco_error e = {0};
    uint64_t d = loco_now_ns() + 5000000000ull;
    d = d < deadline_ns ? d : deadline_ns;
    loco_hs hs;
    loco_hs_accept(&hs, fd, boot->key, boot->nonce);
    if (LOCO_HS_OK != loco_hs_run(&hs, join_check_hello, boot, d)) {
        if (LOCO_ACK_RETRY != hs.code) {
            LOCO_WARN("refused a connection during join from %s: %s", who, hs.reason);
        }
        return false;
    }
    if (LOCO_OK != loco_net_recv_frame(fd, &h, payload, LOCO_JOIN_BYTES, d, who, &e)) {
        LOCO_WARN("refused a connection during join: %s", e.msg);
        if (LOCO_ERR_VERSION == e.status) {
            send_refusal(fd, LOCO_ACK_BAD_VERSION, e.msg, d);
        }
        return false;
    }
    loco_join j;
    char reason[LOCO_REASON_MAX + 1] = "";
    loco_ack_code code = LOCO_ACK_OK;
    if (LOCO_FRAME_JOIN != h.type) {
        snprintf(reason, sizeof reason, "expected a JOIN frame, got %s",
                 loco_frame_type_name(h.type));
        code = LOCO_ACK_BAD_PEER;
    } else if (LOCO_OK != loco_join_decode(payload, h.length, &j, &e)) {
        loco_copy_str(reason, sizeof reason, e.msg);
        code = LOCO_ACK_BAD_PEER;
    } else if (j.world != (uint32_t)boot->world) {
        snprintf(reason, sizeof reason, "world size %u, rank 0 runs a world of %d", j.world,
                 boot->world);
        code = LOCO_ACK_BAD_WORLD;
    } else if (0 == j.rank || fds[j.rank] >= 0) {
        snprintf(reason, sizeof reason, "rank %u is %s", j.rank,
                 0 == j.rank ? "rank 0's own rank" : "already taken");
        code = LOCO_ACK_BAD_PEER;
    } else if (0 != j.nonce && j.nonce != boot->nonce) {
        snprintf(reason, sizeof reason, "run nonce 0x%016llx, this run is 0x%016llx",
                 (unsigned long long)j.nonce, (unsigned long long)boot->nonce);
        code = LOCO_ACK_BAD_NONCE;
    }
    if (LOCO_ACK_OK != code) {
        LOCO_WARN("refused join from %s: %s", who, reason);
        send_refusal(fd, code, reason, d);
        return false;
    }
    loco_member *m = &boot->members[j.rank];
    if (j.host[0]) {
        snprintf(m->host, LOCO_HOST_MAX, "%s", j.host);
    } else {
        loco_net_local_host(fd, m->host, LOCO_HOST_MAX); /* same host as rank 0 sees */
    }
    m->port = j.port;
    m->cport = j.cport;
    m->caps = j.caps;
    m->id = j.rank;
    fds[j.rank] = fd;
    return true;
}

static loco_status join_as_rank0(const loco_comm_config *cfg, loco_boot *boot, const char *host,
                                 int port, loco_error *err)
{
    int bound = 0;
    LOCO_TRY(loco_net_listen(cfg->listen_host, port, &boot->listen_fd, &bound, err));
    LOCO_TRY(bind_coord_listener(cfg, cfg->listen_host, 0, boot, err));
    uint64_t nonce = 0;
    LOCO_TRY(configured_nonce(cfg, &nonce, err));
    boot->nonce = 0 != nonce ? nonce : random_nonce();
    snprintf(boot->members[0].host, LOCO_HOST_MAX, "%s",
             cfg->advertise_host[0] ? cfg->advertise_host : host);
    boot->members[0].port = (uint16_t)bound;
    boot->members[0].cport = boot->cport;
    boot->members[0].caps = (uint32_t)host_caps();
    if (1 == boot->world) {
        return LOCO_OK;
    }
    int *fds = malloc((size_t)boot->world * sizeof *fds);
    if (NULL == fds) {
        return LOCO_ERR_NOMEM;
    }
    for (int r = 0; r < boot->world; r++) {
        fds[r] = -1;
    }
    uint64_t deadline = loco_now_ns() + (uint64_t)(cfg->connect_timeout_s * 1e9);
    int joined = 1;
    loco_status st = LOCO_OK;
    while (joined < boot->world) {
        int fd = accept4(boot->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (loco_now_ns() >= deadline) {
                char missing[256] = "";
                size_t n = 0;
                for (int r = 1; r < boot->world && n + 8 < sizeof missing; r++) {
                    if (fds[r] < 0) {
                        n += (size_t)snprintf(missing + n, sizeof missing - n, "%s%d",
                                              n ? "," : "", r);
                    }
                }
                st = loco_error_set(err, LOCO_ERR_TIMEOUT,
                                    "rank 0 waited %.0f s on port %d but ranks %s never joined "
                                    "(did they start with --join pointing here?)",
                                    cfg->connect_timeout_s, bound, missing);
                break;
            }
            struct pollfd pf = {.fd = boot->listen_fd, .events = POLLIN};
            poll(&pf, 1, 100);
            continue;
        }
        if (join_accept_one(boot, fd, fds, deadline)) {
            joined++;
        } else {
            close(fd);
        }
    }
    if (LOCO_OK == st) {
        size_t cap = LOCO_TABLE_HEAD_BYTES + (size_t)boot->world * LOCO_MEMBER_BYTES;
        uint8_t *table = malloc(cap);
        if (NULL == table) {
            st = LOCO_ERR_NOMEM;
        } else {
            loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION, .type = LOCO_FRAME_TABLE};
            h.length = (uint32_t)loco_table_encode(boot->nonce, 0, boot->world, boot->members,
                                                   table);
            for (int r = 1; r < boot->world && LOCO_OK == st; r++) {
                char who[96];
                snprintf(who, sizeof who, "rank %d (%s:%u)", r, boot->members[r].host,
                         boot->members[r].port);
                st = loco_net_send_frame(fds[r], &h, table, deadline, who, err);
            }
            free(table);
        }
    }
    for (int r = 1; r < boot->world; r++) {
        if (fds[r] >= 0) {
            close(fds[r]);
        }
    }
    free(fds);
    return st;
}

static loco_status join_as_member(const loco_comm_config *cfg, loco_boot *boot, const char *host,
                                  int port, loco_error *err)
{
    int bound = 0;
    LOCO_TRY(loco_net_listen(cfg->listen_host, cfg->listen_port, &boot->listen_fd, &bound, err));
    LOCO_TRY(bind_coord_listener(cfg, cfg->listen_host, 0, boot, err));
    uint64_t deadline = loco_now_ns() + (uint64_t)(cfg->connect_timeout_s * 1e9);
    int fd = -1;
    loco_error local = {0};
    loco_join j = {.rank = (uint32_t)boot->rank, .world = (uint32_t)boot->world,
                   .caps = (uint32_t)host_caps(), .port = (uint16_t)bound, .cport = boot->cport};
    loco_status st = configured_nonce(cfg, &j.nonce, err);
    if (LOCO_OK != st) {
        return st;
    }
    loco_hello hello = {.nonce = j.nonce, .from = j.rank, .to = 0, .world = j.world,
                        .kind = LOCO_CONN_BOOT, .streams = 1};
    loco_hs hs;
    st = loco_auth_dial(host, port, boot->key, 0, &hello, deadline, &fd, &hs, &local);
    if (LOCO_OK != st) {
        return loco_error_set(err, st, "join: rank 0 at %s:%d: %s", host, port, local.msg);
    }
    if (cfg->advertise_host[0]) {
        loco_copy_str(j.host, sizeof j.host, cfg->advertise_host);
    } else {
        loco_net_local_host(fd, j.host, sizeof j.host); /* the interface that reaches rank 0 */
    }
    char who[300];
    snprintf(who, sizeof who, "rank 0 at %s:%d", host, port);
    uint8_t payload[LOCO_JOIN_BYTES];
    loco_join_encode(&j, payload);
    loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION, .type = LOCO_FRAME_JOIN,
                           .length = LOCO_JOIN_BYTES};
    if (LOCO_OK == st) {
        st = loco_net_send_frame(fd, &h, payload, deadline, who, err);
    }
    size_t cap = LOCO_TABLE_HEAD_BYTES + (size_t)boot->world * LOCO_MEMBER_BYTES;
    uint8_t *reply = LOCO_OK == st ? malloc(cap) : NULL;
    if (LOCO_OK == st && NULL == reply) {
        st = LOCO_ERR_NOMEM;
    }
    loco_frame_header rh;
    if (LOCO_OK == st) {
        loco_error e = {0};
        st = loco_net_recv_frame(fd, &rh, reply, (uint32_t)cap, deadline, who, &e);
        if (LOCO_OK != st) {
            st = loco_error_set(err, st, "join: %s", e.msg);
        }
    }
    if (LOCO_OK == st && LOCO_FRAME_ACK == rh.type) {
        uint32_t code = 0;
        char reason[LOCO_REASON_MAX + 1];
        loco_error e = {0};
        st = loco_ack_decode(reply, rh.length, &code, reason, &e);
        st = loco_error_set(err, LOCO_ACK_BAD_NONCE == code ? LOCO_ERR_AUTH
                                 : LOCO_ACK_BAD_VERSION == code ? LOCO_ERR_VERSION
                                                                : LOCO_ERR_PROTOCOL,
                            "join: %s refused rank %d: %s", who, boot->rank,
                            LOCO_OK == st ? reason : e.msg);
    } else if (LOCO_OK == st && LOCO_FRAME_TABLE != rh.type) {
        st = loco_error_set(err, LOCO_ERR_PROTOCOL, "join: %s answered with a %s frame", who,
                            loco_frame_type_name(rh.type));
    } else if (LOCO_OK == st) {
        loco_error e = {0};
        st = loco_table_decode(reply, rh.length, boot->world, &boot->nonce, &boot->epoch,
                               boot->members, &e);
        if (LOCO_OK != st) {
            st = loco_error_set(err, st, "join: %s sent a bad member table: %s", who, e.msg);
        } else {
            /* Rank 0 is reached at the address we dialled. */
            snprintf(boot->members[0].host, LOCO_HOST_MAX, "%s", host);
            boot->nonce = hs.nonce;
        }
    }
    free(reply);
    close(fd);
    return st;
}

static loco_status bootstrap_join(const loco_comm_config *cfg, loco_boot *boot, loco_error *err)
{
    LOCO_TRY(join_rank_world(cfg, boot, err));
    char host[256];
    int port = 0;
    LOCO_TRY(loco_net_split_hostport(cfg->join, host, sizeof host, &port, err));
    if (strlen(host) >= LOCO_HOST_MAX) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "join host '%s' is longer than %d characters",
                              host, LOCO_HOST_MAX - 1);
    }
    bool have_key = false;
    LOCO_TRY(loco_key_resolve(cfg, true, boot->key, &have_key, err));
    boot->members = calloc((size_t)boot->world, sizeof *boot->members);
    if (NULL == boot->members) {
        return LOCO_ERR_NOMEM;
    }
    if (0 == boot->rank) {
        return join_as_rank0(cfg, boot, host, port, err);
    }
    return join_as_member(cfg, boot, host, port, err);
}

/* =============================================================================================
 * LOCAL: threads of one process meet in a group. */

struct loco_local_group {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int world, arrived;
    uint64_t nonce;
    uint8_t key[32];      /* the group's run key unless the config gives one */
    loco_member *members; /* (world) */
    bool *present;        /* (world) */
};

loco_status loco_local_group_init(loco_local_group **group, int world, loco_error *err)
{
    *group = NULL;
    if (world < 1 || world > LOCO_MAX_WORLD) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG, "local group of %d ranks (1..%d)", world,
                              LOCO_MAX_WORLD);
    }
    loco_local_group *g = calloc(1, sizeof *g);
    if (NULL == g) {
        return LOCO_ERR_NOMEM;
    }
    g->members = calloc((size_t)world, sizeof *g->members);
    g->present = calloc((size_t)world, sizeof *g->present);
    if (NULL == g->members || NULL == g->present) {
        loco_local_group_free(g);
        return LOCO_ERR_NOMEM;
    }
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->world = world;
    g->nonce = random_nonce();
    loco_random_bytes(g->key, sizeof g->key);
    *group = g;
    return LOCO_OK;
}

void loco_local_group_free(loco_local_group *group)
{
    if (NULL == group) {
        return;
    }
    pthread_mutex_destroy(&group->lock);
    pthread_cond_destroy(&group->cond);
    free(group->members);
    free(group->present);
    free(group);
}

static loco_status bootstrap_local(const loco_comm_config *cfg, loco_boot *boot, loco_error *err)
{
    loco_local_group *g = cfg->local;
    if (NULL == g) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "local bootstrap needs config.local (a group)");
    }
    if (cfg->rank < 0 || cfg->rank >= g->world) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "local rank %d outside the group of %d",
                              cfg->rank, g->world);
    }
    int port = 0;
    const char *host = cfg->listen_host[0] ? cfg->listen_host : "127.0.0.1";
    LOCO_TRY(loco_net_listen(host, cfg->listen_port, &boot->listen_fd, &port, err));
    LOCO_TRY(bind_coord_listener(cfg, host, cfg->rank, boot, err));
    bool have_key = false;
    LOCO_TRY(loco_key_resolve(cfg, false, boot->key, &have_key, err));
    if (!have_key) {
        memcpy(boot->key, g->key, sizeof boot->key);
    }
    boot->rank = cfg->rank;
    boot->world = g->world;
    boot->members = calloc((size_t)g->world, sizeof *boot->members);
    if (NULL == boot->members) {
        return LOCO_ERR_NOMEM;
    }
    uint64_t deadline = loco_now_ns() + (uint64_t)(cfg->connect_timeout_s * 1e9);
    struct timespec ts = {.tv_sec = 0};
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)cfg->connect_timeout_s + 1;
    loco_status st = LOCO_OK;
    pthread_mutex_lock(&g->lock);
    if (g->present[cfg->rank]) {
        st = loco_error_set(err, LOCO_ERR_CONFIG, "local rank %d joined the group twice",
                            cfg->rank);
    } else {
        loco_member *m = &g->members[cfg->rank];
        snprintf(m->host, LOCO_HOST_MAX, "%s",
                 cfg->advertise_host[0] ? cfg->advertise_host : "127.0.0.1");
        m->port = (uint16_t)port;
        m->cport = boot->cport;
        m->caps = (uint32_t)host_caps();
        m->id = (uint32_t)cfg->rank;
        g->present[cfg->rank] = true;
        g->arrived++;
        pthread_cond_broadcast(&g->cond);
        while (g->arrived < g->world && loco_now_ns() < deadline) {
            pthread_cond_timedwait(&g->cond, &g->lock, &ts);
        }
        if (g->arrived < g->world) {
            st = loco_error_set(err, LOCO_ERR_TIMEOUT,
                                "local group: only %d of %d ranks arrived within %.0f s",
                                g->arrived, g->world, cfg->connect_timeout_s);
        } else {
            memcpy(boot->members, g->members, (size_t)g->world * sizeof *boot->members);
            boot->nonce = 0 != cfg->run_nonce ? cfg->run_nonce : g->nonce;
        }
    }
    pthread_mutex_unlock(&g->lock);
    return st;
}

/* =============================================================================================
 * ADMIT: a process joining a running group binds its listeners and needs the run key; the
 * coordinator gives it everything else when it is admitted (membership.c). */

static loco_status bootstrap_admit(const loco_comm_config *cfg, loco_boot *boot, loco_error *err)
{
    if (LOCO_COORD_NONE == cfg->ft.coordinator) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "joining a running group needs its control plane "
                              "(ft.coordinator is none)");
    }
    char host[256];
    int port = 0;
    LOCO_TRY(loco_net_split_hostport(cfg->join, host, sizeof host, &port, err));
    bool have_key = false;
    LOCO_TRY(loco_key_resolve(cfg, true, boot->key, &have_key, err));
    int bound = 0;
    LOCO_TRY(loco_net_listen(cfg->listen_host, cfg->listen_port, &boot->listen_fd, &bound, err));
    LOCO_TRY(bind_coord_listener(cfg, cfg->listen_host, 0, boot, err));
    boot->rank = -1;
    boot->world = 0;
    boot->members = calloc(1, sizeof *boot->members); /* this process's own record */
    if (NULL == boot->members) {
        return LOCO_ERR_NOMEM;
    }
    boot->members[0].port = (uint16_t)bound;
    boot->members[0].cport = boot->cport;
    boot->members[0].caps = (uint32_t)host_caps();
    boot->members[0].id = cfg->rank >= 0 ? (uint32_t)cfg->rank : LOCO_ID_ANY;
    loco_copy_str(boot->members[0].host, LOCO_HOST_MAX, cfg->advertise_host);
    return configured_nonce(cfg, &boot->nonce, err);
}

loco_status loco_bootstrap(const loco_comm_config *cfg, loco_boot *boot, loco_error *err)
{
    memset(boot, 0, sizeof *boot);
    boot->listen_fd = boot->coord_fd = -1;
    loco_status st = LOCO_ERR_CONFIG;
    switch (cfg->bootstrap) {
    case LOCO_BOOTSTRAP_MPI: st = bootstrap_mpi(cfg, boot, err); break;
    case LOCO_BOOTSTRAP_JOIN: st = bootstrap_join(cfg, boot, err); break;
    case LOCO_BOOTSTRAP_LOCAL: st = bootstrap_local(cfg, boot, err); break;
    case LOCO_BOOTSTRAP_ADMIT: st = bootstrap_admit(cfg, boot, err); break;
    default:
        st = loco_error_set(err, LOCO_ERR_CONFIG,
                            "unknown bootstrap kind %d (mpi, join, local, admit)",
                            (int)cfg->bootstrap);
    }
    if (LOCO_OK != st) {
        loco_boot_free(boot);
    }
    return st;
}
