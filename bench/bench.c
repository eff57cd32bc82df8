/* bench/bench.c — the benchmark table, dispatch and JSON records (see bench.h). */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const loco_bench_entry loco_bench_table[] = {
    {"allreduce", "ring allreduce bus bandwidth vs Open MPI over TCP (under launch/loco-mpirun)",
     loco_bench_allreduce},
    {"train", "CPU training throughput (forward+backward+AdamW) vs PyTorch", loco_bench_train},
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
