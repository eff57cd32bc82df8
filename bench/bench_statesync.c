/* bench/bench_statesync.c — `loco bench statesync`: how fast a joiner receives the shared state
 * at a sync point (collectives/membership.h), striped over every member's streams, against one
 * TCP stream from one member (the way PCCL's newcomer downloads), measured in the same run.
 *
 *   loco bench statesync [--size 256MiB] [--members 3] [--streams 4] [--link SPEC]...
 *                        [--json FILE]
 *
 * Each case runs a group in this process (in-process backend: threads over real TCP on
 * loopback) plus a joiner that dials a member, is admitted at the next sync point and receives
 * SIZE bytes of state; the time is the joiner's transfer, hashing of the received state
 * included. Cases run once without link emulation (loopback: CPU-bound on small machines) and
 * once per --link (default "rate=1gbit,delay=20ms,window=4MiB": each TCP stream is limited by
 * its window to window / RTT, the situation of a WAN).
 */
#include "bench/bench.h"
#include "collectives/membership.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LINKS 4

typedef struct sync_case {
    size_t bytes;
    int members, streams;
    loco_link_config link;
    loco_local_group *group;
    pthread_mutex_t lock;
    char addr[128];
    bool admitted;
    int rank; /* for member threads */
    /* the joiner's result */
    loco_status st;
    double seconds;
    uint64_t received;
} sync_case;

static loco_comm_config case_config(const sync_case *c)
{
    loco_comm_config cfg = LOCO_COMM_CONFIG_INIT;
    cfg.has_key = true;
    memset(cfg.key, 0x42, sizeof cfg.key); /* the joiner needs the group's key */
    cfg.link = c->link;
    cfg.ft.transfer_streams = c->streams;
    cfg.connect_timeout_s = 30;
    cfg.ft.sync_timeout_s = 120;
    cfg.ft.join_timeout_s = 120;
    return cfg;
}

static void fill_state(uint8_t *p, size_t n)
{
    uint64_t *w = (uint64_t *)p;
    for (size_t i = 0; i < n / 8; i++) {
        w[i] = i * 0x9e3779b97f4a7c15ull;
    }
}

typedef struct member_arg {
    sync_case *c;
    int rank;
} member_arg;

static void *member_thread(void *p)
{
    member_arg *a = p;
    sync_case *c = a->c;
    loco_comm_config cfg = case_config(c);
    cfg.bootstrap = LOCO_BOOTSTRAP_LOCAL;
    cfg.local = c->group;
    cfg.rank = a->rank;
    cfg.world = c->members;
    loco_comm_t comm = NULL;
    loco_error err = {0};
    if (LOCO_OK != loco_comm_init(&comm, &cfg, &err)) {
        fprintf(stderr, "bench statesync: member %d: %s\n", a->rank, err.msg);
        return NULL;
    }
    uint8_t *state = loco_alloc_aligned(c->bytes);
    fill_state(state, c->bytes);
    loco_state_buffer buf = {"params", state, c->bytes};
    if (0 == a->rank) {
        pthread_mutex_lock(&c->lock);
        loco_comm_join_address(comm, c->addr, sizeof c->addr);
        pthread_mutex_unlock(&c->lock);
    }
    for (uint64_t step = 0; step < 100000; step++) {
        loco_reconf_report rep;
        if (LOCO_OK != loco_comm_sync_point(comm, step, &buf, 1, NULL, &rep) ||
            loco_comm_size(comm) > c->members) {
            break;
        }
        usleep(2000);
    }
    free(state);
    loco_comm_free(comm);
    return NULL;
}

static void *joiner_thread(void *p)
{
    sync_case *c = p;
    char addr[128] = "";
    while ('\0' == addr[0]) {
        pthread_mutex_lock(&c->lock);
        snprintf(addr, sizeof addr, "%s", c->addr);
        pthread_mutex_unlock(&c->lock);
        usleep(5000);
    }
    loco_comm_config cfg = case_config(c);
    cfg.bootstrap = LOCO_BOOTSTRAP_ADMIT;
    snprintf(cfg.join, sizeof cfg.join, "%s", addr);
    loco_comm_t comm = NULL;
    loco_error err = {0};
    c->st = loco_comm_init(&comm, &cfg, &err);
    if (LOCO_OK != c->st) {
        fprintf(stderr, "bench statesync: joiner: %s\n", err.msg);
        return NULL;
    }
    uint8_t *state = loco_alloc_aligned(c->bytes);
    memset(state, 0, c->bytes);
    loco_state_buffer buf = {"params", state, c->bytes};
    loco_reconf_report rep;
    c->st = loco_comm_sync_point(comm, 0, &buf, 1, NULL, &rep);
    c->seconds = rep.transfer_seconds;
    c->received = rep.state_bytes_received;
    free(state);
    loco_comm_free(comm);
    return NULL;
}

/* One case: a group of `members` and a joiner; returns the joiner's MB/s (0 on failure). */
static double run_case(sync_case *c)
{
    pthread_mutex_init(&c->lock, NULL);
    c->addr[0] = '\0';
    if (LOCO_OK != loco_local_group_init(&c->group, c->members, NULL)) {
        return 0;
    }
    pthread_t th[16], jt;
    member_arg args[16];
    for (int r = 0; r < c->members; r++) {
        args[r] = (member_arg){c, r};
        pthread_create(&th[r], NULL, member_thread, &args[r]);
    }
    pthread_create(&jt, NULL, joiner_thread, c);
    pthread_join(jt, NULL);
    for (int r = 0; r < c->members; r++) {
        pthread_join(th[r], NULL);
    }
    loco_local_group_free(c->group);
    pthread_mutex_destroy(&c->lock);
    if (LOCO_OK != c->st || c->received != c->bytes || c->seconds <= 0) {
        fprintf(stderr, "bench statesync: the joiner got %llu of %zu bytes (%s)\n",
                (unsigned long long)c->received, c->bytes, loco_status_str(c->st));
        return 0;
    }
    return (double)c->bytes / c->seconds / 1e6;
}

static int statesync_usage(FILE *out)
{
    fprintf(out, "usage: loco bench statesync [--size 256MiB] [--members 3] [--streams 4]\n"
                 "                            [--link SPEC]... [--json FILE]\n"
                 "  a joiner receives SIZE bytes of state from MEMBERS members over STREAMS\n"
                 "  streams each, vs one stream from one member (same run); once on plain\n"
                 "  loopback and once per --link (default rate=1gbit,delay=20ms,window=4MiB)\n");
    return out == stdout ? 0 : 2;
}

int loco_bench_statesync(int argc, char **argv)
{
    double size = 256.0 * 1048576;
    int members = 3, streams = 4, nlinks = 0;
    const char *json = NULL, *links[MAX_LINKS];
    for (int i = 1; i < argc; i++) {
        bool v = i + 1 < argc;
        if (0 == strcmp(argv[i], "--help") || 0 == strcmp(argv[i], "-h")) {
            return statesync_usage(stdout);
        } else if (0 == strcmp(argv[i], "--size") && v) {
            if (LOCO_OK != loco_parse_bytes(argv[++i], &size, NULL) || size < 8) {
                return statesync_usage(stderr);
            }
        } else if (0 == strcmp(argv[i], "--members") && v) {
            members = atoi(argv[++i]);
        } else if (0 == strcmp(argv[i], "--streams") && v) {
            streams = atoi(argv[++i]);
        } else if (0 == strcmp(argv[i], "--link") && v && nlinks < MAX_LINKS) {
            links[nlinks++] = argv[++i];
        } else if (0 == strcmp(argv[i], "--json") && v) {
            json = argv[++i];
        } else {
            return statesync_usage(stderr);
        }
    }
    if (members < 1 || members > 15 || streams < 1 || streams > 64) {
        fprintf(stderr, "bench statesync: --members 1..15, --streams 1..64\n");
        return 2;
    }
    if (0 == nlinks) {
        links[nlinks++] = "rate=1gbit,delay=20ms,window=4MiB";
    }
    loco_bench_records records = {0};
    printf("%-44s %10s %12s %12s %7s\n", "case", "size", "MB/s", "1 stream", "ratio");
    int rc = 0;
    for (int l = -1; l < nlinks; l++) {
        loco_link_config link = {0};
        if (l >= 0 && LOCO_OK != loco_parse_link(links[l], &link, NULL)) {
            fprintf(stderr, "bench statesync: bad --link '%s'\n", links[l]);
            return 2;
        }
        sync_case base = {.bytes = (size_t)size & ~(size_t)7, .members = 1, .streams = 1,
                          .link = link};
        sync_case striped = base;
        striped.members = members;
        striped.streams = streams;
        double b = run_case(&base);
        double s = run_case(&striped);
        loco_bench_record r = {.size = (double)base.bytes, .value = s, .baseline_value = b,
                               .ratio = b > 0 ? s / b : 0};
        snprintf(r.bench, sizeof r.bench, "statesync");
        snprintf(r.case_name, sizeof r.case_name, "%s, %d members x %d streams",
                 l < 0 ? "loopback" : links[l], members, streams);
        snprintf(r.unit, sizeof r.unit, "MB/s");
        snprintf(r.baseline, sizeof r.baseline, "1 member x 1 stream");
        loco_bench_records_add(&records, &r);
        printf("%-44.44s %9.0fM %12.1f %12.1f %6.2fx\n", r.case_name, r.size / 1048576, s, b,
               r.ratio);
        fflush(stdout);
        rc = (0 == s || 0 == b) ? 1 : rc;
    }
    loco_error err = {0};
    if (NULL != json && LOCO_OK != loco_bench_records_write(&records, json, &err)) {
        fprintf(stderr, "bench statesync: %s\n", err.msg);
        rc = 1;
    }
    loco_bench_records_free(&records);
    return rc;
}
