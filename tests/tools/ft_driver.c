/* tests/tools/ft_driver.c — a DiLoCo-like training loop over the control plane, for the churn
 * tests (tests/test_ft_churn.sh) and the fault-tolerance measurements. Launched under
 * launch/loco-mpirun, or alone with --join HOST:PORT to join a running group.
 *
 *   ft_driver --out DIR [--join HOST:PORT] [--steps N] [--count N] [--sleep-ms MS]
 *             [--die-id ID[,ID]] [--die-step S] [--die-after-ms MS]   SIGKILL itself mid-allreduce
 *             [--leave-id ID --leave-step S]                          leave at a sync point
 *             [--heartbeat S] [--peer-timeout S] [--op-deadline S] [--adaptive]
 *             [--coordinator HOST:PORT] [--streams K] [--link SPEC]
 *
 * Every outer step: a sync point with the shared state {params, momentum, step, cursor} (joins,
 * leaves, parity), a local perturbation of the parameters (the "inner steps"), their average by
 * loco_allreduce — repeated after loco_comm_recover whenever a member was lost — and an outer
 * momentum update. SIGTERM makes the member leave at its next sync point.
 *
 * Output, per member id: DIR/member.ID.pid and .addr (its join address) once it is a member;
 * DIR/member.ID.log, one JSON line per event, flushed as it happens:
 *   {"event": "op", "t", "epoch", "seq", "step", "world", "status", "digest", "seconds"}
 *   {"event": "recover", "t_fail", "t", "epoch", "world", "status"}
 *   {"event": "sync", "t", "step", "epoch", "world", "joined", "left", "repaired", "bytes",
 *    "seconds", "note"}
 *   {"event": "step", "t", "step", "seconds"}   {"event": "die", "t"}
 * and at the end DIR/member.ID.json: {"id", "outcome" (finished|left|evicted|failed), "step",
 * "world", "epoch", "digest", "counts": {...}, "retries", "recoveries", "committed", "aborted",
 * "failovers"}. Times "t" are wall-clock seconds (CLOCK_REALTIME), comparable across processes.
 * Exit code 0 for finished/left/evicted, 1 on a failure.
 */
#include "base/base.h"
#include "collectives/membership.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct driver {
    const char *out;
    uint64_t retries; /* allreduces repeated after a recovery */
    int steps, sleep_ms, die_step, die_after_ms, leave_id, leave_step;
    int die_ids[4], ndie;
    size_t count;
    FILE *log;
    uint32_t id;
} driver;

static volatile sig_atomic_t g_term; /* SIGTERM: leave at the next sync point */

static void on_term(int sig)
{
    (void)sig;
    g_term = 1;
}

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double arg_seconds(const char *v)
{
    double s = 0;
    if (LOCO_OK != loco_parse_duration(v, &s, NULL)) {
        fprintf(stderr, "ft_driver: bad duration '%s'\n", v);
        exit(2);
    }
    return s;
}

static int parse_args(int argc, char **argv, driver *d, loco_comm_config *cfg)
{
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (0 == strcmp(k, "--adaptive")) {
            cfg->ft.adaptive_deadline = true;
            continue;
        }
        if (NULL == v) {
            fprintf(stderr, "ft_driver: %s needs a value\n", k);
            return 2;
        }
        i++;
        if (0 == strcmp(k, "--out")) {
            d->out = v;
        } else if (0 == strcmp(k, "--join")) {
            cfg->bootstrap = LOCO_BOOTSTRAP_ADMIT;
            snprintf(cfg->join, sizeof cfg->join, "%s", v);
        } else if (0 == strcmp(k, "--steps")) {
            d->steps = atoi(v);
        } else if (0 == strcmp(k, "--count")) {
            double c = 0;
            loco_parse_bytes(v, &c, NULL);
            d->count = (size_t)c;
        } else if (0 == strcmp(k, "--sleep-ms")) {
            d->sleep_ms = atoi(v);
        } else if (0 == strcmp(k, "--die-id")) {
            char buf[64];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *t = strtok(buf, ","); NULL != t && d->ndie < 4; t = strtok(NULL, ",")) {
                d->die_ids[d->ndie++] = atoi(t);
            }
        } else if (0 == strcmp(k, "--die-step")) {
            d->die_step = atoi(v);
        } else if (0 == strcmp(k, "--die-after-ms")) {
            d->die_after_ms = atoi(v);
        } else if (0 == strcmp(k, "--leave-id")) {
            d->leave_id = atoi(v);
        } else if (0 == strcmp(k, "--leave-step")) {
            d->leave_step = atoi(v);
        } else if (0 == strcmp(k, "--heartbeat")) {
            cfg->heartbeat_s = arg_seconds(v);
        } else if (0 == strcmp(k, "--peer-timeout")) {
            cfg->peer_timeout_s = arg_seconds(v);
        } else if (0 == strcmp(k, "--op-deadline")) {
            cfg->ft.op_deadline_s = arg_seconds(v);
        } else if (0 == strcmp(k, "--coordinator")) {
            cfg->ft.coordinator = LOCO_COORD_EXTERNAL;
            snprintf(cfg->ft.coordinator_addr, sizeof cfg->ft.coordinator_addr, "%s", v);
        } else if (0 == strcmp(k, "--streams")) {
            cfg->streams = atoi(v);
        } else if (0 == strcmp(k, "--link")) {
            if (LOCO_OK != loco_parse_link(v, &cfg->link, NULL)) {
                fprintf(stderr, "ft_driver: bad link '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "ft_driver: unknown option %s\n", k);
            return 2;
        }
    }
    if (NULL == d->out) {
        fprintf(stderr, "ft_driver: --out DIR is required\n");
        return 2;
    }
    return 0;
}

/* ---- the shared state ----------------------------------------------------------------------- */

typedef struct shared {
    float *params;   /* (count) */
    float *momentum; /* (count) outer momentum */
    uint64_t step, cursor;
    loco_state_buffer bufs[4];
} shared;

static void shared_init(shared *s, size_t n)
{
    s->params = malloc(n * sizeof *s->params);
    s->momentum = calloc(n, sizeof *s->momentum);
    for (size_t i = 0; i < n; i++) {
        uint32_t r[4];
        loco_rng_block(1, 0, i, r);
        s->params[i] = loco_u32_to_unit(r[0]) - 0.5f;
    }
    s->step = s->cursor = 0;
    s->bufs[0] = (loco_state_buffer){"params", s->params, n * sizeof(float)};
    s->bufs[1] = (loco_state_buffer){"outer_momentum", s->momentum, n * sizeof(float)};
    s->bufs[2] = (loco_state_buffer){"step", &s->step, sizeof s->step};
    s->bufs[3] = (loco_state_buffer){"data_cursor", &s->cursor, sizeof s->cursor};
}

static uint64_t shared_digest(const shared *s)
{
    loco_hasher h;
    loco_hasher_init(&h, 0);
    for (int b = 0; b < 4; b++) {
        loco_hasher_update(&h, s->bufs[b].ptr, s->bufs[b].bytes);
    }
    return loco_hasher_final(&h);
}

/* ---- events --------------------------------------------------------------------------------- */

static void open_log(driver *d, loco_comm_t comm)
{
    char path[4096], text[300];
    snprintf(path, sizeof path, "%s/member.%u.log", d->out, d->id);
    d->log = fopen(path, "a");
    snprintf(path, sizeof path, "%s/member.%u.pid", d->out, d->id);
    int n = snprintf(text, sizeof text, "%d\n", (int)getpid());
    loco_file_write_atomic(path, text, (size_t)n, NULL);
    char addr[256];
    loco_comm_join_address(comm, addr, sizeof addr);
    snprintf(path, sizeof path, "%s/member.%u.addr", d->out, d->id);
    n = snprintf(text, sizeof text, "%s\n", addr);
    loco_file_write_atomic(path, text, (size_t)n, NULL);
}

static void log_op(driver *d, loco_comm_t comm, uint64_t step, loco_status st,
                   const loco_op_info *info)
{
    char hex[17];
    loco_hash_hex(info->digest, hex);
    fprintf(d->log, "{\"event\": \"op\", \"t\": %.6f, \"epoch\": %u, \"seq\": %llu, "
                    "\"step\": %llu, \"world\": %d, \"status\": \"%s\", \"digest\": \"%s\", "
                    "\"seconds\": %.6f}\n",
            wall(), info->epoch, (unsigned long long)info->seq, (unsigned long long)step,
            loco_comm_size(comm), loco_status_str(st), hex, info->duration_s);
    fflush(d->log);
}

static void log_sync(driver *d, uint64_t step, const loco_reconf_report *r)
{
    fprintf(d->log, "{\"event\": \"sync\", \"t\": %.6f, \"step\": %llu, \"epoch\": %u, "
                    "\"world\": %d, \"joined\": %d, \"left\": %d, \"repaired\": %d, "
                    "\"bytes\": %llu, \"seconds\": %.6f, \"transfer_seconds\": %.6f}\n",
            wall(), (unsigned long long)step, r->epoch, r->world, r->n_joined, r->n_left,
            r->n_repaired, (unsigned long long)(r->state_bytes_received + r->state_bytes_sent),
            r->seconds, r->transfer_seconds);
    fflush(d->log);
}

static bool dies_here(const driver *d, int step)
{
    for (int k = 0; k < d->ndie; k++) {
        if ((uint32_t)d->die_ids[k] == d->id && step == d->die_step) {
            return true;
        }
    }
    return false;
}

/* The average of the members' perturbed parameters, recovering and repeating on a loss. */
static loco_status outer_allreduce(driver *d, loco_comm_t comm, shared *s, float *delta)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        for (size_t i = 0; i < d->count; i++) { /* "inner steps": a member-specific nudge */
            uint32_t r[4];
            loco_rng_block(7, d->id, s->step * d->count + i, r);
            delta[i] = s->params[i] + 1e-3f * (loco_u32_to_unit(r[0]) - 0.5f);
        }
        loco_op_info info;
        loco_status st;
        if (0 == attempt && dies_here(d, (int)s->step)) {
            loco_request_t req = NULL;
            st = loco_iallreduce(comm, delta, delta, d->count, LOCO_DTYPE_F32, LOCO_REDUCE_AVG,
                                 &req);
            usleep((useconds_t)(1000 * d->die_after_ms));
            fprintf(d->log, "{\"event\": \"die\", \"t\": %.6f}\n", wall());
            fflush(d->log);
            kill(getpid(), SIGKILL);
            st = loco_wait(&req, &info);
        } else {
            st = loco_allreduce(comm, delta, delta, d->count, LOCO_DTYPE_F32, LOCO_REDUCE_AVG,
                                &info);
        }
        log_op(d, comm, s->step, st, &info);
        if (LOCO_ERR_PEER_LOST != st) {
            return st;
        }
        double t_fail = wall();
        loco_reconf_report rep;
        loco_status rs = loco_comm_recover(comm, &rep);
        fprintf(d->log, "{\"event\": \"recover\", \"t_fail\": %.6f, \"t\": %.6f, \"epoch\": %u, "
                        "\"world\": %d, \"status\": \"%s\"}\n",
                t_fail, wall(), rep.epoch, rep.world, loco_status_str(rs));
        fflush(d->log);
        if (LOCO_OK != rs) {
            return rs;
        }
        d->retries++;
    }
    return LOCO_ERR_PEER_LOST;
}

static void write_result(driver *d, loco_comm_t comm, const shared *s, const char *outcome)
{
    loco_ft_totals t;
    loco_comm_get_ft_totals(comm, &t);
    char path[4096], hex[17];
    snprintf(path, sizeof path, "%s/member.%u.json", d->out, d->id);
    loco_hash_hex(shared_digest(s), hex);
    FILE *fp = fopen(path, "w");
    if (NULL == fp) {
        return;
    }
    fprintf(fp, "{\"id\": %u, \"outcome\": \"%s\", \"step\": %llu, \"world\": %d, \"epoch\": %u, "
                "\"digest\": \"%s\", \"counts\": {\"started\": %u, \"died\": %u, "
                "\"evicted\": %u, \"joined\": %u, \"left\": %u}, \"retries\": %llu, "
                "\"recoveries\": %llu, \"committed\": %llu, \"aborted\": %llu, "
                "\"failovers\": %u, \"sync_points\": %llu}\n",
            d->id, outcome, (unsigned long long)s->step, loco_comm_size(comm),
            loco_comm_epoch(comm), hex, t.counts.started, t.counts.died, t.counts.evicted,
            t.counts.joined, t.counts.left, (unsigned long long)d->retries,
            (unsigned long long)t.recoveries, (unsigned long long)t.ops_committed,
            (unsigned long long)t.ops_aborted, t.failovers, (unsigned long long)t.sync_points);
    fclose(fp);
    printf("ft_driver: member %u %s at step %llu: world %d, digest %s\n", d->id, outcome,
           (unsigned long long)s->step, loco_comm_size(comm), hex);
}

int main(int argc, char **argv)
{
    driver d = {.steps = 10, .count = 1 << 16, .die_step = -1, .die_after_ms = 5,
                .leave_id = -1, .leave_step = -1};
    loco_comm_config cfg = LOCO_COMM_CONFIG_INIT;
    cfg.heartbeat_s = 0.1;
    cfg.peer_timeout_s = 1.0;
    cfg.ft.op_deadline_s = 5.0;
    cfg.ft.sync_timeout_s = 60;
    cfg.ft.join_timeout_s = 60;
    int rc = parse_args(argc, argv, &d, &cfg);
    if (0 != rc) {
        return rc;
    }
    loco_error err = {0};
    loco_mkdir_p(d.out, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    loco_comm_t comm = NULL;
    loco_status st = loco_comm_init(&comm, &cfg, &err);
    if (LOCO_OK != st) {
        fprintf(stderr, "ft_driver: %s\n", loco_error_msg(&err, st));
        return 1;
    }
    d.id = loco_comm_member_id(comm);
    char prefix[16];
    snprintf(prefix, sizeof prefix, "m%u", d.id);
    loco_log_set_prefix(prefix);
    shared s;
    shared_init(&s, d.count);
    float *delta = malloc(d.count * sizeof *delta);
    const char *outcome = "finished";
    bool finished = true;
    if (loco_comm_admitted(comm)) {
        open_log(&d, comm);
    }
    while (s.step < (uint64_t)d.steps) {
        double t0 = wall();
        loco_sync_options opt = {.leave = g_term || ((int)d.id == d.leave_id &&
                                                     (int)s.step == d.leave_step)};
        loco_reconf_report rep;
        bool joining = !loco_comm_admitted(comm);
        st = loco_comm_sync_point(comm, s.step, s.bufs, 4, &opt, &rep);
        if (joining && LOCO_OK == st) {
            open_log(&d, comm); /* a joiner has its id and address now */
        }
        if (NULL != d.log) {
            log_sync(&d, s.step, &rep);
        }
        if (LOCO_OK != st) {
            outcome = rep.left ? "left" : rep.evicted ? "evicted" : "failed";
            finished = false;
            break;
        }
        usleep((useconds_t)(1000 * d.sleep_ms));
        st = outer_allreduce(&d, comm, &s, delta);
        if (LOCO_OK != st) {
            outcome = LOCO_ERR_ABORTED == st ? "evicted" : "failed";
            finished = false;
            fprintf(stderr, "ft_driver: member %u: %s: %s\n", d.id, loco_status_str(st),
                    loco_comm_error(comm));
            break;
        }
        for (size_t i = 0; i < d.count; i++) { /* outer step: momentum on the averaged move */
            float g = delta[i] - s.params[i];
            s.momentum[i] = 0.9f * s.momentum[i] + g;
            s.params[i] += s.momentum[i];
        }
        s.step++;
        s.cursor += 4096;
        fprintf(d.log, "{\"event\": \"step\", \"t\": %.6f, \"step\": %llu, \"seconds\": %.6f}\n",
                wall(), (unsigned long long)s.step, wall() - t0);
        fflush(d.log);
    }
    if (finished) { /* a last sync point: everyone leaves together */
        loco_reconf_report rep;
        loco_comm_sync_point(comm, s.step, s.bufs, 4, NULL, &rep);
    }
    write_result(&d, comm, &s, outcome);
    if (NULL != d.log) {
        fclose(d.log);
    }
    loco_comm_free(comm);
    free(delta);
    free(s.params);
    free(s.momentum);
    return !finished && 0 == strcmp(outcome, "failed") ? 1 : 0;
}
