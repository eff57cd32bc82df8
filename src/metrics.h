/* src/metrics.h — per-step metrics as JSON lines (run.dir/metrics.jsonl).
 *
 * Each line is one JSON object written with a single write(2) on a file opened with O_APPEND,
 * so several workers sharing a run directory never interleave partial lines. Every line carries
 * "rank" and "time" (seconds since the run started); the caller adds the rest through the JSON
 * writer between begin and end:
 *
 *     loco_json_writer *w = loco_metrics_begin(&m, "step");
 *     loco_json_key(w, "step"); loco_json_int(w, step);
 *     loco_json_key(w, "loss"); loco_json_number(w, loss);
 *     loco_metrics_end(&m);
 */
#ifndef LOCO_SRC_METRICS_H
#define LOCO_SRC_METRICS_H

#include "base/base.h"

#include <stdio.h>

typedef struct loco_metrics {
    int fd;
    int rank;
    double start_s;   /* monotonic time the run started */
    char *line;       /* the line being built (open_memstream buffer) */
    size_t line_len;
    FILE *mem;
    loco_json_writer writer;
} loco_metrics;

/* Open (append to) DIR/metrics.jsonl. */
loco_status loco_metrics_open(loco_metrics *m, const char *run_dir, int rank, loco_error *err);
void loco_metrics_close(loco_metrics *m);

/* Start a record of kind `event` ("step", "eval", "sync", "membership", ...). */
loco_json_writer *loco_metrics_begin(loco_metrics *m, const char *event);
/* Finish the record and append it to the file. */
loco_status loco_metrics_end(loco_metrics *m);

#endif /* LOCO_SRC_METRICS_H */
