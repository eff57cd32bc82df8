/* bench/bench.c — the benchmark table, dispatch and JSON records (see bench.h). */
#include "bench.h"

#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const loco_bench_entry loco_bench_table[] = {
    {"allreduce", "ring allreduce bus bandwidth vs Open MPI over TCP (under launch/loco-mpirun)",
     loco_bench_allreduce},
    {"compress", "codec encode/decode GB/s vs memcpy, bytes/elem, top-k vs nth_element",
     loco_bench_compress},
    {"train", "CPU training throughput (forward+backward+AdamW) vs PyTorch", loco_bench_train},
    {"gpu", "GPU training throughput and MFU (GPT-2 124M shape) vs PyTorch", loco_bench_gpu},
    {"gpucodec", "GPU quantizer encode GB/s vs a device-to-device copy", loco_bench_gpucodec},
    {"statesync", "a joiner's state transfer at a sync point, striped vs one TCP stream",
     loco_bench_statesync},
    {NULL, NULL, NULL},
};

loco_status loco_bench_records_add(loco_bench_records *records, const loco_bench_record *record)
{
    if (records->count == records->capacity) {
        size_t cap = records->capacity ? 2 * records->capacity : 16;
        loco_bench_record *grown = realloc(records->items, cap * sizeof *grown);
        if (NULL == grown) {
            return LOCO_ERR_NOMEM;
        }
        records->items = grown;
        records->capacity = cap;
    }
    records->items[records->count++] = *record;
    return LOCO_OK;
}

loco_status loco_bench_records_write(const loco_bench_records *records, const char *path,
                                     loco_error *err)
{
    loco_atomic_file af;
    LOCO_TRY(loco_atomic_open(&af, path, err));
    loco_json_writer w;
    loco_json_writer_init(&w, af.fp, true);
    loco_json_begin_array(&w);
    for (size_t i = 0; i < records->count; i++) {
        const loco_bench_record *r = &records->items[i];
        loco_json_begin_object(&w);
        loco_json_key(&w, "bench");
        loco_json_string(&w, r->bench);
        loco_json_key(&w, "case");
        loco_json_string(&w, r->case_name);
        loco_json_key(&w, "size");
        loco_json_number(&w, r->size);
        loco_json_key(&w, "value");
        loco_json_number(&w, r->value);
        loco_json_key(&w, "unit");
        loco_json_string(&w, r->unit);
        loco_json_key(&w, "baseline");
        loco_json_string(&w, r->baseline);
        loco_json_key(&w, "baseline_value");
        loco_json_number(&w, r->baseline_value);
        loco_json_key(&w, "ratio");
        loco_json_number(&w, r->ratio);
        loco_json_end_object(&w);
    }
    loco_json_end_array(&w);
    return loco_atomic_commit(&af, err);
}

void loco_bench_records_free(loco_bench_records *records)
{
    free(records->items);
    memset(records, 0, sizeof *records);
}

/* ---------------------------------------------------------------------------------------------
 * Helpers shared by the drivers */

int loco_bench_parse_int(const char *prog, const char *flag, const char *value, int lo, int hi,
                         int *out)
{
    char *end = NULL;
    long v = NULL != value ? strtol(value, &end, 10) : 0;
    if (NULL == value || end == value || '\0' != *end || v < lo || v > hi) {
        fprintf(stderr, "%s: %s needs an integer in %d..%d\n", prog, flag, lo, hi);
        return 2;
    }
    *out = (int)v;
    return 0;
}

int loco_bench_option(const char *prog, int argc, char **argv, int *i,
                      const loco_bench_int_flag *flags, size_t n_flags, loco_bench_common *common)
{
    const char *arg = argv[*i], *value = *i + 1 < argc ? argv[*i + 1] : NULL;
    for (size_t k = 0; k < n_flags; k++) {
        if (0 == strcmp(arg, flags[k].flag)) {
            int rc = loco_bench_parse_int(prog, arg, value, flags[k].lo, flags[k].hi,
                                          flags[k].field);
            *i += 1;
            return 0 == rc ? 1 : rc;
        }
    }
    const char **strings[] = {&common->json, &common->python, &common->script};
    const char *names[] = {"--json", "--python", "--torch-script"};
    for (size_t k = 0; k < 3; k++) {
        if (0 == strcmp(arg, names[k]) && NULL != value) {
            *strings[k] = value;
            *i += 1;
            return 1;
        }
    }
    if (0 == strcmp(arg, "--no-torch")) {
        common->no_torch = true;
        return 1;
    }
    return 0;
}

int loco_bench_parse_args(const char *prog, int argc, char **argv,
                          const loco_bench_int_flag *flags, size_t n_flags,
                          loco_bench_common *common, void (*usage)(FILE *out))
{
    for (int i = 1; i < argc; i++) {
        int rc = loco_bench_option(prog, argc, argv, &i, flags, n_flags, common);
        if (1 == rc) {
            continue;
        }
        if (0 != rc) {
            return rc;
        }
        if (0 == strcmp(argv[i], "--help") || 0 == strcmp(argv[i], "-h")) {
            usage(stdout);
            return -1;
        }
        fprintf(stderr, "%s: unknown or incomplete option '%s'\n\n", prog, argv[i]);
        usage(stderr);
        return 2;
    }
    return 0;
}

int loco_bench_model_config(const char *prog, loco_model_config *cfg, int seq, int share)
{
    if (0 == cfg->n_kv_head) {
        cfg->n_kv_head = cfg->n_head;
    }
    cfg->ctx = seq;
    for (int l = 0; l < cfg->n_layer && l < LOCO_MAX_LAYERS; l++) {
        cfg->kv_src[l] = l - l % share;
    }
    loco_error err = {0};
    if (LOCO_OK != loco_model_config_validate(cfg, &err)) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        return 2;
    }
    return 0;
}

static bool python_has_torch(const char *python)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import torch' > /dev/null 2>&1", python);
    return 0 == system(cmd);
}

const char *loco_bench_find_python(const char *given)
{
    if (NULL != given) {
        return given;
    }
    const char *candidates[] = {getenv("LOCO_PYTHON"), "python3", "/usr/bin/python3"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        if (NULL != candidates[i] && python_has_torch(candidates[i])) {
            return candidates[i];
        }
    }
    return NULL;
}

bool loco_bench_find_script(const char *given, const char *name, char *out, size_t cap)
{
    if (NULL != given) {
        snprintf(out, cap, "%s", given);
        return 0 == access(out, R_OK);
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        const char *dir = dirname(exe);
        const char *rel[] = {"../bench", "../../bench"};
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
            snprintf(out, cap, "%s/%s/%s", dir, rel[i], name);
            if (0 == access(out, R_OK)) {
                return true;
            }
        }
    }
    snprintf(out, cap, "bench/%s", name);
    return 0 == access(out, R_OK);
}

int loco_bench_find_baseline(const char *prog, const loco_bench_common *common,
                             const char *script_name, const char **python, char *script,
                             size_t cap)
{
    *python = NULL;
    if (common->no_torch) {
        return 0;
    }
    *python = loco_bench_find_python(common->python);
    if (NULL == *python) {
        fprintf(stderr, "%s: no python3 with torch found (install python3-torch, pass --python "
                        "PATH, or use --no-torch)\n", prog);
        return 1;
    }
    if (!loco_bench_find_script(common->script, script_name, script, cap)) {
        fprintf(stderr, "%s: bench/%s not found (pass --torch-script PATH)\n", prog, script_name);
        return 1;
    }
    return 0;
}

loco_status loco_bench_run_json(const char *cmd, loco_json_doc *doc, loco_error *err)
{
    FILE *pipe = popen(cmd, "r");
    if (NULL == pipe) {
        return loco_error_set(err, LOCO_ERR_SYSTEM, "cannot run %s", cmd);
    }
    char line[4096] = "", last[4096] = "";
    while (NULL != fgets(line, sizeof line, pipe)) {
        snprintf(last, sizeof last, "%s", line);
    }
    int rc = pclose(pipe);
    if (0 != rc || LOCO_OK != loco_json_parse(doc, last, strlen(last), NULL, NULL)) {
        return loco_error_set(err, LOCO_ERR_SYSTEM, "baseline failed (exit %d): %s", rc, cmd);
    }
    return LOCO_OK;
}

static void bench_usage(FILE *out)
{
    fprintf(out, "usage: loco bench NAME [options]   (loco bench NAME --help for its options)\n\n"
                 "benchmarks:\n");
    for (const loco_bench_entry *e = loco_bench_table; NULL != e->name; e++) {
        fprintf(out, "  %-12s %s\n", e->name, e->summary);
    }
    fprintf(out, "\nEvery benchmark measures its baseline in the same run and reports the ratio;\n"
                 "--json FILE writes the records {bench, case, size, value, unit, baseline,\n"
                 "baseline_value, ratio}.\n");
}

int loco_bench_main(int argc, char **argv)
{
    if (argc < 2 || 0 == strcmp(argv[1], "--help") || 0 == strcmp(argv[1], "-h")) {
        bench_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (const loco_bench_entry *e = loco_bench_table; NULL != e->name; e++) {
        if (0 == strcmp(e->name, argv[1])) {
            return e->run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "loco bench: unknown benchmark '%s'\n", argv[1]);
    bench_usage(stderr);
    return 2;
}
