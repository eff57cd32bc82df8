/* bench/bench.h — `loco bench NAME ...`: benchmark drivers and their shared record format.
 *
 * Every benchmark prints a human-readable table and, with `--json FILE`, writes a JSON list of
 * records {bench, case, size, value, unit, baseline, baseline_value, ratio} (DESIGN.md §9), the
 * baseline measured in the same run. Add a benchmark by writing bench/bench_NAME.c with an
 * `int loco_bench_NAME(int argc, char **argv)` entry and one line in loco_bench_table (bench.c).
 */
#ifndef LOCO_BENCH_BENCH_H
#define LOCO_BENCH_BENCH_H

#include "base/base.h"

#include <stddef.h>

typedef struct loco_bench_entry {
    const char *name;    /* `loco bench NAME` */
    const char *summary; /* one line for `loco bench --help` */
    int (*run)(int argc, char **argv); /* argv[0] is NAME; returns a process exit code */
} loco_bench_entry;

/* The benchmarks, terminated by an entry with name NULL. */
extern const loco_bench_entry loco_bench_table[];

/* One measured value next to its same-run baseline. */
typedef struct loco_bench_record {
    char bench[32];
    char case_name[96];
    double size;           /* problem size (bytes, elements or tokens; see unit) */
    double value;
    char unit[24];         /* e.g. "GB/s", "tokens/s" */
    char baseline[32];     /* e.g. "memcpy", "mpi", "pytorch" */
    double baseline_value;
    double ratio;          /* value / baseline_value (higher is better unless noted) */
} loco_bench_record;

/* A growable list of records, written as JSON by loco_bench_records_write. */
typedef struct loco_bench_records {
    loco_bench_record *items;
    size_t count, capacity;
} loco_bench_records;

loco_status loco_bench_records_add(loco_bench_records *records, const loco_bench_record *record);
loco_status loco_bench_records_write(const loco_bench_records *records, const char *path,
                                     loco_error *err);
void loco_bench_records_free(loco_bench_records *records);

/* The benchmarks (one file each, bench/bench_NAME.c), argv[0] == NAME. */
int loco_bench_allreduce(int argc, char **argv);
int loco_bench_statesync(int argc, char **argv);
int loco_bench_train(int argc, char **argv);

/* Dispatch `loco bench NAME args...` (argv[0] == "bench"). */
int loco_bench_main(int argc, char **argv);

#endif /* LOCO_BENCH_BENCH_H */
