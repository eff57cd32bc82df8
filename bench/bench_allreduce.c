/* bench/bench_allreduce.c — `loco bench allreduce`: loco's ring allreduce against Open MPI's
 * MPI_Allreduce forced onto its TCP transport, measured in the same run, size by size.
 *
 *   launch/loco-mpirun -np 4 build/loco bench allreduce [--sizes 1K,1M,64M,256M] [--streams K]
 *       [--chunk BYTES] [--iters N] [--link SPEC] [--no-confirm] [--no-ft] [--json FILE]
 *
 * For every size both systems run the same out-of-place fp32 sum, timed between barriers; the
 * slowest rank's time counts. Bus bandwidth = 2 (N-1)/N * bytes / time, the traffic each rank's
 * link carries in a ring (NCCL's definition), so it is comparable across world sizes.
 *
 * MPI here: this benchmark initialises MPI itself (with OMPI_MCA_btl=tcp,self unless set), keeps
 * it open for the baseline and finalises it at the end; loco's bootstrap sees MPI initialised and
 * leaves it alone. That is only acceptable because nothing dies in a benchmark: the training
 * runtime never calls MPI after the bootstrap (DESIGN.md §1).
 *
 * By default every allreduce ends with the coordinator's verdict (collectives/membership.h);
 * --no-ft measures the bare data plane (ft.coordinator: none), so the two runs show the verdict's
 * cost. With --link (e.g. rate=1gbit,delay=50ms) loco runs over the link emulator and the baseline is
 * the emulated link rate itself (an MPI run cannot be shaped without root and netem).
 */
#include "bench/bench.h"
#include "collectives/comm.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SIZES 32

typedef struct allreduce_args {
    double sizes[MAX_SIZES];
    int nsizes;
    int iters; /* 0 = by size */
    bool confirm;
    const char *json;
    loco_comm_config cfg;
} allreduce_args;

static int allreduce_usage(FILE *out)
{
    fprintf(out,
            "usage: loco bench allreduce [--sizes LIST] [--streams K] [--chunk BYTES] [--iters N]\n"
            "                            [--link SPEC] [--no-confirm] [--no-ft] [--json FILE]\n"
            "Run under launch/loco-mpirun -np N. Compares loco's ring allreduce with Open MPI's\n"
            "MPI_Allreduce over TCP (btl tcp,self), same sizes, same run. Sizes in bytes\n"
            "(default 1K,64K,1M,16M,64M,256M). --link emulates a WAN link for loco\n"
            "(rate=1gbit,delay=50ms,...) and compares with the link rate instead.\n");
    return out == stderr ? 2 : 0;
}

static loco_status allreduce_parse(int argc, char **argv, allreduce_args *a, loco_error *err)
{
    const char *sizes = "1K,64K,1M,16M,64M,256M";
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (0 == strcmp(k, "--no-confirm")) {
            a->confirm = false;
            continue;
        }
        if (0 == strcmp(k, "--no-ft")) {
            a->cfg.ft.coordinator = LOCO_COORD_NONE;
            continue;
        }
        if (0 == strcmp(k, "-h") || 0 == strcmp(k, "--help")) {
            return LOCO_ERR_USAGE;
        }
        if (i + 1 >= argc) {
            return loco_error_set(err, LOCO_ERR_USAGE, "%s needs a value", k);
        }
        const char *v = argv[++i];
        double x = 0;
        if (0 == strcmp(k, "--sizes")) {
            sizes = v;
        } else if (0 == strcmp(k, "--streams")) {
            a->cfg.streams = atoi(v);
        } else if (0 == strcmp(k, "--chunk")) {
            LOCO_TRY(loco_parse_bytes(v, &x, err));
            a->cfg.chunk_bytes = (size_t)x;
        } else if (0 == strcmp(k, "--iters")) {
            a->iters = atoi(v);
        } else if (0 == strcmp(k, "--link")) {
            LOCO_TRY(loco_parse_link(v, &a->cfg.link, err));
        } else if (0 == strcmp(k, "--json")) {
            a->json = v;
        } else {
            return loco_error_set(err, LOCO_ERR_USAGE, "unknown option '%s'", k);
        }
    }
    char buf[512];
    snprintf(buf, sizeof buf, "%s", sizes);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); NULL != t; t = strtok_r(NULL, ",", &save)) {
        if (a->nsizes == MAX_SIZES) {
            return loco_error_set(err, LOCO_ERR_USAGE, "at most %d sizes", MAX_SIZES);
        }
        LOCO_TRY(loco_parse_bytes(t, &a->sizes[a->nsizes], err));
        if (a->sizes[a->nsizes] < 4) {
            return loco_error_set(err, LOCO_ERR_USAGE, "size '%s' is below one float", t);
        }
        a->nsizes++;
    }
    return LOCO_OK;
}

static int iterations_for(const allreduce_args *a, size_t bytes)
{
    if (a->iters > 0) {
        return a->iters;
    }
    double n = 64.0 * 1048576.0 / (double)bytes;
    return n < 3 ? 3 : n > 50 ? 50 : (int)n;
}

/* Seconds per operation on the slowest rank: `iters` runs between barriers (MPI is alive). */
static double time_mpi(const float *x, float *y, size_t n, int iters)
{
    MPI_Allreduce(x, y, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); /* warm-up */
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int k = 0; k < iters; k++) {
        MPI_Allreduce(x, y, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
    double t = (MPI_Wtime() - t0) / iters, worst = 0;
    MPI_Allreduce(&t, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return worst;
}

static double time_loco(loco_comm_t comm, const float *x, float *y, size_t n, int iters,
                        loco_status *st)
{
    *st = loco_allreduce(comm, x, y, n, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, NULL);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int k = 0; k < iters && LOCO_OK == *st; k++) {
        *st = loco_allreduce(comm, x, y, n, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, NULL);
    }
    double t = (MPI_Wtime() - t0) / iters, worst = 0;
    MPI_Allreduce(&t, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    int ok = LOCO_OK == *st, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all_ok && LOCO_OK == *st) {
        *st = LOCO_ERR_PEER_LOST;
    }
    return worst;
}

static void size_label(double bytes, char *out, size_t cap)
{
    if (bytes >= 1048576.0) {
        snprintf(out, cap, "%gM", bytes / 1048576.0);
    } else if (bytes >= 1024.0) {
        snprintf(out, cap, "%gK", bytes / 1024.0);
    } else {
        snprintf(out, cap, "%g", bytes);
    }
}

/* Run the sweep; MPI is initialised and loco's communicator is up. */
static int allreduce_sweep(const allreduce_args *a, loco_comm_t comm, int rank, int world)
{
    bool emulated = loco_link_active(&a->cfg.link);
    double link_gbps = a->cfg.link.rate_bps / 8e9;
    double factor = world > 1 ? 2.0 * (world - 1) / world : 1.0;
    loco_bench_records records = {0};
    if (0 == rank) {
        printf("allreduce fp32 sum, %d ranks, %d streams, chunk %zu KiB%s\n", world,
               a->cfg.streams, a->cfg.chunk_bytes >> 10, emulated ? ", emulated link" : "");
        printf("%10s %6s %12s %12s %12s %12s %8s\n", "size", "iters", "loco ms", "loco GB/s",
               emulated ? "link ms" : "mpi ms", emulated ? "link GB/s" : "mpi GB/s", "ratio");
    }
    int rc = 0;
    for (int s = 0; s < a->nsizes && 0 == rc; s++) {
        size_t bytes = (size_t)a->sizes[s], n = bytes / 4;
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        int fail = NULL == x || NULL == y, any_fail = 0;
        MPI_Allreduce(&fail, &any_fail, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        if (any_fail) {
            fprintf(stderr, "loco bench allreduce: rank %d: no memory for %zu bytes\n", rank, bytes);
            free(x);
            free(y);
            rc = 1;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            x[i] = (float)((i + (size_t)rank) % 17) * 0.25f;
        }
        int iters = iterations_for(a, bytes);
        double t_base = 0;
        if (!emulated) {
            t_base = time_mpi(x, y, n, iters);
        }
        loco_status st = LOCO_OK;
        double t_loco = time_loco(comm, x, y, n, iters, &st);
        free(x);
        free(y);
        if (LOCO_OK != st) {
            if (0 == rank) {
                fprintf(stderr, "loco bench allreduce: %s\n", loco_comm_error(comm));
            }
            rc = 1;
            break;
        }
        double bw = factor * (double)(n * 4) / t_loco / 1e9;
        double base_bw = emulated ? link_gbps : factor * (double)(n * 4) / t_base / 1e9;
        if (emulated) {
            t_base = factor * (double)(n * 4) / (link_gbps * 1e9);
        }
        if (0 == rank) {
            char label[32];
            size_label((double)(n * 4), label, sizeof label);
            printf("%10s %6d %12.3f %12.3f %12.3f %12.3f %8.2f\n", label, iters, t_loco * 1e3, bw,
                   t_base * 1e3, base_bw, bw / base_bw);
            fflush(stdout);
            loco_bench_record r = {.size = (double)(n * 4), .value = bw, .baseline_value = base_bw,
                                   .ratio = bw / base_bw};
            snprintf(r.bench, sizeof r.bench, "allreduce");
            snprintf(r.case_name, sizeof r.case_name, "f32 sum np=%d streams=%d%s%s", world,
                     a->cfg.streams, emulated ? " link " : "", emulated ? "emulated" : "");
            snprintf(r.unit, sizeof r.unit, "GB/s busbw");
            snprintf(r.baseline, sizeof r.baseline, "%s", emulated ? "link rate" : "mpi tcp");
            loco_bench_records_add(&records, &r);
        }
    }
    if (0 == rank && NULL != a->json && 0 == rc) {
        loco_error err = {0};
        if (LOCO_OK != loco_bench_records_write(&records, a->json, &err)) {
            fprintf(stderr, "loco bench allreduce: %s\n", err.msg);
            rc = 1;
        }
    }
    loco_bench_records_free(&records);
    return rc;
}

int loco_bench_allreduce(int argc, char **argv)
{
    allreduce_args a = {.confirm = true, .cfg = LOCO_COMM_CONFIG_INIT};
    loco_error err = {0};
    loco_status st = allreduce_parse(argc, argv, &a, &err);
    if (LOCO_ERR_USAGE == st && 0 == err.msg[0]) {
        return allreduce_usage(stdout);
    }
    if (LOCO_OK != st) {
        fprintf(stderr, "loco bench allreduce: %s\n", err.msg);
        return allreduce_usage(stderr);
    }
    a.cfg.confirm = a.confirm;
    /* The baseline: Open MPI's TCP transport (what it would use between hosts). */
    setenv("OMPI_MCA_btl", "tcp,self", 0);
    if (MPI_SUCCESS != MPI_Init(NULL, NULL)) {
        fprintf(stderr, "loco bench allreduce: MPI_Init failed (run under launch/loco-mpirun)\n");
        return 1;
    }
    int rank = 0, world = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    loco_comm_t comm = NULL;
    st = loco_comm_init(&comm, &a.cfg, &err); /* MPI bootstrap; MPI stays ours to finalise */
    int ok = LOCO_OK == st, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    int rc = 1;
    if (!ok) {
        fprintf(stderr, "loco bench allreduce: rank %d: %s\n", rank, loco_error_msg(&err, st));
    }
    if (all_ok) {
        rc = allreduce_sweep(&a, comm, rank, world);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    loco_comm_free(comm);
    MPI_Finalize();
    return rc;
}
