/* src/report.c — `loco report RUN_DIR...`: compare runs in a Markdown table and PNG plots.
 *
 * For every run directory it reads run.json (strategy, workers, totals, final losses) and the
 * "eval" records of metrics.jsonl (validation loss against tokens and bytes sent per worker), and
 * writes OUT/report.md, OUT/val_loss_vs_tokens.png and OUT/val_loss_vs_bytes.png. The first run
 * is the baseline of the ratio columns (put DDP first to read "x fewer bytes than DDP").
 */
#include "src/commands.h"
#include "src/plot.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPORT_MAX_RUNS 32
#define REPORT_MAX_BYTES (256u << 20)

typedef struct run_summary {
    char dir[1024];
    char name[256];
    char strategy[64];
    char status[64];
    int world;
    long long steps;
    double tokens_per_worker;
    double final_loss;
    double final_val_loss;
    double bytes_sent_per_worker;     /* mean over workers */
    double bytes_received_per_worker; /* mean over workers */
    double wall_seconds;
    char digest_agreement[32]; /* "yes", "no" or "n/a" */
    /* eval curve */
    double *eval_tokens; /* tokens over all workers */
    double *eval_bytes;  /* bytes sent per worker */
    double *eval_loss;
    int n_eval;
} run_summary;

static double json_number_or(const loco_json_doc *doc, const loco_json_node *obj, const char *key,
                             double fallback)
{
    const loco_json_node *n = loco_json_get(doc, obj, key);
    return (NULL != n && LOCO_JSON_NUMBER == n->type) ? n->number : fallback;
}

static void json_string_into(const loco_json_doc *doc, const loco_json_node *obj, const char *key,
                             char *out, size_t cap, const char *fallback)
{
    const loco_json_node *n = loco_json_get(doc, obj, key);
    snprintf(out, cap, "%s", (NULL != n && LOCO_JSON_STRING == n->type) ? n->str : fallback);
}

static loco_status read_run_json(run_summary *run, loco_error *err)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/run.json", run->dir);
    char *text;
    size_t len;
    LOCO_TRY(loco_file_read_all(path, REPORT_MAX_BYTES, &text, &len, err));
    loco_json_doc doc;
    loco_status st = loco_json_parse(&doc, text, len, NULL, err);
    free(text);
    if (LOCO_OK != st) {
        return loco_error_set(err, LOCO_ERR_FORMAT, "%s: not valid JSON", path);
    }
    const loco_json_node *root = loco_json_root(&doc);
    json_string_into(&doc, root, "strategy", run->strategy, sizeof run->strategy, "?");
    json_string_into(&doc, root, "status", run->status, sizeof run->status, "?");
    run->world = (int)json_number_or(&doc, root, "world_size", 1);
    run->steps = (long long)json_number_or(&doc, root, "steps", 0);
    run->tokens_per_worker = json_number_or(&doc, root, "tokens_per_worker", NAN);
    run->final_loss = json_number_or(&doc, root, "final_loss", NAN);
    run->final_val_loss = json_number_or(&doc, root, "final_val_loss", NAN);
    run->wall_seconds = json_number_or(&doc, root, "wall_seconds", NAN);
    const loco_json_node *workers = loco_json_get(&doc, root, "workers");
    double sent = 0, received = 0;
    int n = 0;
    char first_digest[64] = "";
    bool agree = true;
    for (const loco_json_node *w = loco_json_child(&doc, workers); NULL != w;
         w = loco_json_next(&doc, w)) {
        sent += json_number_or(&doc, w, "bytes_sent", 0);
        received += json_number_or(&doc, w, "bytes_received", 0);
        char digest[64];
        json_string_into(&doc, w, "param_digest", digest, sizeof digest, "");
        if (0 == n) {
            snprintf(first_digest, sizeof first_digest, "%s", digest);
        } else if (0 != strcmp(first_digest, digest)) {
            agree = false;
        }
        n++;
    }
    run->bytes_sent_per_worker = n > 0 ? sent / n : 0;
    run->bytes_received_per_worker = n > 0 ? received / n : 0;
    snprintf(run->digest_agreement, sizeof run->digest_agreement, "%s",
             n < 2 ? "n/a" : (agree ? "yes" : "no"));
    loco_json_free(&doc);
    return LOCO_OK;
}

static loco_status read_eval_curve(run_summary *run, loco_error *err)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run->dir);
    char *text;
    size_t len;
    LOCO_TRY(loco_file_read_all(path, REPORT_MAX_BYTES, &text, &len, err));
    int capacity = 64;
    run->eval_tokens = malloc((size_t)capacity * sizeof(double));
    run->eval_bytes = malloc((size_t)capacity * sizeof(double));
    run->eval_loss = malloc((size_t)capacity * sizeof(double));
    loco_status st = LOCO_OK;
    char *line = text;
    int line_no = 0;
    while (LOCO_OK == st && line < text + len) {
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        size_t n = NULL != end ? (size_t)(end - line) : (size_t)(text + len - line);
        line_no++;
        if (n > 0 && NULL != strstr(line, "\"event\":\"eval\"")) {
            loco_json_doc doc;
            if (LOCO_OK != loco_json_parse(&doc, line, n, NULL, NULL)) {
                st = loco_error_set(err, LOCO_ERR_FORMAT, "%s:%d: not a JSON object", path,
                                    line_no);
                break;
            }
            const loco_json_node *root = loco_json_root(&doc);
            if (run->n_eval == capacity) {
                capacity *= 2;
                run->eval_tokens = realloc(run->eval_tokens, (size_t)capacity * sizeof(double));
                run->eval_bytes = realloc(run->eval_bytes, (size_t)capacity * sizeof(double));
                run->eval_loss = realloc(run->eval_loss, (size_t)capacity * sizeof(double));
            }
            LOCO_ASSERT(NULL != run->eval_tokens && NULL != run->eval_bytes &&
                        NULL != run->eval_loss);
            run->eval_tokens[run->n_eval] = json_number_or(&doc, root, "tokens_total", NAN);
            run->eval_bytes[run->n_eval] = json_number_or(&doc, root, "bytes_sent", NAN);
            run->eval_loss[run->n_eval] = json_number_or(&doc, root, "val_loss", NAN);
            run->n_eval++;
            loco_json_free(&doc);
        }
        line += n + 1;
    }
    free(text);
    return st;
}

static void format_bytes(double bytes, char *out, size_t cap)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) {
        bytes /= 1024;
        u++;
    }
    snprintf(out, cap, u ? "%.2f %s" : "%.0f %s", bytes, units[u]);
}

static loco_status write_markdown(const run_summary *runs, int n, const char *path,
                                  loco_error *err)
{
    loco_atomic_file af;
    LOCO_TRY(loco_atomic_open(&af, path, err));
    FILE *out = af.fp;
    fprintf(out, "# loco report\n\n");
    fprintf(out, "Baseline for the ratio columns: `%s`.\n\n", runs[0].name);
    fprintf(out, "| run | strategy | workers | steps | tokens/worker | final train loss | "
                 "final val loss | val loss vs baseline | bytes sent/worker | bytes "
                 "received/worker | fewer bytes than baseline | replicas agree | wall s | status "
                 "|\n");
    fprintf(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|\n");
    for (int i = 0; i < n; i++) {
        const run_summary *r = &runs[i];
        char sent[32], received[32], ratio[32], delta[32];
        format_bytes(r->bytes_sent_per_worker, sent, sizeof sent);
        format_bytes(r->bytes_received_per_worker, received, sizeof received);
        if (r->bytes_sent_per_worker > 0 && runs[0].bytes_sent_per_worker > 0) {
            snprintf(ratio, sizeof ratio, "%.1fx",
                     runs[0].bytes_sent_per_worker / r->bytes_sent_per_worker);
        } else {
            snprintf(ratio, sizeof ratio, "n/a");
        }
        if (isfinite(r->final_val_loss) && isfinite(runs[0].final_val_loss)) {
            snprintf(delta, sizeof delta, "%+.2f%%",
                     100.0 * (r->final_val_loss / runs[0].final_val_loss - 1.0));
        } else {
            snprintf(delta, sizeof delta, "n/a");
        }
        fprintf(out, "| %s | %s | %d | %lld | %.0f | %.4f | %.4f | %s | %s | %s | %s | %s | %.1f | %s |\n",
                r->name, r->strategy, r->world, r->steps, r->tokens_per_worker, r->final_loss,
                r->final_val_loss, delta, sent, received, ratio, r->digest_agreement,
                r->wall_seconds, r->status);
    }
    fprintf(out, "\n![validation loss against tokens](val_loss_vs_tokens.png)\n\n"
                 "![validation loss against bytes sent per worker](val_loss_vs_bytes.png)\n");
    return loco_atomic_commit(&af, err);
}

static loco_status write_plots(const run_summary *runs, int n, const char *out_dir,
                               loco_error *err)
{
    loco_plot_series series[REPORT_MAX_RUNS];
    for (int i = 0; i < n; i++) {
        series[i] = (loco_plot_series){runs[i].name, runs[i].eval_tokens, runs[i].eval_loss,
                                       runs[i].n_eval};
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/val_loss_vs_tokens.png", out_dir);
    loco_plot by_tokens = {"Validation loss vs tokens", "tokens (all workers)", "val loss", false,
                           series, n};
    LOCO_TRY(loco_plot_png(&by_tokens, path, 900, 560, err));
    for (int i = 0; i < n; i++) {
        series[i].x = runs[i].eval_bytes;
    }
    snprintf(path, sizeof path, "%s/val_loss_vs_bytes.png", out_dir);
    loco_plot by_bytes = {"Validation loss vs bytes sent", "bytes sent per worker (log)",
                          "val loss", true, series, n};
    loco_status st = loco_plot_png(&by_bytes, path, 900, 560, err);
    if (LOCO_ERR_INVALID_ARG == st) {
        /* single-process runs send nothing: no byte axis to draw */
        loco_error_clear(err);
        return LOCO_OK;
    }
    return st;
}

static void report_usage(FILE *out)
{
    fprintf(out, "usage: loco report [--out DIR] RUN_DIR...\n\n"
                 "Compare training runs: writes DIR/report.md (a Markdown table: losses, tokens,\n"
                 "bytes sent and received per worker, ratios against the first run, replica\n"
                 "agreement) and PNG plots of validation loss against tokens and against bytes\n"
                 "sent. DIR defaults to the first run's directory followed by -report.\n");
}

int loco_cmd_report(int argc, char **argv)
{
    const char *out_dir = NULL;
    static const struct option options[] = {{"out", required_argument, NULL, 'o'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    int opt;
    optind = 1;
    while (-1 != (opt = getopt_long(argc, argv, "o:h", options, NULL))) {
        switch (opt) {
        case 'o': out_dir = optarg; break;
        case 'h': report_usage(stdout); return 0;
        default: report_usage(stderr); return 2;
        }
    }
    int n = argc - optind;
    if (n < 1 || n > REPORT_MAX_RUNS) {
        fprintf(stderr, "loco report: give 1 to %d run directories\n", REPORT_MAX_RUNS);
        report_usage(stderr);
        return 2;
    }
    run_summary *runs = calloc((size_t)n, sizeof *runs);
    if (NULL == runs) {
        return 1;
    }
    loco_error err = {0};
    loco_status st = LOCO_OK;
    for (int i = 0; LOCO_OK == st && i < n; i++) {
        snprintf(runs[i].dir, sizeof runs[i].dir, "%s", argv[optind + i]);
        size_t len = strlen(runs[i].dir);
        while (len > 1 && '/' == runs[i].dir[len - 1]) {
            runs[i].dir[--len] = '\0';
        }
        const char *base = strrchr(runs[i].dir, '/');
        snprintf(runs[i].name, sizeof runs[i].name, "%s", NULL != base ? base + 1 : runs[i].dir);
        st = read_run_json(&runs[i], &err);
        if (LOCO_OK == st) {
            st = read_eval_curve(&runs[i], &err);
        }
    }
    char default_out[1100];
    if (NULL == out_dir) {
        snprintf(default_out, sizeof default_out, "%s-report", runs[0].dir);
        out_dir = default_out;
    }
    char md[1200];
    snprintf(md, sizeof md, "%s/report.md", out_dir);
    if (LOCO_OK == st) {
        st = loco_mkdir_p(out_dir, &err);
    }
    if (LOCO_OK == st) {
        st = write_markdown(runs, n, md, &err);
    }
    if (LOCO_OK == st) {
        st = write_plots(runs, n, out_dir, &err);
    }
    for (int i = 0; i < n; i++) {
        free(runs[i].eval_tokens);
        free(runs[i].eval_bytes);
        free(runs[i].eval_loss);
    }
    free(runs);
    if (LOCO_OK != st) {
        fprintf(stderr, "loco report: %s\n", loco_error_msg(&err, st));
        return loco_status_exit_code(st);
    }
    printf("report: %s\n", md);
    return 0;
}
