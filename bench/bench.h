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
#include "src/model.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

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

/* Helpers shared by the drivers. */

/* Parse `value` (the argument after `flag`) as an integer in [lo, hi] into *out. Returns 0, or 2
 * (a usage error's exit code) after printing "<prog>: <flag> needs an integer in lo..hi". */
int loco_bench_parse_int(const char *prog, const char *flag, const char *value, int lo, int hi,
                         int *out);

/* Integer options: {flag, field, lo, hi}. */
typedef struct loco_bench_int_flag {
    const char *flag;
    int *field, lo, hi;
} loco_bench_int_flag;

/* Options every driver with a PyTorch baseline takes. */
typedef struct loco_bench_common {
    const char *json, *python, *script;
    bool no_torch;
} loco_bench_common;

/* Consume option argv[*i] (and its value) if it is one of `flags` or a common option
 * (--json FILE, --python PATH, --torch-script PATH, --no-torch): returns 1 and advances *i past
 * it; 0 if it is none of them; 2 (usage exit code, message printed) for a bad value. */
int loco_bench_option(const char *prog, int argc, char **argv, int *i,
                      const loco_bench_int_flag *flags, size_t n_flags, loco_bench_common *common);

/* Parse argv[1..] with loco_bench_option: returns 0; -1 after --help printed usage to stdout;
 * 2 after an unknown option or bad value (usage printed to stderr). */
int loco_bench_parse_args(const char *prog, int argc, char **argv,
                          const loco_bench_int_flag *flags, size_t n_flags,
                          loco_bench_common *common, void (*usage)(FILE *out));

/* Finish a model configuration from benchmark options: n_kv_head 0 becomes n_head, ctx = seq,
 * kv_src in groups of `share` consecutive layers; returns 0, or 2 after printing why the
 * configuration is invalid. */
int loco_bench_model_config(const char *prog, loco_model_config *cfg, int seq, int share);

/* The Python interpreter for a PyTorch baseline: `given` if not NULL, else the first of
 * $LOCO_PYTHON, python3, /usr/bin/python3 that imports torch; NULL if none does. */
const char *loco_bench_find_python(const char *given);

/* bench/<name>: `given` if not NULL, else next to the binary (build/loco -> ../bench/name), else
 * ./bench/name. Returns whether the file is readable; the path is in out. */
bool loco_bench_find_script(const char *given, const char *name, char *out, size_t cap);

/* Find what a PyTorch baseline needs (unless common->no_torch): the interpreter into *python
 * and bench/<script_name> into script. Returns 0, or 1 after printing what is missing and how to
 * fix it. */
int loco_bench_find_baseline(const char *prog, const loco_bench_common *common,
                             const char *script_name, const char **python, char *script,
                             size_t cap);

/* Run a shell command whose last line of output is a JSON object and parse that line into
 * *doc (the caller frees it with loco_json_free). LOCO_ERR_SYSTEM if the command fails or its
 * last line is not JSON. */
loco_status loco_bench_run_json(const char *cmd, loco_json_doc *doc, loco_error *err);

/* The benchmarks (one file each, bench/bench_NAME.c), argv[0] == NAME. */
int loco_bench_allreduce(int argc, char **argv);
int loco_bench_compress(int argc, char **argv);
int loco_bench_statesync(int argc, char **argv);
int loco_bench_train(int argc, char **argv);
int loco_bench_gpu(int argc, char **argv);
int loco_bench_gpucodec(int argc, char **argv);

/* Dispatch `loco bench NAME args...` (argv[0] == "bench"). */
int loco_bench_main(int argc, char **argv);

#endif /* LOCO_BENCH_BENCH_H */
