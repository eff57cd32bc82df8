/* src/train_output.c — what `loco train` reports: the progress line (rank 0), records in
 * metrics.jsonl (every worker: "step", "sync", "nonfinite", and on the control plane "recover",
 * "resumed", "membership"; rank 0: "eval"), run.json (the last rank 0, with every finishing
 * worker's totals and digests and the run's membership counts) and member.ID.json (every
 * worker's own outcome). Bytes are the communicator's exact counts (loco_comm_get_totals: every
 * byte on the wire, heartbeats included; "payload" = collective payloads only). Records of the
 * control plane carry "wall" (seconds since the Unix epoch): comparable across workers. */
#include "src/train_impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static loco_comm_totals totals_of(const worker *w)
{
    loco_comm_totals t;
    memset(&t, 0, sizeof t);
    if (NULL != w->comm) {
        loco_comm_get_totals(w->comm, &t);
    }
    return t;
}

static loco_ft_totals ft_totals_of(const worker *w)
{
    loco_ft_totals t;
    memset(&t, 0, sizeof t);
    if (w->ft) {
        loco_comm_get_ft_totals(w->comm, &t);
    }
    return t;
}

static uint64_t eval_digest(worker *w)
{
    const float *p = loco_sync_eval_params(w->sync, loco_model_params(w->model));
    return loco_hash64(p, loco_model_num_params(w->model) * sizeof(float), 0);
}

/* ---------------------------------------------------------------------------------------------
 * Progress line */

static void format_eta(double seconds, char *out, size_t cap)
{
    if (!isfinite(seconds) || seconds < 0) {
        snprintf(out, cap, "?");
    } else if (seconds < 60) {
        snprintf(out, cap, "%.0fs", seconds);
    } else if (seconds < 3600) {
        snprintf(out, cap, "%dm%02ds", (int)seconds / 60, (int)seconds % 60);
    } else {
        snprintf(out, cap, "%dh%02dm", (int)seconds / 3600, (int)seconds % 3600 / 60);
    }
}

void train_show_progress(worker *w, double tokens_per_s, bool final)
{
    if (0 != w->rank) {
        return;
    }
    double elapsed = loco_now_s() - w->start_s;
    double remaining = (double)(w->cfg.train.steps - w->step);
    double per_step = w->step > 0 ? elapsed / (double)w->step : NAN;
    char eta[32];
    format_eta(remaining * per_step, eta, sizeof eta);
    char val[32] = "", net[64] = "";
    if (isfinite(w->last_val_loss)) {
        snprintf(val, sizeof val, " | val %.4f", w->last_val_loss);
    }
    if (NULL != w->comm) {
        loco_comm_totals t = totals_of(w);
        snprintf(net, sizeof net, " | sent %.1f MiB", (double)t.bytes_sent / 1048576.0);
    }
    char line[256];
    snprintf(line, sizeof line, "step %lld/%d | loss %.4f%s | %.0f tok/s%s | ETA %s",
             (long long)w->step, w->cfg.train.steps, w->last_loss, val, tokens_per_s, net, eta);
    if (w->tty) {
        fprintf(stderr, "\r\033[K%s%s", line, final ? "\n" : "");
    } else {
        LOCO_INFO("%s", line);
    }
}

/* ---------------------------------------------------------------------------------------------
 * metrics.jsonl */

static void write_bytes(loco_json_writer *jw, const worker *w)
{
    loco_comm_totals t = totals_of(w);
    loco_json_key(jw, "bytes_sent");
    loco_json_uint(jw, t.bytes_sent);
    loco_json_key(jw, "bytes_received");
    loco_json_uint(jw, t.bytes_received);
    loco_json_key(jw, "payload_sent");
    loco_json_uint(jw, t.payload_sent);
    loco_json_key(jw, "payload_received");
    loco_json_uint(jw, t.payload_received);
}

loco_status train_log_step(worker *w, float lr, double grad_norm, double tokens_per_s)
{
    loco_json_writer *jw = loco_metrics_begin(&w->metrics, "step");
    loco_json_key(jw, "step");
    loco_json_int(jw, w->step);
    loco_json_key(jw, "loss");
    loco_json_number(jw, w->last_loss);
    loco_json_key(jw, "lr");
    loco_json_number(jw, lr);
    loco_json_key(jw, "grad_norm");
    loco_json_number(jw, grad_norm);
    loco_json_key(jw, "tokens");
    loco_json_number(jw, w->tokens);
    loco_json_key(jw, "tokens_per_s");
    loco_json_number(jw, tokens_per_s);
    write_bytes(jw, w);
    loco_json_key(jw, "comm_wait_s");
    loco_json_number(jw, w->comm_wait_s);
    loco_json_key(jw, "epoch");
    loco_json_uint(jw, NULL != w->comm ? loco_comm_epoch(w->comm) : 0);
    loco_json_key(jw, "world");
    loco_json_int(jw, w->world);
    loco_json_key(jw, "member");
    loco_json_uint(jw, w->member_id);
    loco_json_key(jw, "retries");
    loco_json_int(jw, w->retries);
    loco_json_key(jw, "step_seconds");
    loco_json_number(jw, w->last_step_s);
    loco_json_key(jw, "data_epoch");
    loco_json_uint(jw, w->loader.epoch);
    return loco_metrics_end(&w->metrics);
}

loco_status train_log_eval(worker *w)
{
    if (0 != w->rank) {
        return LOCO_OK; /* the same number on every worker: one record */
    }
    loco_json_writer *jw = loco_metrics_begin(&w->metrics, "eval");
    loco_json_key(jw, "step");
    loco_json_int(jw, w->step);
    loco_json_key(jw, "val_loss");
    loco_json_number(jw, w->last_val_loss);
    loco_json_key(jw, "tokens");
    loco_json_number(jw, w->tokens);
    loco_json_key(jw, "tokens_total");
    loco_json_number(jw, w->tokens * w->world);
    write_bytes(jw, w);
    loco_json_key(jw, "eval_s");
    loco_json_number(jw, w->eval_s);
    loco_json_key(jw, "train_s");
    loco_json_number(jw, loco_now_s() - w->start_s - w->eval_s);
    return loco_metrics_end(&w->metrics);
}

loco_status train_log_nonfinite(worker *w, double loss, double grad_norm)
{
    loco_json_writer *jw = loco_metrics_begin(&w->metrics, "nonfinite");
    loco_json_key(jw, "step");
    loco_json_int(jw, w->step);
    loco_json_key(jw, "loss");
    loco_json_number(jw, loss);
    loco_json_key(jw, "grad_norm");
    loco_json_number(jw, grad_norm);
    loco_json_key(jw, "skipped_total");
    loco_json_int(jw, w->nonfinite);
    return loco_metrics_end(&w->metrics);
}

loco_status train_log_sync(worker *w, const loco_sync_step_out *out, const char *kind)
{
    char digest[17];
    loco_hash_hex(loco_sync_shared_digest(w->sync), digest);
    loco_json_writer *jw = loco_metrics_begin(&w->metrics, "sync");
    loco_json_key(jw, "step");
    loco_json_int(jw, w->step);
    loco_json_key(jw, "kind");
    loco_json_string(jw, kind);
    loco_json_key(jw, "sync");
    loco_json_int(jw, w->syncs);
    loco_json_key(jw, "fragment");
    loco_json_int(jw, out->fragment);
    loco_json_key(jw, "h");
    loco_json_int(jw, out->h);
    loco_json_key(jw, "op_bytes_sent");
    loco_json_uint(jw, out->sync_bytes_sent);
    loco_json_key(jw, "op_bytes_received");
    loco_json_uint(jw, out->sync_bytes_received);
    loco_json_key(jw, "wait_s");
    loco_json_number(jw, out->comm_wait_s);
    write_bytes(jw, w);
    loco_json_key(jw, "state_digest");
    loco_json_string(jw, digest);
    return loco_metrics_end(&w->metrics);
}

static void write_membership_fields(loco_json_writer *jw, const worker *w)
{
    loco_json_key(jw, "member");
    loco_json_uint(jw, w->member_id);
    loco_json_key(jw, "wall");
    loco_json_number(jw, loco_wall_s());
    loco_json_key(jw, "epoch");
    loco_json_uint(jw, loco_comm_epoch(w->comm));
    loco_json_key(jw, "world");
    loco_json_int(jw, w->world);
}

loco_status train_log_recover(worker *w, const loco_reconf_report *rep, double fail_wall_s,
                              const char *cause)
{
    loco_json_writer *jw = loco_metrics_begin(&w->metrics, "recover");
    loco_json_key(jw, "step");
    loco_json_int(jw, w->step);
    write_membership_fields(jw, w);
    loco_json_key(jw, "fail_wall");
    loco_json_number(jw, fail_wall_s);
    loco_json_key(jw, "seconds");
    loco_json_number(jw, rep->seconds);
    loco_json_key(jw, "retries");
    loco_json_int(jw, w->retries);
    loco_json_key(jw, "cause");
    loco_json_string(jw, cause);
    return loco_metrics_end(&w->metrics);
}

loco_status train_log_resumed(worker *w)
{
    loco_json_writer *jw = loco_metrics_begin(&w->metrics, "resumed");
    loco_json_key(jw, "step");
    loco_json_int(jw, w->step);
    write_membership_fields(jw, w);
    loco_json_key(jw, "fail_wall");
    loco_json_number(jw, w->fail_wall_s);
    loco_json_key(jw, "step_retries");
    loco_json_int(jw, w->step_retries);
    loco_json_key(jw, "step_seconds");
    loco_json_number(jw, w->last_step_s);
    return loco_metrics_end(&w->metrics);
}

loco_status train_log_membership(worker *w, const loco_reconf_report *rep)
{
    loco_json_writer *jw = loco_metrics_begin(&w->metrics, "membership");
    loco_json_key(jw, "step");
    loco_json_int(jw, w->step);
    write_membership_fields(jw, w);
    loco_json_key(jw, "joined_here");
    loco_json_bool(jw, rep->joined);
    loco_json_key(jw, "repaired");
    loco_json_bool(jw, rep->repaired);
    loco_json_key(jw, "n_joined");
    loco_json_int(jw, rep->n_joined);
    loco_json_key(jw, "n_left");
    loco_json_int(jw, rep->n_left);
    loco_json_key(jw, "n_removed");
    loco_json_int(jw, rep->n_removed);
    loco_json_key(jw, "n_repaired");
    loco_json_int(jw, rep->n_repaired);
    loco_json_key(jw, "state_bytes_received");
    loco_json_uint(jw, rep->state_bytes_received);
    loco_json_key(jw, "state_bytes_sent");
    loco_json_uint(jw, rep->state_bytes_sent);
    loco_json_key(jw, "seconds");
    loco_json_number(jw, rep->seconds);
    loco_json_key(jw, "note");
    loco_json_string(jw, rep->note);
    return loco_metrics_end(&w->metrics);
}

/* ---------------------------------------------------------------------------------------------
 * run.json */

void train_summary(worker *w, worker_summary *out)
{
    memset(out, 0, sizeof *out);
    loco_comm_totals t = totals_of(w);
    out->rank = w->rank;
    out->steps = w->step;
    out->nonfinite = w->nonfinite;
    out->syncs = w->syncs;
    out->bytes_sent = t.bytes_sent;
    out->bytes_received = t.bytes_received;
    out->payload_sent = t.payload_sent;
    out->payload_received = t.payload_received;
    out->retransmits = t.retransmits;
    if (NULL != w->model && NULL != w->sync) {
        out->param_digest = eval_digest(w);
        out->state_digest = loco_sync_shared_digest(w->sync);
    }
    out->tokens = w->tokens;
    out->final_loss = w->last_loss;
    out->comm_wait_s = w->comm_wait_s;
    loco_ft_totals ft = ft_totals_of(w);
    out->member_id = w->member_id;
    out->epoch = NULL != w->comm ? loco_comm_epoch(w->comm) : 0;
    out->retries = w->retries;
    out->recoveries = ft.recoveries;
    out->ops_committed = ft.ops_committed;
    out->ops_aborted = ft.ops_aborted;
    out->repairs = ft.repairs;
    out->epochs = ft.epochs;
    out->sync_points = ft.sync_points;
    out->failovers = ft.failovers;
    out->recover_seconds = ft.recover_seconds;
}

/* The control plane's part of a worker's record. */
static void write_ft_fields(loco_json_writer *jw, const worker_summary *s)
{
    loco_json_key(jw, "member_id");
    loco_json_int(jw, s->member_id);
    loco_json_key(jw, "epoch");
    loco_json_int(jw, s->epoch);
    loco_json_key(jw, "retries");
    loco_json_int(jw, s->retries);
    loco_json_key(jw, "recoveries");
    loco_json_uint(jw, s->recoveries);
    loco_json_key(jw, "ops_committed");
    loco_json_uint(jw, s->ops_committed);
    loco_json_key(jw, "ops_aborted");
    loco_json_uint(jw, s->ops_aborted);
    loco_json_key(jw, "repairs");
    loco_json_uint(jw, s->repairs);
    loco_json_key(jw, "epochs");
    loco_json_uint(jw, s->epochs);
    loco_json_key(jw, "sync_points");
    loco_json_uint(jw, s->sync_points);
    loco_json_key(jw, "failovers");
    loco_json_uint(jw, s->failovers);
    loco_json_key(jw, "recover_seconds");
    loco_json_number(jw, s->recover_seconds);
}

static void write_membership_counts(loco_json_writer *jw, const worker *w)
{
    loco_ft_totals t = ft_totals_of(w);
    if (!w->ft) {
        t.counts.started = (uint32_t)w->world;
    }
    loco_json_key(jw, "membership");
    loco_json_begin_object(jw);
    loco_json_key(jw, "started");
    loco_json_uint(jw, t.counts.started);
    loco_json_key(jw, "died");
    loco_json_uint(jw, t.counts.died);
    loco_json_key(jw, "evicted");
    loco_json_uint(jw, t.counts.evicted);
    loco_json_key(jw, "joined");
    loco_json_uint(jw, t.counts.joined);
    loco_json_key(jw, "left");
    loco_json_uint(jw, t.counts.left);
    loco_json_end_object(jw);
}

static void write_worker(loco_json_writer *jw, const worker_summary *s)
{
    char digest[17], state[17];
    loco_hash_hex(s->param_digest, digest);
    loco_hash_hex(s->state_digest, state);
    loco_json_begin_object(jw);
    loco_json_key(jw, "rank");
    loco_json_int(jw, s->rank);
    loco_json_key(jw, "steps");
    loco_json_int(jw, s->steps);
    loco_json_key(jw, "tokens");
    loco_json_number(jw, s->tokens);
    loco_json_key(jw, "final_loss");
    loco_json_number(jw, s->final_loss);
    loco_json_key(jw, "nonfinite_steps");
    loco_json_int(jw, s->nonfinite);
    loco_json_key(jw, "syncs");
    loco_json_int(jw, s->syncs);
    loco_json_key(jw, "bytes_sent");
    loco_json_uint(jw, s->bytes_sent);
    loco_json_key(jw, "bytes_received");
    loco_json_uint(jw, s->bytes_received);
    loco_json_key(jw, "payload_sent");
    loco_json_uint(jw, s->payload_sent);
    loco_json_key(jw, "payload_received");
    loco_json_uint(jw, s->payload_received);
    loco_json_key(jw, "retransmits");
    loco_json_uint(jw, s->retransmits);
    loco_json_key(jw, "comm_wait_s");
    loco_json_number(jw, s->comm_wait_s);
    loco_json_key(jw, "param_digest");
    loco_json_string(jw, digest);
    loco_json_key(jw, "state_digest");
    loco_json_string(jw, state);
    write_ft_fields(jw, s);
    loco_json_end_object(jw);
}

static void write_sync_settings(loco_json_writer *jw, const loco_sync_params *p)
{
    loco_json_key(jw, "sync");
    loco_json_begin_object(jw);
    loco_json_key(jw, "strategy");
    loco_json_string(jw, loco_sync_strategy_name(p->strategy));
    loco_json_key(jw, "codec");
    loco_json_string(jw, loco_codec_name(p->compress ? p->codec.id : LOCO_CODEC_NONE));
    loco_json_key(jw, "ef");
    loco_json_string(jw, loco_ef_mode_name(p->ef.mode));
    if (LOCO_SYNC_DILOCO == p->strategy || LOCO_SYNC_STREAMING == p->strategy) {
        loco_json_key(jw, "h");
        loco_json_int(jw, p->h);
        loco_json_key(jw, "h_schedule");
        loco_json_string(jw, LOCO_H_QSR == p->h_schedule ? "qsr" : "fixed");
        loco_json_key(jw, "outer_lr");
        loco_json_number(jw, p->outer_lr);
        loco_json_key(jw, "outer_momentum");
        loco_json_number(jw, p->outer_momentum);
        loco_json_key(jw, "delay");
        loco_json_int(jw, p->delay);
    }
    if (LOCO_SYNC_STREAMING == p->strategy) {
        loco_json_key(jw, "fragments");
        loco_json_int(jw, p->fragments);
        loco_json_key(jw, "overlap");
        loco_json_int(jw, p->overlap);
        loco_json_key(jw, "mix_alpha");
        loco_json_number(jw, p->mix_alpha);
    }
    loco_json_end_object(jw);
}

loco_status train_write_run_json(worker *w, loco_status outcome, const loco_error *failure,
                                 const worker_summary *summaries, int n_summaries,
                                 loco_error *err)
{
    char path[LOCO_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/run.json", w->cfg.run.dir);
    loco_atomic_file af;
    LOCO_TRY(loco_atomic_open(&af, path, err));
    loco_json_writer jw;
    loco_json_writer_init(&jw, af.fp, true);
    loco_json_begin_object(&jw);
    loco_json_key(&jw, "loco_version");
    loco_json_string(&jw, LOCO_VERSION_STRING);
    loco_json_key(&jw, "config");
    loco_json_string(&jw, w->cfg.file);
    loco_json_key(&jw, "status");
    loco_json_string(&jw, LOCO_OK == outcome ? "ok" : loco_status_str(outcome));
    loco_json_key(&jw, "exit_code");
    loco_json_int(&jw, loco_status_exit_code(outcome));
    if (LOCO_OK != outcome) {
        loco_json_key(&jw, "error");
        loco_json_string(&jw, loco_error_msg(failure, outcome));
    }
    loco_json_key(&jw, "strategy");
    loco_json_string(&jw, loco_sync_strategy_name(w->cfg.sync.strategy));
    write_sync_settings(&jw, &w->cfg.sync);
    loco_json_key(&jw, "world_size");
    loco_json_int(&jw, w->world);
    loco_json_key(&jw, "steps");
    loco_json_int(&jw, w->step);
    loco_json_key(&jw, "tokens_per_worker");
    loco_json_number(&jw, w->tokens);
    loco_json_key(&jw, "nonfinite_steps");
    loco_json_int(&jw, w->nonfinite);
    loco_json_key(&jw, "final_loss");
    loco_json_number(&jw, w->last_loss);
    loco_json_key(&jw, "final_val_loss");
    loco_json_number(&jw, w->last_val_loss);
    loco_json_key(&jw, "wall_seconds");
    loco_json_number(&jw, loco_now_s() - w->start_s);
    loco_json_key(&jw, "eval_seconds");
    loco_json_number(&jw, w->eval_s);
    loco_json_key(&jw, "params");
    loco_json_uint(&jw, NULL != w->model ? loco_model_num_params(w->model) : 0);
    loco_json_key(&jw, "workers");
    loco_json_begin_array(&jw);
    for (int i = 0; i < n_summaries; i++) {
        write_worker(&jw, &summaries[i]);
    }
    loco_json_end_array(&jw);
    write_membership_counts(&jw, w);
    loco_json_key(&jw, "epoch");
    loco_json_uint(&jw, NULL != w->comm ? loco_comm_epoch(w->comm) : 0);
    loco_json_end_object(&jw);
    return loco_atomic_commit(&af, err);
}

loco_status train_write_member_json(worker *w, loco_status outcome, const loco_error *failure,
                                    loco_error *err)
{
    char path[LOCO_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/member.%u.json", w->cfg.run.dir, w->member_id);
    loco_atomic_file af;
    LOCO_TRY(loco_atomic_open(&af, path, err));
    loco_json_writer jw;
    loco_json_writer_init(&jw, af.fp, true);
    worker_summary s;
    train_summary(w, &s);
    loco_json_begin_object(&jw);
    loco_json_key(&jw, "outcome");
    loco_json_string(&jw, w->outcome);
    bool left = 0 == strcmp(w->outcome, "left");
    loco_json_key(&jw, "exit_code");
    loco_json_int(&jw, left ? 0 : loco_status_exit_code(outcome));
    if (LOCO_OK != outcome) {
        loco_json_key(&jw, "error");
        loco_json_string(&jw, loco_error_msg(failure, outcome));
    }
    loco_json_key(&jw, "rank");
    loco_json_int(&jw, w->rank);
    loco_json_key(&jw, "world");
    loco_json_int(&jw, w->world);
    loco_json_key(&jw, "steps");
    loco_json_int(&jw, w->step);
    loco_json_key(&jw, "tokens");
    loco_json_number(&jw, w->tokens);
    char digest[17], state[17];
    loco_hash_hex(s.param_digest, digest);
    loco_hash_hex(s.state_digest, state);
    loco_json_key(&jw, "param_digest");
    loco_json_string(&jw, digest);
    loco_json_key(&jw, "state_digest");
    loco_json_string(&jw, state);
    write_ft_fields(&jw, &s);
    write_membership_counts(&jw, w);
    loco_json_end_object(&jw);
    return loco_atomic_commit(&af, err);
}
