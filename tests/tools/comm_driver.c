/* tests/tools/comm_driver.c — runs allreduces over a real communicator and writes what each rank
 * saw, for the shell tests (tests/test_comm_*.sh) that launch it under launch/loco-mpirun or as
 * separate --join processes.
 *
 *   comm_driver --out DIR [--bootstrap mpi|join] [--join HOST:PORT --rank R --world W]
 *               [--counts 0,1,7,1000003] [--iters N] [--dtype f32|bf16] [--op sum|avg]
 *               [--streams K] [--chunk BYTES] [--heartbeat S] [--peer-timeout S]
 *               [--op-timeout S] [--connect-timeout S] [--link SPEC] [--listen-port P]
 *               [--die-rank R --die-after-ms MS]     rank R SIGKILLs itself MS into the first op
 *               [--stall-rank R --stall-after-ms MS] rank R SIGSTOPs itself MS into the first op
 *
 * Each rank writes DIR/rank.R.pid at start and DIR/rank.R.json at the end:
 *   {"rank": R, "world": W, "ops": [{"count", "iter", "status", "code", "digest", "seconds",
 *    "lost_rank", "error"}, ...]}
 * Inputs are deterministic (rank, element); digests are XXH64 of each result, so the test can
 * check bit-identity across ranks. A failed loco_comm_init prints one line and exits 1.
 */
#include "base/base.h"
#include "collectives/comm.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_COUNTS 32

typedef struct driver_args {
    const char *out;
    size_t counts[MAX_COUNTS];
    int ncounts, iters;
    loco_dtype dtype;
    loco_reduce_op op;
    int die_rank, stall_rank;
    int die_after_ms, stall_after_ms;
} driver_args;

static int usage(void)
{
    fprintf(stderr, "usage: comm_driver --out DIR [--bootstrap mpi|join] [--join HOST:PORT] "
                    "[--rank R] [--world W] [--counts LIST] [--iters N] [--dtype f32|bf16] "
                    "[--op sum|avg] [--streams K] [--chunk BYTES] [--heartbeat S] "
                    "[--peer-timeout S] [--op-timeout S] [--connect-timeout S] [--link SPEC] "
                    "[--listen-port P] "
                    "[--die-rank R --die-after-ms MS] [--stall-rank R --stall-after-ms MS]\n");
    return 2;
}

static loco_status parse_counts(const char *text, driver_args *a, loco_error *err)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", text);
    a->ncounts = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); NULL != t && a->ncounts < MAX_COUNTS;
         t = strtok_r(NULL, ",", &save)) {
        double v = 0;
        LOCO_TRY(loco_parse_bytes(t, &v, err)); /* plain counts with optional K/M suffixes */
        a->counts[a->ncounts++] = (size_t)v;
    }
    return LOCO_OK;
}

static double arg_seconds(const char *text)
{
    double v = 0;
    if (LOCO_OK != loco_parse_duration(text, &v, NULL)) {
        fprintf(stderr, "comm_driver: bad duration '%s'\n", text);
        exit(2);
    }
    return v;
}

static loco_status parse_args(int argc, char **argv, driver_args *a, loco_comm_config *cfg,
                              loco_error *err)
{
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (NULL == v) {
            return loco_error_set(err, LOCO_ERR_USAGE, "%s needs a value", k);
        }
        i++;
        if (0 == strcmp(k, "--out")) {
            a->out = v;
        } else if (0 == strcmp(k, "--bootstrap")) {
            cfg->bootstrap = 0 == strcmp(v, "join") ? LOCO_BOOTSTRAP_JOIN : LOCO_BOOTSTRAP_MPI;
        } else if (0 == strcmp(k, "--join")) {
            snprintf(cfg->join, sizeof cfg->join, "%s", v);
            cfg->bootstrap = LOCO_BOOTSTRAP_JOIN;
        } else if (0 == strcmp(k, "--rank")) {
            cfg->rank = atoi(v);
        } else if (0 == strcmp(k, "--world")) {
            cfg->world = atoi(v);
        } else if (0 == strcmp(k, "--listen-port")) {
            cfg->listen_port = atoi(v);
        } else if (0 == strcmp(k, "--counts")) {
            LOCO_TRY(parse_counts(v, a, err));
        } else if (0 == strcmp(k, "--iters")) {
            a->iters = atoi(v);
        } else if (0 == strcmp(k, "--dtype")) {
            a->dtype = 0 == strcmp(v, "bf16") ? LOCO_DTYPE_BF16 : LOCO_DTYPE_F32;
        } else if (0 == strcmp(k, "--op")) {
            a->op = 0 == strcmp(v, "avg") ? LOCO_REDUCE_AVG : LOCO_REDUCE_SUM;
        } else if (0 == strcmp(k, "--streams")) {
            cfg->streams = atoi(v);
        } else if (0 == strcmp(k, "--chunk")) {
            double b = 0;
            LOCO_TRY(loco_parse_bytes(v, &b, err));
            cfg->chunk_bytes = (size_t)b;
        } else if (0 == strcmp(k, "--heartbeat")) {
            cfg->heartbeat_s = arg_seconds(v);
        } else if (0 == strcmp(k, "--peer-timeout")) {
            cfg->peer_timeout_s = arg_seconds(v);
        } else if (0 == strcmp(k, "--op-timeout")) {
            cfg->op_timeout_s = arg_seconds(v);
        } else if (0 == strcmp(k, "--connect-timeout")) {
            cfg->connect_timeout_s = arg_seconds(v);
        } else if (0 == strcmp(k, "--link")) {
            LOCO_TRY(loco_parse_link(v, &cfg->link, err));
        } else if (0 == strcmp(k, "--die-rank")) {
            a->die_rank = atoi(v);
        } else if (0 == strcmp(k, "--die-after-ms")) {
            a->die_after_ms = atoi(v);
        } else if (0 == strcmp(k, "--stall-rank")) {
            a->stall_rank = atoi(v);
        } else if (0 == strcmp(k, "--stall-after-ms")) {
            a->stall_after_ms = atoi(v);
        } else {
            return loco_error_set(err, LOCO_ERR_USAGE, "unknown option %s", k);
        }
    }
    if (NULL == a->out) {
        return loco_error_set(err, LOCO_ERR_USAGE, "--out DIR is required");
    }
    return LOCO_OK;
}

static void write_pid(const driver_args *a, int rank)
{
    char path[4096], text[32];
    snprintf(path, sizeof path, "%s/rank.%d.pid", a->out, rank);
    int n = snprintf(text, sizeof text, "%d\n", (int)getpid());
    loco_file_write_atomic(path, text, (size_t)n, NULL);
}

static void fill_input(void *buf, size_t count, loco_dtype dtype, int rank)
{
    for (size_t i = 0; i < count; i++) {
        uint32_t r[4];
        loco_rng_block(99, (uint64_t)rank, i, r);
        float v = (loco_u32_to_unit(r[0]) - 0.5f) * 8.0f;
        if (LOCO_DTYPE_F32 == dtype) {
            ((float *)buf)[i] = v;
        } else {
            ((uint16_t *)buf)[i] = loco_f32_to_bf16(v);
        }
    }
}

/* One allreduce; the designated rank kills or stops itself while it is in flight. */
static loco_status run_op(loco_comm_t comm, const driver_args *a, void *buf, size_t count,
                          bool first, loco_op_info *info)
{
    int rank = loco_comm_rank(comm);
    bool die = first && rank == a->die_rank, stall = first && rank == a->stall_rank;
    if (!die && !stall) {
        return loco_allreduce(comm, buf, buf, count, a->dtype, a->op, info);
    }
    loco_request_t req = NULL;
    loco_status st = loco_iallreduce(comm, buf, buf, count, a->dtype, a->op, &req);
    usleep((useconds_t)(1000 * (die ? a->die_after_ms : a->stall_after_ms)));
    kill(getpid(), die ? SIGKILL : SIGSTOP);
    return LOCO_OK == st ? loco_wait(&req, info) : st;
}

int main(int argc, char **argv)
{
    driver_args a = {.iters = 1, .dtype = LOCO_DTYPE_F32, .op = LOCO_REDUCE_SUM, .die_rank = -1,
                     .stall_rank = -1, .ncounts = 1, .counts = {1000}};
    loco_comm_config cfg = LOCO_COMM_CONFIG_INIT;
    cfg.result_digest = true;
    loco_error err = {0};
    if (LOCO_OK != parse_args(argc, argv, &a, &cfg, &err)) {
        fprintf(stderr, "comm_driver: %s\n", err.msg);
        return usage();
    }
    if (LOCO_OK != loco_mkdir_p(a.out, &err)) {
        fprintf(stderr, "comm_driver: %s\n", err.msg);
        return 1;
    }
    loco_comm_t comm = NULL;
    loco_status st = loco_comm_init(&comm, &cfg, &err);
    if (LOCO_OK != st) {
        fprintf(stderr, "comm_driver: %s\n", loco_error_msg(&err, st));
        return 1;
    }
    int rank = loco_comm_rank(comm);
    char prefix[16];
    snprintf(prefix, sizeof prefix, "r%d", rank);
    loco_log_set_prefix(prefix);
    write_pid(&a, rank);

    char path[4096];
    snprintf(path, sizeof path, "%s/rank.%d.json", a.out, rank);
    loco_atomic_file af;
    if (LOCO_OK != loco_atomic_open(&af, path, &err)) {
        fprintf(stderr, "comm_driver: %s\n", err.msg);
        return 1;
    }
    loco_json_writer w;
    loco_json_writer_init(&w, af.fp, false);
    loco_json_begin_object(&w);
    loco_json_key(&w, "rank");
    loco_json_int(&w, rank);
    loco_json_key(&w, "world");
    loco_json_int(&w, loco_comm_size(comm));
    loco_json_key(&w, "ops");
    loco_json_begin_array(&w);
    bool first = true;
    for (int c = 0; c < a.ncounts; c++) {
        size_t esize = LOCO_DTYPE_F32 == a.dtype ? 4 : 2;
        void *buf = malloc(a.counts[c] * esize + 1);
        for (int it = 0; it < a.iters; it++) {
            fill_input(buf, a.counts[c], a.dtype, rank);
            loco_op_info info;
            st = run_op(comm, &a, buf, a.counts[c], first, &info);
            first = false;
            if (LOCO_OK != st && 0 == info.error[0]) {
                snprintf(info.error, sizeof info.error, "%s", loco_comm_error(comm));
            }
            char hex[17];
            loco_hash_hex(info.digest, hex);
            loco_json_begin_object(&w);
            loco_json_key(&w, "count");
            loco_json_uint(&w, a.counts[c]);
            loco_json_key(&w, "iter");
            loco_json_int(&w, it);
            loco_json_key(&w, "status");
            loco_json_string(&w, loco_status_str(st));
            loco_json_key(&w, "code");
            loco_json_int(&w, st);
            loco_json_key(&w, "digest");
            loco_json_string(&w, hex);
            loco_json_key(&w, "seconds");
            loco_json_number(&w, info.duration_s);
            loco_json_key(&w, "lost_rank");
            loco_json_int(&w, info.lost_rank);
            loco_json_key(&w, "error");
            loco_json_string(&w, info.error);
            loco_json_end_object(&w);
        }
        free(buf);
    }
    loco_json_end_array(&w);
    loco_json_end_object(&w);
    fputc('\n', af.fp);
    st = loco_atomic_commit(&af, &err);
    loco_comm_free(comm);
    return LOCO_OK == st ? 0 : 1;
}
