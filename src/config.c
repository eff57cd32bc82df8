/* src/config.c — YAML configuration: schema, loader, overrides, validation (see config.h).
 *
 * Reading happens in two passes. First libyaml's event stream is turned into a small tree of
 * nodes (mapping / sequence / scalar, each with its line and column), refusing aliases, deep
 * nesting, long scalars and too many nodes. Then the tree is walked against the schema: every
 * leaf must be a known dotted key ("model.n_layer") and convert to its type and range.
 */
#include "src/config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define CONFIG_MAX_FILE_BYTES (1u << 20)
#define CONFIG_MAX_DEPTH 16
#define CONFIG_MAX_NODES 20000
#define CONFIG_MAX_SCALAR 4096

/* =============================================================================================
 * Schema */

typedef enum key_type {
    KEY_INT,
    KEY_U64,
    KEY_FLOAT,
    KEY_BOOL,
    KEY_STRING,
    KEY_ENUM,
    KEY_INT_LIST,
    KEY_DOUBLE,      /* double with a range */
    KEY_UNIT,        /* double parsed by a units parser (rates, durations, byte counts) */
    KEY_SIZE,        /* size_t byte count parsed with units */
    KEY_STRING_LIST, /* a list of strings handed to a custom parser */
} key_type;

/* Custom parsers: store text into field (KEY_UNIT: a double, KEY_SIZE: a size_t). */
typedef loco_status (*unit_parser)(const char *text, double *value, loco_error *err);
/* KEY_STRING_LIST: store `count` items into cfg (the parser knows where). */
typedef loco_status (*list_parser)(loco_config *cfg, char *const *items, int count,
                                   loco_error *err);
/* KEY_STRING_LIST: write the list as a YAML flow sequence. */
typedef void (*list_writer)(const loco_config *cfg, FILE *out);

typedef struct config_key {
    const char *path;
    key_type type;
    size_t offset;       /* into loco_config */
    size_t size;         /* KEY_STRING: buffer bytes; KEY_INT_LIST: max entries */
    double min, max;     /* numeric range (inclusive) */
    const char *const *names; /* KEY_ENUM: NULL-terminated value names, index = enum value */
    const char *help;
    unit_parser parse_unit;   /* KEY_UNIT, KEY_SIZE */
    const char *unit_example; /* KEY_UNIT, KEY_SIZE: e.g. "100mbit" */
    list_parser parse_list;   /* KEY_STRING_LIST */
    list_writer write_list;   /* KEY_STRING_LIST */
} config_key;

static const char *const g_partition_names[] = {"iid", "source", NULL};
static const char *const g_launch_names[] = {"auto", "mpi", "join", "single", NULL};

static loco_status parse_fraction(const char *text, double *value, loco_error *err)
{
    char *end = NULL;
    double v = strtod(text, &end);
    if (end != text && NULL != end && '%' == *end && '\0' == end[1]) {
        v /= 100.0;
    } else if ('\0' == text[0] || NULL == end || '\0' != *end) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "'%s' is not a probability", text);
    }
    *value = v;
    return LOCO_OK;
}

/* transport.link.outages: ["10s+2s", ...] (start + duration). */
static loco_status parse_outages(loco_config *cfg, char *const *items, int count,
                                 loco_error *err)
{
    loco_link_config *link = &cfg->transport.comm.link;
    if (count > LOCO_LINK_MAX_OUTAGES) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "%d outages, at most %d allowed", count,
                              LOCO_LINK_MAX_OUTAGES);
    }
    link->n_outages = 0;
    for (int i = 0; i < count; i++) {
        char spec[300];
        snprintf(spec, sizeof spec, "outage=%s", items[i]);
        loco_link_config one = *link;
        one.n_outages = 0;
        LOCO_TRY(loco_parse_link(spec, &one, err));
        link->outages[link->n_outages++] = one.outages[0];
    }
    return loco_link_config_check(link, err);
}

static void write_outages(const loco_config *cfg, FILE *out)
{
    const loco_link_config *link = &cfg->transport.comm.link;
    fputc('[', out);
    for (int i = 0; i < link->n_outages; i++) {
        fprintf(out, "%s\"%.9gs+%.9gs\"", i ? ", " : "", link->outages[i].start_s,
                link->outages[i].duration_s);
    }
    fputc(']', out);
}

/* transport.links: ["FROM->TO key=value,...", ...]; resolved against transport.link later. */
static loco_status parse_link_rules(loco_config *cfg, char *const *items, int count,
                                    loco_error *err)
{
    if (count > LOCO_MAX_LINK_RULES) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "%d link rules, at most %d allowed", count,
                              LOCO_MAX_LINK_RULES);
    }
    for (int i = 0; i < count; i++) {
        int from, to, used = 0;
        if (2 != sscanf(items[i], "%d->%d %n", &from, &to, &used) || 0 == used || from < -1 ||
            to < -1) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "link rule '%s': expected \"FROM->TO key=value,...\" with "
                                  "ranks (or -1 for any), e.g. \"0->1 rate=100mbit,delay=80ms\"",
                                  items[i]);
        }
        loco_link_config probe = {0};
        LOCO_TRY(loco_parse_link(items[i] + used, &probe, err));
        snprintf(cfg->transport.link_rule_text[i], sizeof cfg->transport.link_rule_text[i], "%s",
                 items[i]);
    }
    cfg->transport.n_link_rules = count;
    return LOCO_OK;
}

static void write_link_rules(const loco_config *cfg, FILE *out)
{
    fputc('[', out);
    for (int i = 0; i < cfg->transport.n_link_rules; i++) {
        fputs(i ? ", " : "", out);
        loco_json_write_escaped(out, cfg->transport.link_rule_text[i]);
    }
    fputc(']', out);
}
static const char *const g_coord_names[] = {"rank0", "external", "none", NULL};
static const char *const g_straggler_names[] = {"evict", "wait", NULL};
static const char *const g_optim_names[] = {"sgd", "adamw", NULL};
static const char *const g_device_names[] = {"cpu", "cuda", NULL};
static const char *const g_strategy_names[] = {"none", "ddp", "diloco", "streaming", "demo",
                                               NULL};
static const char *const g_h_schedule_names[] = {"fixed", "qsr", NULL};
static const char *const g_fragment_names[] = {"strided", "sequential", NULL};
static const char *const g_exchange_names[] = {"auto", "ring", "allgather", NULL};
static const char *const g_codec_names[] = {"auto",    "none",  "fp16",     "bf16", "maxmin",
                                            "qsgd",    "fp4",   "ternary",  "sign", "topk",
                                            "dgc",     "randk", "dct_topk", "powersgd", NULL};
static const char *const g_rng_names[] = {"philox", "ars", NULL}; /* loco_codec_rng order */
static const char *const g_ef_names[] = {"none", "ef", "ef21", "econtrol", NULL};
static const char *const g_schedule_names[] = {"constant", "cosine", NULL};

#define OFF(field) offsetof(loco_config, field)
#define KEY(p, t, f, sz, lo, hi, h)                                                               \
    .path = p, .type = t, .offset = OFF(f), .size = sz, .min = lo, .max = hi, .help = h
#define INT_KEY(p, f, lo, hi, h) {KEY(p, KEY_INT, f, sizeof(int), lo, hi, h)}
#define U64_KEY(p, f, h) {KEY(p, KEY_U64, f, sizeof(uint64_t), 0, 1.8e19, h)}
#define FLOAT_KEY(p, f, lo, hi, h) {KEY(p, KEY_FLOAT, f, sizeof(float), lo, hi, h)}
#define BOOL_KEY(p, f, h) {KEY(p, KEY_BOOL, f, sizeof(bool), 0, 1, h)}
#define STR_KEY(p, f, h) {KEY(p, KEY_STRING, f, sizeof(((loco_config *)0)->f), 0, 0, h)}
#define ENUM_KEY(p, f, names_, h) {KEY(p, KEY_ENUM, f, sizeof(int), 0, 0, h), .names = names_}
#define INT_LIST_KEY(p, f, max_entries, lo, hi, h)                                                \
    {KEY(p, KEY_INT_LIST, f, max_entries, lo, hi, h)}
#define DOUBLE_KEY(p, f, lo, hi, h) {KEY(p, KEY_DOUBLE, f, sizeof(double), lo, hi, h)}
#define UNIT_KEY(p, f, parser, ex, lo, hi, h)                                                     \
    {KEY(p, KEY_UNIT, f, sizeof(double), lo, hi, h), .parse_unit = parser, .unit_example = ex}
#define SIZE_KEY(p, f, lo, hi, h)                                                                 \
    {KEY(p, KEY_SIZE, f, sizeof(size_t), lo, hi, h), .parse_unit = loco_parse_bytes,             \
     .unit_example = "1MiB"}
#define LIST_KEY(p, max_entries, parse, write, h)                                                 \
    {.path = p, .type = KEY_STRING_LIST, .size = max_entries, .help = h, .parse_list = parse,     \
     .write_list = write}

static const config_key g_schema[] = {
    STR_KEY("run.dir", run.dir, "run directory for metrics, checkpoints and run.json"),
    U64_KEY("run.seed", run.seed, "seed of initialisation, data order and stochastic codecs"),

    INT_KEY("model.n_layer", model.n_layer, 1, LOCO_MAX_LAYERS, "transformer blocks"),
    INT_KEY("model.n_embd", model.n_embd, 8, 16384, "model width, divisible by n_head"),
    INT_KEY("model.n_head", model.n_head, 1, 512, "query heads"),
    INT_KEY("model.n_kv_head", model.n_kv_head, 0, 512,
            "key/value heads: n_head (MHA), a divisor (GQA), 1 (MQA); 0 = n_head"),
    INT_KEY("model.ctx", model.ctx, 2, 1 << 20, "maximum sequence length"),
    INT_KEY("model.vocab", model.vocab, 2, 65536, "vocabulary size (256 for bytes)"),
    INT_LIST_KEY("model.kv_src", model.kv_src, LOCO_MAX_LAYERS, 0, LOCO_MAX_LAYERS - 1,
                 "per layer, the layer whose K/V it attends with (default: itself)"),
    FLOAT_KEY("model.init_std", model.init_std, 1e-6, 1.0, "std of the normal weight init"),

    STR_KEY("data.path", data.path, "prepared dataset directory (loco data prepare)"),
    ENUM_KEY("data.partition", data.partition, g_partition_names,
             "how workers split the data: iid blocks or whole sources (non-IID)"),
    INT_KEY("data.block", data.block, 1, 1 << 30, "IID block size in tokens"),

    INT_KEY("train.steps", train.steps, 0, 1 << 30, "optimizer steps per worker"),
    INT_KEY("train.batch", train.batch, 1, 1 << 16, "sequences per step per worker"),
    INT_KEY("train.seq_len", train.seq_len, 1, 1 << 20, "tokens per sequence, <= model.ctx"),
    INT_KEY("train.eval_every", train.eval_every, 0, 1 << 30,
            "validation every N steps (0 = at the end only)"),
    INT_KEY("train.eval_batches", train.eval_batches, 1, 1 << 20, "validation batches, spread evenly over val.tok"),
    INT_KEY("train.checkpoint_every", train.checkpoint_every, 0, 1 << 30,
            "checkpoint every N steps (0 = at the end only)"),
    INT_KEY("train.log_every", train.log_every, 1, 1 << 30, "progress and metrics every N steps"),
    INT_KEY("train.max_nonfinite", train.max_nonfinite, 0, 1 << 30,
            "stop after this many skipped non-finite steps"),
    INT_KEY("train.threads", train.threads, 0, 4096, "OpenMP threads (0 = all cores)"),
    ENUM_KEY("train.device", train.device, g_device_names,
             "where each worker computes: cpu, or cuda (one GPU per worker, or "
             "train.gpus_per_worker)"),
    INT_KEY("train.gpus_per_worker", train.gpus_per_worker, 1, LOCO_MAX_WORKER_GPUS,
            "cuda: GPUs one worker drives (gradients averaged by NCCL every step; train.batch "
            "split over them); the next ones after train.cuda_device or local rank x this"),
    FLOAT_KEY("train.gpu_timeout", train.gpu_timeout, 0, 1e6,
              "cuda: seconds one step's GPU work (its NCCL averages included) may take before "
              "the worker ends its own process, so a hung GPU or NCCL collective becomes a lost "
              "worker the others recover from (0 = wait forever)"),
    INT_KEY("train.hang_at_step", train.hang_at_step, -1, 1 << 30,
            "fault injection for tests, cuda: the worker's last GPU stops answering at this step "
            "(with several GPUs its peers block in NCCL) until train.gpu_timeout ends the worker "
            "(-1 = never; see train.fault_members)"),
    INT_KEY("train.cuda_device", train.cuda_device, -1, 1024,
            "GPU index with train.device cuda (-1 = the worker's local rank)"),
    INT_KEY("train.sync_every", train.sync_every, 1, 1 << 30,
            "ddp, demo: a sync point (joins, leaves, state parity) every N steps; diloco and "
            "streaming have one every round"),
    INT_KEY("train.leave_at_step", train.leave_at_step, -1, 1 << 30,
            "leave the group at the first sync point from this step on, as on SIGTERM "
            "(-1 = never; with train.fault_members: only those members)"),
    INT_KEY("train.kill_at_step", train.kill_at_step, -1, 1 << 30,
            "fault injection for tests: SIGKILL this worker in the middle of its first "
            "collective from this step on (-1 = never; see train.fault_members)"),
    SIZE_KEY("train.kill_after_bytes", train.kill_after_bytes, 1, 1e15,
             "train.kill_at_step fires once the worker has sent this many bytes from that step"),
    STR_KEY("train.fault_members", train.fault_members,
            "member ids (comma-separated, e.g. \"1,3\") train.leave_at_step, "
            "train.kill_at_step and train.hang_at_step apply to; \"\" = every worker"),

    ENUM_KEY("optim.kind", optim.kind, g_optim_names, "inner optimizer"),
    FLOAT_KEY("optim.lr", optim.lr, 0, 100, "peak learning rate"),
    FLOAT_KEY("optim.min_lr", optim.min_lr, 0, 100, "final learning rate of the cosine schedule"),
    INT_KEY("optim.warmup_steps", optim.warmup_steps, 0, 1 << 30, "linear warmup steps"),
    INT_KEY("optim.total_steps", optim.total_steps, 0, 1 << 30,
            "schedule length (0 = train.steps)"),
    ENUM_KEY("optim.schedule", optim.schedule, g_schedule_names, "learning-rate schedule"),
    FLOAT_KEY("optim.beta1", optim.beta1, 0, 0.999999, "AdamW first-moment decay"),
    FLOAT_KEY("optim.beta2", optim.beta2, 0, 0.9999999, "AdamW second-moment decay"),
    FLOAT_KEY("optim.eps", optim.eps, 1e-30, 1, "AdamW epsilon"),
    FLOAT_KEY("optim.weight_decay", optim.weight_decay, 0, 10, "decoupled weight decay"),
    FLOAT_KEY("optim.momentum", optim.momentum, 0, 0.999999, "SGD momentum"),
    BOOL_KEY("optim.nesterov", optim.nesterov, "SGD Nesterov momentum"),
    FLOAT_KEY("optim.grad_clip", optim.grad_clip, 0, 1e9, "global gradient-norm clip (0 = off)"),

    ENUM_KEY("transport.launch", transport.launch, g_launch_names,
             "how workers meet: auto (mpirun -> mpi, transport.join set -> join, else single)"),
    STR_KEY("transport.join", transport.comm.join,
            "HOST:PORT where rank 0 listens and the others dial (launch: join)"),
    STR_KEY("transport.listen", transport.listen,
            "HOST[:PORT] to bind (default: loopback when all ranks share a host)"),
    STR_KEY("transport.advertise", transport.comm.advertise_host, "address peers dial"),
    INT_KEY("transport.streams", transport.comm.streams, 1, 64,
            "TCP data connections per ring neighbour"),
    SIZE_KEY("transport.chunk", transport.comm.chunk_bytes, 4096, 64.0 * 1048576,
             "pipeline chunk (frame payload) size"),
    UNIT_KEY("transport.connect_timeout", transport.comm.connect_timeout_s, loco_parse_duration,
             "30s", 0.001, 86400, "deadline for bootstrap and wiring"),
    UNIT_KEY("transport.heartbeat", transport.comm.heartbeat_s, loco_parse_duration, "500ms",
             0.001, 3600, "heartbeat period"),
    UNIT_KEY("transport.peer_timeout", transport.comm.peer_timeout_s, loco_parse_duration, "10s",
             0.01, 86400, "a peer silent this long is lost"),
    UNIT_KEY("transport.op_timeout", transport.comm.op_timeout_s, loco_parse_duration, "60s",
             0.01, 86400, "an operation without progress this long is aborted"),
    UNIT_KEY("transport.mpi_timeout", transport.comm.mpi_timeout_s, loco_parse_duration, "60s",
             0.1, 86400, "alarm around each MPI call during bootstrap"),
    BOOL_KEY("transport.confirm", transport.comm.confirm,
             "report success only after every member holds the result"),
    BOOL_KEY("transport.digest", transport.comm.result_digest,
             "digest every result (and compare them when confirming)"),
    UNIT_KEY("transport.link.rate", transport.comm.link.rate_bps, loco_parse_rate, "1gbit", 0,
             1e15, "emulated link rate (0 = unlimited)"),
    UNIT_KEY("transport.link.delay", transport.comm.link.delay_s, loco_parse_duration, "50ms", 0,
             60, "emulated one-way delay"),
    UNIT_KEY("transport.link.jitter", transport.comm.link.jitter_s, loco_parse_duration, "2ms", 0,
             60, "emulated delay jitter (uniform +-)"),
    UNIT_KEY("transport.link.loss", transport.comm.link.loss, parse_fraction, "0.1%", 0,
             0.999999, "emulated packet loss probability (0.001 or 0.1%)"),
    UNIT_KEY("transport.link.window", transport.comm.link.window_bytes, loco_parse_bytes, "4MiB",
             0, 1e12, "emulated TCP window per connection (0 = unlimited)"),
    LIST_KEY("transport.link.outages", LOCO_LINK_MAX_OUTAGES, parse_outages, write_outages,
             "emulated outages, each \"START+DURATION\" (e.g. \"10s+2s\")"),
    U64_KEY("transport.link.seed", transport.comm.link_seed, "seed of the emulator's draws"),
    LIST_KEY("transport.links", LOCO_MAX_LINK_RULES, parse_link_rules, write_link_rules,
             "per-pair link overrides, each \"FROM->TO key=value,...\" (-1 = any rank)"),

    STR_KEY("transport.key_file", transport.comm.key_file,
            "file holding the run key every connection must prove (else LOCO_RUN_KEY_FILE or "
            "LOCO_RUN_KEY; mpirun runs without one share a random key)"),
    BOOL_KEY("transport.integrity", transport.comm.integrity,
             "a MAC on every frame (forged, corrupted or replayed frames drop their sender)"),

    ENUM_KEY("ft.coordinator", transport.comm.ft.coordinator, g_coord_names,
             "where the coordinator runs: rank0 (inside the lowest rank), external "
             "(ft.coordinator_addr), none (no verdicts, no recovery)"),
    STR_KEY("ft.coordinator_addr", transport.comm.ft.coordinator_addr,
            "HOST:PORT of `loco coordinator --listen` (coordinator: external)"),
    INT_KEY("ft.coordinator_port", transport.comm.ft.coordinator_port, 0, 65535,
            "port of each worker's coordinator listener (0 = any; fixed: + local rank)"),
    UNIT_KEY("ft.op_deadline", transport.comm.ft.op_deadline_s, loco_parse_duration, "30s",
             0.001, 86400, "an operation not done everywhere this long after it began is "
             "aborted and its stragglers evicted"),
    BOOL_KEY("ft.adaptive_deadline", transport.comm.ft.adaptive_deadline,
             "deadline = median + k * MAD of recent operations (op_deadline until enough)"),
    DOUBLE_KEY("ft.deadline_k", transport.comm.ft.deadline_k, 0, 1000,
               "k of the adaptive deadline"),
    UNIT_KEY("ft.deadline_min", transport.comm.ft.deadline_min_s, loco_parse_duration, "1s",
             0.001, 86400, "floor of the adaptive deadline"),
    UNIT_KEY("ft.deadline_max", transport.comm.ft.deadline_max_s, loco_parse_duration, "10m",
             0.001, 86400, "ceiling of the adaptive deadline"),
    INT_KEY("ft.deadline_window", transport.comm.ft.deadline_window, 4, 1024,
            "recent operations the adaptive deadline looks at"),
    ENUM_KEY("ft.straggler", transport.comm.ft.straggler, g_straggler_names,
             "a live member late for an operation: evict (at the deadline) or wait "
             "(ft.straggler_wait)"),
    UNIT_KEY("ft.straggler_wait", transport.comm.ft.straggler_wait_s, loco_parse_duration, "5m",
             0.001, 86400, "how long the wait policy waits for a live straggler"),
    UNIT_KEY("ft.join_timeout", transport.comm.ft.join_timeout_s, loco_parse_duration, "10m",
             0.001, 864000, "how long a joiner waits to be admitted"),
    UNIT_KEY("ft.sync_timeout", transport.comm.ft.sync_timeout_s, loco_parse_duration, "10m",
             0.001, 864000, "a recovery or sync point gives up after this long"),
    INT_KEY("ft.transfer_streams", transport.comm.ft.transfer_streams, 0, 64,
            "state transfer: TCP streams per sending member (0 = transport.streams)"),
    BOOL_KEY("ft.parity", transport.comm.ft.parity,
             "compare state digests at sync points and repair members that differ"),
    STR_KEY("ft.events", transport.comm.ft.events_path,
            "file the coordinator appends its events to (JSON lines), when hosted here"),

    ENUM_KEY("sync.strategy", sync.strategy, g_strategy_names,
             "how replicas agree (none: a single process)"),
    INT_KEY("sync.h", sync.h, 1, 1 << 30, "inner steps per round (diloco, streaming; QSR: H_base)"),
    ENUM_KEY("sync.h_schedule", sync.h_schedule, g_h_schedule_names,
             "round length (qsr: max(H_base, floor((qsr_alpha / lr)^2)), diloco only)"),
    FLOAT_KEY("sync.qsr_alpha", sync.qsr_alpha, 0, 100, "QSR's alpha"),
    FLOAT_KEY("sync.outer_lr", sync.outer_lr, 0, 100, "outer SGD learning rate (FedAvg: 1)"),
    FLOAT_KEY("sync.outer_momentum", sync.outer_momentum, 0, 0.999999,
              "outer momentum (FedAvg: 0)"),
    BOOL_KEY("sync.outer_nesterov", sync.outer_nesterov, "outer Nesterov momentum"),
    INT_KEY("sync.delay", sync.delay, 0, 1,
            "diloco: 1 = apply each round's average one round late (overlaps communication)"),
    ENUM_KEY("sync.exchange", exchange_name, g_exchange_names,
             "diloco: how pseudo-gradients travel: ring (decode-add-encode per hop) or "
             "allgather (one message per worker; auto: allgather for GPU workers whose codec "
             "the GPU encodes, else ring)"),
    INT_KEY("sync.fragments", sync.fragments, 1, LOCO_SYNC_MAX_FRAGMENTS,
            "streaming: fragments P of transformer blocks (P divides sync.h)"),
    ENUM_KEY("sync.fragment_pattern", sync.fragment_pattern, g_fragment_names,
             "streaming: block l in fragment l mod P (strided) or runs of blocks"),
    INT_KEY("sync.overlap", sync.overlap, 0, 1 << 30,
            "streaming: steps tau a fragment's average travels, < sync.h / sync.fragments"),
    FLOAT_KEY("sync.mix_alpha", sync.mix_alpha, 0, 1,
              "streaming: replica = alpha replica + (1 - alpha) global on arrival"),
    FLOAT_KEY("sync.demo_beta", sync.demo_beta, 0, 1, "demo: momentum decay"),

    ENUM_KEY("codec.name", codec_name, g_codec_names,
             "what travels (auto: none for ddp/diloco, fp4 for streaming, dct_topk for demo)"),
    INT_KEY("codec.bits", sync.codec.bits, 1, 8, "maxmin 1..8, qsgd 2..8, fp4 4"),
    INT_KEY("codec.bucket", sync.codec.bucket, 0, 1 << 30,
            "elements per scale (0 = whole message); default 512, sign 0"),
    BOOL_KEY("codec.stochastic", sync.codec.stochastic,
             "stochastic (unbiased) rounding; randk: rescale kept values"),
    FLOAT_KEY("codec.density", sync.codec.density, 0, 1, "topk/dgc/randk kept fraction"),
    INT_KEY("codec.chunk_topk", sync.codec.chunk_topk, 1, 4096,
            "dct_topk: coefficients kept per DCT chunk"),
    INT_KEY("codec.rank", sync.codec.rank, 1, 1024, "powersgd rank"),
    FLOAT_KEY("codec.clip_sigma", sync.codec.clip_sigma, 0, 100,
              "ternary: clip at clip_sigma standard deviations (0 = off)"),
    BOOL_KEY("codec.entropy", sync.codec.entropy, "entropy-code sparse indices, deflate payloads"),
    ENUM_KEY("codec.rng", sync.codec.rng, g_rng_names,
             "stochastic-rounding draws: philox (GPU gives the same bytes) or ars (AES-NI, "
             "several times faster on a CPU; encodes on the CPU)"),
    FLOAT_KEY("codec.dgc_momentum", sync.codec.dgc_momentum, 0, 0.999999,
              "dgc momentum correction"),
    FLOAT_KEY("codec.dgc_sample", sync.codec.dgc_sample, 0, 1,
              "dgc: fraction sampled for the threshold"),
    INT_KEY("codec.dgc_warmup_steps", sync.codec.dgc_warmup_steps, 0, 1 << 30,
            "dgc: density warm-up steps (0 = off)"),
    FLOAT_KEY("codec.dgc_clip_norm", sync.codec.dgc_clip_norm, 0, 1e9,
              "dgc: local gradient clipping norm (0 = off)"),
    ENUM_KEY("codec.ef", sync.ef.mode, g_ef_names,
             "ddp: error feedback around the codec"),
    FLOAT_KEY("codec.ef_eta", sync.ef.eta, 0, 1, "econtrol feedback strength"),
    FLOAT_KEY("codec.ef_decay", sync.ef.decay, 0, 1, "ef residual decay (1 = classic EF)"),
};
static const int g_schema_count = (int)(sizeof g_schema / sizeof g_schema[0]);

_Static_assert(sizeof g_schema / sizeof g_schema[0] <= LOCO_CONFIG_MAX_KEYS,
               "raise LOCO_CONFIG_MAX_KEYS");

static int schema_find(const char *path)
{
    for (int i = 0; i < g_schema_count; i++) {
        if (0 == strcmp(g_schema[i].path, path)) {
            return i;
        }
    }
    return -1;
}

/* Is `prefix` ("model" or "transport.link") a section of some key? */
static bool schema_has_section(const char *prefix)
{
    size_t n = strlen(prefix);
    for (int i = 0; i < g_schema_count; i++) {
        if (0 == strncmp(g_schema[i].path, prefix, n) && '.' == g_schema[i].path[n]) {
            return true;
        }
    }
    return false;
}

/* The keys directly under a section, comma-separated, for "allowed:" hints. */
static void schema_section_keys(const char *section, char *out, size_t cap)
{
    size_t n = strlen(section);
    out[0] = '\0';
    char last[128] = "";
    for (int i = 0; i < g_schema_count; i++) {
        const char *p = g_schema[i].path;
        const char *rest;
        if (0 == n) {
            rest = p;
        } else if (0 == strncmp(p, section, n) && '.' == p[n]) {
            rest = p + n + 1;
        } else {
            continue;
        }
        char name[128];
        size_t len = strcspn(rest, ".");
        snprintf(name, sizeof name, "%.*s", (int)len, rest);
        if (0 == strcmp(name, last)) {
            continue;
        }
        snprintf(last, sizeof last, "%s", name);
        size_t used = strlen(out);
        snprintf(out + used, cap - used, "%s%s", used ? ", " : "", name);
    }
}

void loco_config_defaults(loco_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->run.dir, sizeof cfg->run.dir, "runs/default");
    cfg->run.seed = 1;

    cfg->model.n_layer = 4;
    cfg->model.n_embd = 128;
    cfg->model.n_head = 4;
    cfg->model.n_kv_head = 0;
    cfg->model.ctx = 128;
    cfg->model.vocab = 256;
    for (int l = 0; l < LOCO_MAX_LAYERS; l++) {
        cfg->model.kv_src[l] = l;
    }
    cfg->model.init_std = 0.02f;

    snprintf(cfg->data.path, sizeof cfg->data.path, "data/default");
    cfg->data.partition = LOCO_PARTITION_IID;
    cfg->data.block = 8192;

    cfg->train.steps = 1000;
    cfg->train.batch = 16;
    cfg->train.seq_len = 128;
    cfg->train.eval_every = 100;
    cfg->train.eval_batches = 8;
    cfg->train.checkpoint_every = 0;
    cfg->train.log_every = 1;
    cfg->train.max_nonfinite = 10;
    cfg->train.threads = 0;
    cfg->train.device = LOCO_DEVICE_CPU;
    cfg->train.cuda_device = -1;
    cfg->train.gpus_per_worker = 1;
    cfg->train.sync_every = 10;
    cfg->train.leave_at_step = -1;
    cfg->train.kill_at_step = -1;
    cfg->train.hang_at_step = -1;
    cfg->train.gpu_timeout = 300.0f;
    cfg->train.kill_after_bytes = 64 * 1024;

    cfg->optim.kind = LOCO_OPTIM_ADAMW;
    cfg->optim.lr = 3e-3f;
    cfg->optim.min_lr = 3e-4f;
    cfg->optim.warmup_steps = 50;
    cfg->optim.total_steps = 0;
    cfg->optim.schedule = LOCO_LR_COSINE;
    cfg->optim.beta1 = 0.9f;
    cfg->optim.beta2 = 0.95f;
    cfg->optim.eps = 1e-8f;
    cfg->optim.weight_decay = 0.1f;
    cfg->optim.momentum = 0.9f;
    cfg->optim.nesterov = true;
    cfg->optim.grad_clip = 1.0f;

    cfg->transport.launch = LOCO_LAUNCH_AUTO;
    cfg->transport.comm = (loco_comm_config)LOCO_COMM_CONFIG_INIT;

    cfg->sync = loco_sync_params_default(LOCO_SYNC_NONE);
    cfg->codec_name = 0; /* auto */
    cfg->exchange_name = 0; /* auto */
}

void loco_config_bind_transport(loco_config *cfg)
{
    cfg->transport.comm.link_rules = cfg->transport.link_rules;
    cfg->transport.comm.n_link_rules = cfg->transport.n_link_rules;
}

/* Split transport.listen and build the per-pair link rules on top of transport.link. */
static loco_status resolve_transport(loco_config *cfg, loco_error *err)
{
    loco_transport_params *t = &cfg->transport;
    t->comm.listen_host[0] = '\0';
    t->comm.listen_port = 0;
    if ('\0' != t->listen[0]) {
        const char *colon = strrchr(t->listen, ':');
        size_t host_len = NULL != colon ? (size_t)(colon - t->listen) : strlen(t->listen);
        if (host_len >= sizeof t->comm.listen_host) {
            return loco_error_set(err, LOCO_ERR_CONFIG, "transport.listen: host too long");
        }
        memcpy(t->comm.listen_host, t->listen, host_len);
        t->comm.listen_host[host_len] = '\0';
        if (NULL != colon) {
            char *end = NULL;
            long port = strtol(colon + 1, &end, 10);
            if ('\0' == colon[1] || '\0' != *end || port < 0 || port > 65535) {
                return loco_error_set(err, LOCO_ERR_CONFIG,
                                      "transport.listen: '%s' has a bad port; allowed: "
                                      "HOST[:PORT] with PORT in 0..65535",
                                      t->listen);
            }
            t->comm.listen_port = (int)port;
        }
    }
    for (int i = 0; i < t->n_link_rules; i++) {
        int from, to, used = 0;
        sscanf(t->link_rule_text[i], "%d->%d %n", &from, &to, &used);
        t->link_rules[i].from = from;
        t->link_rules[i].to = to;
        t->link_rules[i].link = t->comm.link;
        LOCO_TRY(loco_parse_link(t->link_rule_text[i] + used, &t->link_rules[i].link, err));
    }
    loco_config_bind_transport(cfg);
    LOCO_TRY(loco_link_config_check(&t->comm.link, err));
    const loco_ft_config *ft = &t->comm.ft;
    if (LOCO_COORD_EXTERNAL == ft->coordinator && '\0' == ft->coordinator_addr[0]) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "ft.coordinator is external but ft.coordinator_addr is empty; "
                              "allowed: HOST:PORT of `loco coordinator --listen`");
    }
    if (ft->deadline_min_s > ft->deadline_max_s) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "ft.deadline_min (%g s) exceeds ft.deadline_max (%g s)",
                              ft->deadline_min_s, ft->deadline_max_s);
    }
    if (LOCO_LAUNCH_JOIN == t->launch && '\0' == t->comm.join[0]) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "transport.launch is join but transport.join is empty; allowed: "
                              "HOST:PORT where rank 0 listens");
    }
    return LOCO_OK;
}

/* =============================================================================================
 * YAML -> node tree */

typedef enum node_kind { NODE_SCALAR, NODE_MAPPING, NODE_SEQUENCE } node_kind;

typedef struct yaml_tree_node {
    node_kind kind;
    int line, column;  /* 1-based */
    char *text;        /* scalars */
    bool quoted;       /* scalar written in quotes (a string, never a number) */
    int first_child;   /* mappings: key, value, key, value...; sequences: items */
    int next;          /* sibling */
    int count;         /* children */
} yaml_tree_node;

typedef struct yaml_tree {
    yaml_tree_node *nodes;
    int count, capacity;
    const char *name; /* file name for messages */
} yaml_tree;

static void tree_free(yaml_tree *tree)
{
    for (int i = 0; i < tree->count; i++) {
        free(tree->nodes[i].text);
    }
    free(tree->nodes);
    tree->nodes = NULL;
    tree->count = tree->capacity = 0;
}

static loco_status tree_add(yaml_tree *tree, node_kind kind, const yaml_mark_t *mark, int *index,
                            loco_error *err)
{
    if (tree->count >= CONFIG_MAX_NODES) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "%s:%zu:%zu: too many YAML nodes (limit %d)",
                              tree->name, mark->line + 1, mark->column + 1, CONFIG_MAX_NODES);
    }
    if (tree->count == tree->capacity) {
        int cap = tree->capacity ? 2 * tree->capacity : 64;
        yaml_tree_node *grown = realloc(tree->nodes, (size_t)cap * sizeof *grown);
        if (NULL == grown) {
            return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory reading %s", tree->name);
        }
        tree->nodes = grown;
        tree->capacity = cap;
    }
    yaml_tree_node *n = &tree->nodes[tree->count];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->line = (int)mark->line + 1;
    n->column = (int)mark->column + 1;
    n->first_child = -1;
    n->next = -1;
    *index = tree->count++;
    return LOCO_OK;
}

/* Build the tree from libyaml events. The container stack holds the open mapping/sequence and
 * the last child added to each, so siblings are linked in order. */
static loco_status tree_parse(yaml_tree *tree, const char *text, size_t len, loco_error *err)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "cannot initialise the YAML parser");
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int stack[CONFIG_MAX_DEPTH + 1];
    int last_child[CONFIG_MAX_DEPTH + 1];
    int depth = 0;
    int documents = 0;
    loco_status st = LOCO_OK;
    bool done = false;
    while (!done && LOCO_OK == st) {
        yaml_event_t event;
        if (!yaml_parser_parse(&parser, &event)) {
            if (NULL != parser.context) {
                st = loco_error_set(err, LOCO_ERR_CONFIG,
                                    "%s:%zu:%zu: invalid YAML: %s %s started at %zu:%zu",
                                    tree->name, parser.problem_mark.line + 1,
                                    parser.problem_mark.column + 1,
                                    parser.problem ? parser.problem : "syntax error",
                                    parser.context, parser.context_mark.line + 1,
                                    parser.context_mark.column + 1);
            } else {
                st = loco_error_set(err, LOCO_ERR_CONFIG, "%s:%zu:%zu: invalid YAML: %s",
                                    tree->name, parser.problem_mark.line + 1,
                                    parser.problem_mark.column + 1,
                                    parser.problem ? parser.problem : "syntax error");
            }
            break;
        }
        const yaml_mark_t *mark = &event.start_mark;
        int index = -1;
        switch (event.type) {
        case YAML_STREAM_END_EVENT: done = true; break;
        case YAML_DOCUMENT_START_EVENT:
            if (++documents > 1) {
                st = loco_error_set(err, LOCO_ERR_CONFIG,
                                    "%s:%zu:%zu: more than one YAML document; put the whole "
                                    "config in one document",
                                    tree->name, mark->line + 1, mark->column + 1);
            }
            break;
        case YAML_ALIAS_EVENT:
            st = loco_error_set(err, LOCO_ERR_CONFIG,
                                "%s:%zu:%zu: YAML aliases (*%s) are not allowed in loco configs; "
                                "write the value out",
                                tree->name, mark->line + 1, mark->column + 1,
                                (const char *)event.data.alias.anchor);
            break;
        case YAML_SCALAR_EVENT:
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT: {
            const yaml_char_t *anchor = YAML_SCALAR_EVENT == event.type
                                            ? event.data.scalar.anchor
                                            : (YAML_MAPPING_START_EVENT == event.type
                                                   ? event.data.mapping_start.anchor
                                                   : event.data.sequence_start.anchor);
            if (NULL != anchor) {
                st = loco_error_set(err, LOCO_ERR_CONFIG,
                                    "%s:%zu:%zu: YAML anchors (&%s) are not allowed in loco "
                                    "configs",
                                    tree->name, mark->line + 1, mark->column + 1,
                                    (const char *)anchor);
                break;
            }
            node_kind kind = YAML_SCALAR_EVENT == event.type
                                 ? NODE_SCALAR
                                 : (YAML_MAPPING_START_EVENT == event.type ? NODE_MAPPING
                                                                           : NODE_SEQUENCE);
            st = tree_add(tree, kind, mark, &index, err);
            if (LOCO_OK != st) {
                break;
            }
            if (NODE_SCALAR == kind) {
                if (event.data.scalar.length > CONFIG_MAX_SCALAR) {
                    st = loco_error_set(err, LOCO_ERR_CONFIG,
                                        "%s:%zu:%zu: scalar of %zu bytes (limit %d)", tree->name,
                                        mark->line + 1, mark->column + 1,
                                        event.data.scalar.length, CONFIG_MAX_SCALAR);
                    break;
                }
                if (strlen((const char *)event.data.scalar.value) != event.data.scalar.length) {
                    st = loco_error_set(err, LOCO_ERR_CONFIG,
                                        "%s:%zu:%zu: NUL character in a scalar", tree->name,
                                        mark->line + 1, mark->column + 1);
                    break;
                }
                tree->nodes[index].text = strdup((const char *)event.data.scalar.value);
                tree->nodes[index].quoted = YAML_PLAIN_SCALAR_STYLE != event.data.scalar.style;
                if (NULL == tree->nodes[index].text) {
                    st = loco_error_set(err, LOCO_ERR_NOMEM, "out of memory reading %s",
                                        tree->name);
                    break;
                }
            }
            if (depth > 0) {
                int parent = stack[depth - 1];
                if (last_child[depth - 1] < 0) {
                    tree->nodes[parent].first_child = index;
                } else {
                    tree->nodes[last_child[depth - 1]].next = index;
                }
                last_child[depth - 1] = index;
                tree->nodes[parent].count++;
            }
            if (NODE_SCALAR != kind) {
                if (depth >= CONFIG_MAX_DEPTH) {
                    st = loco_error_set(err, LOCO_ERR_CONFIG,
                                        "%s:%zu:%zu: nesting deeper than %d levels", tree->name,
                                        mark->line + 1, mark->column + 1, CONFIG_MAX_DEPTH);
                    break;
                }
                stack[depth] = index;
                last_child[depth] = -1;
                depth++;
            }
            break;
        }
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT: depth--; break;
        default: break;
        }
        yaml_event_delete(&event);
    }
    yaml_parser_delete(&parser);
    return st;
}

/* =============================================================================================
 * Conversion of one scalar to one key */

typedef struct value_site {
    const char *file; /* file name, or "--set" */
    int line, column;
} value_site;

static loco_status site_error(loco_error *err, const value_site *site, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static loco_status site_error(loco_error *err, const value_site *site, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (site->line > 0) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "%s:%d:%d: %s", site->file, site->line,
                              site->column, what);
    }
    return loco_error_set(err, LOCO_ERR_CONFIG, "%s: %s", site->file, what);
}

static void describe_allowed(const config_key *key, char *out, size_t cap)
{
    switch (key->type) {
    case KEY_INT:
    case KEY_INT_LIST:
        snprintf(out, cap, "an integer in [%.0f, %.0f]", key->min, key->max);
        break;
    case KEY_U64: snprintf(out, cap, "a non-negative integer"); break;
    case KEY_FLOAT:
    case KEY_DOUBLE: snprintf(out, cap, "a number in [%g, %g]", key->min, key->max); break;
    case KEY_BOOL: snprintf(out, cap, "true or false"); break;
    case KEY_UNIT:
    case KEY_SIZE:
        snprintf(out, cap, "a value like %s in [%g, %g]", key->unit_example, key->min, key->max);
        break;
    case KEY_STRING_LIST: snprintf(out, cap, "a list of strings"); break;
    case KEY_STRING: snprintf(out, cap, "a string of at most %zu bytes", key->size - 1); break;
    case KEY_ENUM: {
        out[0] = '\0';
        for (int i = 0; NULL != key->names[i]; i++) {
            size_t used = strlen(out);
            snprintf(out + used, cap - used, "%s%s", i ? ", " : "", key->names[i]);
        }
        break;
    }
    }
}

static loco_status parse_int(const config_key *key, const char *text, const value_site *site,
                             long long *out, loco_error *err)
{
    char allowed[256];
    describe_allowed(key, allowed, sizeof allowed);
    errno = 0;
    char *end = NULL;
    long long v = strtoll(text, &end, 0);
    if ('\0' == text[0] || NULL == end || '\0' != *end || ERANGE == errno) {
        return site_error(err, site, "%s: '%s' is not an integer; allowed: %s", key->path, text,
                          allowed);
    }
    if ((double)v < key->min || (double)v > key->max) {
        return site_error(err, site, "%s: %lld is out of range; allowed: %s", key->path, v,
                          allowed);
    }
    *out = v;
    return LOCO_OK;
}

/* Store one scalar into the field of `key`. */
static loco_status set_scalar(loco_config *cfg, const config_key *key, const char *text,
                              bool quoted, const value_site *site, loco_error *err)
{
    char *field = (char *)cfg + key->offset;
    char allowed[256];
    describe_allowed(key, allowed, sizeof allowed);
    if (quoted && KEY_STRING != key->type && KEY_ENUM != key->type) {
        return site_error(err, site, "%s: \"%s\" is a quoted string; allowed: %s (unquoted)",
                          key->path, text, allowed);
    }
    switch (key->type) {
    case KEY_INT: {
        long long v;
        LOCO_TRY(parse_int(key, text, site, &v, err));
        *(int *)field = (int)v;
        return LOCO_OK;
    }
    case KEY_U64: {
        errno = 0;
        char *end = NULL;
        unsigned long long v = strtoull(text, &end, 0);
        if ('\0' == text[0] || '-' == text[0] || NULL == end || '\0' != *end || ERANGE == errno) {
            return site_error(err, site, "%s: '%s' is not a non-negative integer", key->path,
                              text);
        }
        *(uint64_t *)field = (uint64_t)v;
        return LOCO_OK;
    }
    case KEY_FLOAT:
    case KEY_DOUBLE: {
        char *end = NULL;
        double v = strtod(text, &end);
        if ('\0' == text[0] || NULL == end || '\0' != *end || !isfinite(v)) {
            return site_error(err, site, "%s: '%s' is not a finite number; allowed: %s",
                              key->path, text, allowed);
        }
        if (v < key->min || v > key->max) {
            return site_error(err, site, "%s: %g is out of range; allowed: %s", key->path, v,
                              allowed);
        }
        if (KEY_FLOAT == key->type) {
            *(float *)field = (float)v;
        } else {
            *(double *)field = v;
        }
        return LOCO_OK;
    }
    case KEY_BOOL: {
        if (0 == strcmp(text, "true") || 0 == strcmp(text, "yes") || 0 == strcmp(text, "on")) {
            *(bool *)field = true;
        } else if (0 == strcmp(text, "false") || 0 == strcmp(text, "no") ||
                   0 == strcmp(text, "off")) {
            *(bool *)field = false;
        } else {
            return site_error(err, site, "%s: '%s' is not a boolean; allowed: %s", key->path,
                              text, allowed);
        }
        return LOCO_OK;
    }
    case KEY_STRING: {
        if (strlen(text) >= key->size) {
            return site_error(err, site, "%s: string of %zu bytes is too long; allowed: %s",
                              key->path, strlen(text), allowed);
        }
        memcpy(field, text, strlen(text) + 1);
        return LOCO_OK;
    }
    case KEY_ENUM: {
        for (int i = 0; NULL != key->names[i]; i++) {
            if (0 == strcmp(text, key->names[i])) {
                *(int *)field = i;
                return LOCO_OK;
            }
        }
        return site_error(err, site, "%s: unknown value '%s'; allowed: %s", key->path, text,
                          allowed);
    }
    case KEY_UNIT:
    case KEY_SIZE: {
        double v = 0;
        loco_error unit_err = {0};
        if (LOCO_OK != key->parse_unit(text, &v, &unit_err) || !isfinite(v)) {
            return site_error(err, site, "%s: %s; allowed: %s", key->path,
                              unit_err.msg[0] ? unit_err.msg : "not a valid value", allowed);
        }
        if (v < key->min || v > key->max) {
            return site_error(err, site, "%s: %s is out of range; allowed: %s", key->path, text,
                              allowed);
        }
        if (KEY_SIZE == key->type) {
            *(size_t *)field = (size_t)v;
        } else {
            *(double *)field = v;
        }
        return LOCO_OK;
    }
    case KEY_INT_LIST:
    case KEY_STRING_LIST:
        return site_error(err, site, "%s: expected a list like [a, b]", key->path);
    }
    return LOCO_ERR_INTERNAL;
}

/* Store a list of scalars into a KEY_INT_LIST field. Entries past the list keep their default
 * (the identity for kv_src); validation checks the list length against the layer count. */
static loco_status set_int_list(loco_config *cfg, const config_key *key, char *const *items,
                                const bool *quoted, int count, const value_site *site,
                                loco_error *err)
{
    if ((size_t)count > key->size) {
        return site_error(err, site, "%s: %d entries, at most %zu allowed", key->path, count,
                          key->size);
    }
    int *field = (int *)((char *)cfg + key->offset);
    for (int i = 0; i < count; i++) {
        if (quoted[i]) {
            return site_error(err, site, "%s: entry %d \"%s\" is quoted; write a number",
                              key->path, i, items[i]);
        }
        long long v;
        LOCO_TRY(parse_int(key, items[i], site, &v, err));
        field[i] = (int)v;
    }
    for (int i = count; i < (int)key->size; i++) {
        field[i] = i;
    }
    /* Remember the length so validation can compare it with n_layer. */
    if (0 == strcmp(key->path, "model.kv_src")) {
        cfg->kv_src_count = count;
    }
    return LOCO_OK;
}

/* =============================================================================================
 * Walking the tree */

static loco_status walk_mapping(loco_config *cfg, const yaml_tree *tree, int map,
                                const char *prefix, loco_error *err)
{
    const yaml_tree_node *m = &tree->nodes[map];
    for (int k = m->first_child; k >= 0;) {
        const yaml_tree_node *key_node = &tree->nodes[k];
        int v = key_node->next;
        LOCO_ASSERT(v >= 0); /* libyaml always pairs keys with values */
        const yaml_tree_node *value = &tree->nodes[v];
        value_site site = {tree->name, key_node->line, key_node->column};
        if (NODE_SCALAR != key_node->kind) {
            return site_error(err, &site, "mapping keys must be plain names");
        }
        char path[256];
        int n = snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "",
                         key_node->text);
        if (n < 0 || (size_t)n >= sizeof path) {
            return site_error(err, &site, "key path too long");
        }
        /* A key may not appear twice in one mapping. */
        for (int j = m->first_child; j != k; j = tree->nodes[tree->nodes[j].next].next) {
            if (0 == strcmp(tree->nodes[j].text ? tree->nodes[j].text : "", key_node->text)) {
                return site_error(err, &site, "%s is given twice", path);
            }
        }
        int index = schema_find(path);
        if (index >= 0) {
            const config_key *key = &g_schema[index];
            cfg->origin[index] = (loco_config_origin){key_node->line, key_node->column, false};
            if (KEY_STRING_LIST == key->type) {
                if (NODE_SEQUENCE != value->kind) {
                    return site_error(err, &site, "%s: expected a list like [\"a\", \"b\"]",
                                      path);
                }
                if (value->count > (int)key->size) {
                    return site_error(err, &site, "%s: %d entries, at most %zu allowed", path,
                                      value->count, key->size);
                }
                char *items[LOCO_MAX_LAYERS];
                int count = 0;
                for (int c = value->first_child; c >= 0; c = tree->nodes[c].next) {
                    if (NODE_SCALAR != tree->nodes[c].kind) {
                        return site_error(err, &site, "%s: list entries must be strings", path);
                    }
                    items[count++] = tree->nodes[c].text;
                }
                loco_error list_err = {0};
                if (LOCO_OK != key->parse_list(cfg, items, count, &list_err)) {
                    return site_error(err, &site, "%s: %s", path, list_err.msg);
                }
            } else if (KEY_INT_LIST == key->type) {
                if (NODE_SEQUENCE != value->kind) {
                    return site_error(err, &site, "%s: expected a list like [0, 0, 2, 2]", path);
                }
                char *items[LOCO_MAX_LAYERS + 1];
                bool quoted[LOCO_MAX_LAYERS + 1];
                int count = 0;
                for (int c = value->first_child; c >= 0; c = tree->nodes[c].next) {
                    if (NODE_SCALAR != tree->nodes[c].kind) {
                        return site_error(err, &site, "%s: list entries must be numbers", path);
                    }
                    if (count > LOCO_MAX_LAYERS) {
                        break;
                    }
                    items[count] = tree->nodes[c].text;
                    quoted[count] = tree->nodes[c].quoted;
                    count++;
                }
                if (count > (int)key->size) {
                    count = value->count; /* report the real length */
                }
                LOCO_TRY(set_int_list(cfg, key, items, quoted, count, &site, err));
            } else {
                if (NODE_SCALAR != value->kind) {
                    char allowed[256];
                    describe_allowed(key, allowed, sizeof allowed);
                    return site_error(err, &site, "%s: expected a single value; allowed: %s",
                                      path, allowed);
                }
                LOCO_TRY(set_scalar(cfg, key, value->text, value->quoted, &site, err));
            }
        } else if (schema_has_section(path)) {
            if (NODE_MAPPING != value->kind) {
                char keys[1024];
                schema_section_keys(path, keys, sizeof keys);
                return site_error(err, &site, "%s is a section; write its keys under it (%s)",
                                  path, keys);
            }
            LOCO_TRY(walk_mapping(cfg, tree, v, path, err));
        } else {
            char keys[1024];
            schema_section_keys(prefix, keys, sizeof keys);
            return site_error(err, &site, "unknown key '%s'%s%s; allowed: %s", key_node->text,
                              prefix[0] ? " in section " : "", prefix, keys);
        }
        k = value->next;
    }
    return LOCO_OK;
}

/* =============================================================================================
 * Public entry points */

loco_status loco_config_set(loco_config *cfg, const char *assignment, loco_error *err)
{
    value_site site = {"--set", 0, 0};
    const char *eq = strchr(assignment, '=');
    if (NULL == eq || eq == assignment) {
        return site_error(err, &site, "'%s' is not of the form section.key=value", assignment);
    }
    char path[256];
    size_t plen = (size_t)(eq - assignment);
    if (plen >= sizeof path) {
        return site_error(err, &site, "key too long in '%s'", assignment);
    }
    memcpy(path, assignment, plen);
    path[plen] = '\0';
    const char *value = eq + 1;
    int index = schema_find(path);
    if (index < 0) {
        char section[256];
        snprintf(section, sizeof section, "%s", path);
        char *dot = strrchr(section, '.');
        if (NULL != dot) {
            *dot = '\0';
        } else {
            section[0] = '\0';
        }
        char keys[1024];
        if (section[0] && !schema_has_section(section)) {
            section[0] = '\0';
        }
        schema_section_keys(section, keys, sizeof keys);
        return site_error(err, &site, "unknown key '%s'; allowed%s%s: %s", path,
                          section[0] ? " in " : "", section, keys);
    }
    const config_key *key = &g_schema[index];
    cfg->origin[index] = (loco_config_origin){0, 0, true};
    char label[300];
    snprintf(label, sizeof label, "--set %s", path);
    site.file = label;
    if (KEY_STRING_LIST == key->type) {
        /* items separated by ';' (link specs contain commas): "10s+2s;30s+1s" */
        char buf[2048];
        snprintf(buf, sizeof buf, "%s", value);
        char *items[LOCO_MAX_LAYERS];
        int count = 0;
        char *save = NULL;
        for (char *tok = strtok_r(buf, ";", &save); NULL != tok; tok = strtok_r(NULL, ";", &save)) {
            if (count == (int)key->size) {
                return site_error(err, &site, "%s: more than %zu entries", path, key->size);
            }
            items[count++] = tok;
        }
        loco_error list_err = {0};
        if (LOCO_OK != key->parse_list(cfg, items, count, &list_err)) {
            return site_error(err, &site, "%s: %s", path, list_err.msg);
        }
        return LOCO_OK;
    }
    if (KEY_INT_LIST == key->type) {
        /* "[0,0,2,2]" or "0,0,2,2" */
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", value);
        char *s = buf;
        size_t n = strlen(s);
        if (n > 0 && '[' == s[0] && ']' == s[n - 1]) {
            s[n - 1] = '\0';
            s++;
        }
        char *items[LOCO_MAX_LAYERS + 1];
        bool quoted[LOCO_MAX_LAYERS + 1] = {false};
        int count = 0;
        for (char *tok = strtok(s, ", "); NULL != tok; tok = strtok(NULL, ", ")) {
            if (count > LOCO_MAX_LAYERS) {
                return site_error(err, &site, "%s: more than %d entries", path, LOCO_MAX_LAYERS);
            }
            items[count++] = tok;
        }
        return set_int_list(cfg, key, items, quoted, count, &site, err);
    }
    return set_scalar(cfg, key, value, false, &site, err);
}

static const char *origin_text(const loco_config *cfg, const char *path, char *buf, size_t cap)
{
    int index = schema_find(path);
    LOCO_ASSERT(index >= 0);
    const loco_config_origin *o = &cfg->origin[index];
    if (o->from_override) {
        snprintf(buf, cap, "--set %s", path);
    } else if (o->line > 0) {
        snprintf(buf, cap, "%s:%d:%d: %s", cfg->file, o->line, o->column, path);
    } else {
        snprintf(buf, cap, "%s%s%s (default)", cfg->file, cfg->file[0] ? ": " : "", path);
    }
    return buf;
}

bool loco_config_key_set(const loco_config *cfg, const char *path)
{
    int index = schema_find(path);
    LOCO_ASSERT(index >= 0);
    return cfg->origin[index].from_override || cfg->origin[index].line > 0;
}

/* codec.* keys the user gave override the chosen codec's own defaults; the rest keep them. */
static void resolve_codec(loco_config *cfg)
{
    loco_sync_params *sp = &cfg->sync;
    loco_codec_id id = LOCO_CODEC_NONE;
    if (0 == cfg->codec_name) {
        id = loco_sync_params_default(sp->strategy).codec.id;
    } else {
        id = (loco_codec_id)(cfg->codec_name - 1);
    }
    const loco_codec_params user = sp->codec;
    loco_codec_params p = loco_codec_params_default(id);
#define TAKE(key, field)                                                                          \
    if (loco_config_key_set(cfg, key)) {                                                          \
        p.field = user.field;                                                                     \
    }
    TAKE("codec.bits", bits);
    TAKE("codec.bucket", bucket);
    TAKE("codec.stochastic", stochastic);
    TAKE("codec.density", density);
    TAKE("codec.chunk_topk", chunk_topk);
    TAKE("codec.rank", rank);
    TAKE("codec.clip_sigma", clip_sigma);
    TAKE("codec.entropy", entropy);
    TAKE("codec.dgc_momentum", dgc_momentum);
    TAKE("codec.dgc_sample", dgc_sample);
    TAKE("codec.dgc_warmup_steps", dgc_warmup_steps);
    TAKE("codec.dgc_clip_norm", dgc_clip_norm);
    TAKE("codec.rng", rng);
#undef TAKE
    if (LOCO_CODEC_FP4 == id && !loco_config_key_set(cfg, "codec.bits")) {
        p.bits = 4;
    }
    sp->codec = p;
    sp->compress = LOCO_CODEC_NONE != id;
    cfg->codec_name = (int)id + 1;
}

/* sync.exchange auto: allgather where it saves the device -> host copy (a GPU diloco worker
 * whose codec the GPU encodes: only the message leaves the GPU), else ring. */
static void resolve_exchange(loco_config *cfg)
{
    loco_sync_params *sp = &cfg->sync;
    if (0 != cfg->exchange_name) {
        sp->exchange = (loco_outer_exchange)(cfg->exchange_name - 1);
        return;
    }
    bool gpu_encodes = LOCO_DEVICE_CUDA == cfg->train.device &&
                       LOCO_SYNC_DILOCO == sp->strategy && sp->compress && 0 == sp->delay &&
                       loco_codec_cuda_encodes(&sp->codec, SIZE_MAX);
    sp->exchange = gpu_encodes ? LOCO_EXCHANGE_ALLGATHER : LOCO_EXCHANGE_RING;
    cfg->exchange_name = (int)sp->exchange + 1;
}

/* Resolve the sync: and codec: sections and check that they fit together. A failure names the
 * file position of the key the message starts with. */
static loco_status resolve_sync(loco_config *cfg, loco_error *err)
{
    resolve_codec(cfg);
    resolve_exchange(cfg);
    cfg->sync.total_steps = cfg->train.steps;
    cfg->sync.seed = cfg->run.seed;
    loco_error inner = {0};
    loco_status st = loco_sync_params_validate(&cfg->sync, &inner);
    if (LOCO_OK == st) {
        return LOCO_OK;
    }
    char key[64] = "";
    sscanf(inner.msg, "%63[a-z_.]", key);
    int index = schema_find(key);
    if (index >= 0 && cfg->origin[index].line > 0) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "%s:%d:%d: %s", cfg->file,
                              cfg->origin[index].line, cfg->origin[index].column, inner.msg);
    }
    if (index >= 0 && cfg->origin[index].from_override) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "--set %s: %s", key, inner.msg);
    }
    return loco_error_set(err, LOCO_ERR_CONFIG, "%s%s%s", cfg->file, cfg->file[0] ? ": " : "",
                          inner.msg);
}

loco_status loco_config_validate(const loco_config *cfg, loco_error *err)
{
    char where[1200];
    const loco_model_config *m = &cfg->model;
    int kv_heads = 0 == m->n_kv_head ? m->n_head : m->n_kv_head;
    if (0 != m->n_embd % m->n_head) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "%s: n_embd %d is not divisible by n_head %d; allowed: a multiple "
                              "of n_head",
                              origin_text(cfg, "model.n_embd", where, sizeof where), m->n_embd,
                              m->n_head);
    }
    if (kv_heads > m->n_head || 0 != m->n_head % kv_heads) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "%s: n_kv_head %d does not divide n_head %d; allowed: a divisor of "
                              "n_head (n_head = MHA, 1 = MQA)",
                              origin_text(cfg, "model.n_kv_head", where, sizeof where), kv_heads,
                              m->n_head);
    }
    if (cfg->kv_src_count > 0 && cfg->kv_src_count != m->n_layer) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "%s: %d entries for %d layers; allowed: exactly one entry per layer",
                              origin_text(cfg, "model.kv_src", where, sizeof where),
                              cfg->kv_src_count, m->n_layer);
    }
    for (int l = 0; l < m->n_layer; l++) {
        int src = m->kv_src[l];
        if (src > l) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "%s: kv_src[%d] = %d names a later layer; allowed: a layer "
                                  "<= %d",
                                  origin_text(cfg, "model.kv_src", where, sizeof where), l, src,
                                  l);
        }
        if (m->kv_src[src] != src) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "%s: kv_src[%d] = %d, but layer %d does not produce K/V "
                                  "(kv_src[%d] = %d); allowed: a layer l' with kv_src[l'] = l'",
                                  origin_text(cfg, "model.kv_src", where, sizeof where), l, src,
                                  src, src, m->kv_src[src]);
        }
    }
    if (cfg->train.seq_len > m->ctx) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "%s: seq_len %d exceeds model.ctx %d; allowed: at most model.ctx",
                              origin_text(cfg, "train.seq_len", where, sizeof where),
                              cfg->train.seq_len, m->ctx);
    }
    if (cfg->train.gpus_per_worker > 1 && LOCO_DEVICE_CUDA != cfg->train.device) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "%s: %d GPUs per worker need train.device: cuda; allowed with "
                              "train.device cpu: 1",
                              origin_text(cfg, "train.gpus_per_worker", where, sizeof where),
                              cfg->train.gpus_per_worker);
    }
    if (cfg->train.hang_at_step >= 0 && LOCO_DEVICE_CUDA != cfg->train.device) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "%s: %d, but a hung GPU needs train.device: cuda; allowed with "
                              "train.device cpu: -1",
                              origin_text(cfg, "train.hang_at_step", where, sizeof where),
                              cfg->train.hang_at_step);
    }
    if (cfg->train.hang_at_step >= 0 && !(cfg->train.gpu_timeout > 0.0f)) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "%s: a worker told to hang at step %d needs train.gpu_timeout > 0 "
                              "to end it; set train.gpu_timeout, e.g. 10",
                              origin_text(cfg, "train.hang_at_step", where, sizeof where),
                              cfg->train.hang_at_step);
    }
    if (0 != cfg->train.batch % cfg->train.gpus_per_worker) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "%s: batch %d is not divisible by train.gpus_per_worker %d (each "
                              "GPU takes an equal share); allowed: a multiple of %d",
                              origin_text(cfg, "train.batch", where, sizeof where),
                              cfg->train.batch, cfg->train.gpus_per_worker,
                              cfg->train.gpus_per_worker);
    }
    if (cfg->optim.min_lr > cfg->optim.lr) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "%s: min_lr %g exceeds lr %g; allowed: at most optim.lr",
                              origin_text(cfg, "optim.min_lr", where, sizeof where),
                              (double)cfg->optim.min_lr, (double)cfg->optim.lr);
    }
    if ('\0' == cfg->run.dir[0]) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "%s: empty; allowed: a directory path",
                              origin_text(cfg, "run.dir", where, sizeof where));
    }
    if ('\0' == cfg->data.path[0]) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "%s: empty; allowed: a directory made by `loco data prepare`",
                              origin_text(cfg, "data.path", where, sizeof where));
    }
    return LOCO_OK;
}

loco_status loco_config_load_string(loco_config *cfg, const char *name, const char *text,
                                    size_t len, const char *const *overrides, int n_overrides,
                                    loco_error *err)
{
    loco_config_defaults(cfg);
    snprintf(cfg->file, sizeof cfg->file, "%s", name);
    yaml_tree tree = {.name = name};
    loco_status st = tree_parse(&tree, text, len, err);
    if (LOCO_OK == st && tree.count > 0) {
        if (NODE_MAPPING != tree.nodes[0].kind) {
            value_site site = {name, tree.nodes[0].line, tree.nodes[0].column};
            char keys[1024];
            schema_section_keys("", keys, sizeof keys);
            st = site_error(err, &site, "the top level must be a mapping of sections (%s)", keys);
        } else {
            st = walk_mapping(cfg, &tree, 0, "", err);
        }
    }
    tree_free(&tree);
    for (int i = 0; LOCO_OK == st && i < n_overrides; i++) {
        st = loco_config_set(cfg, overrides[i], err);
    }
    if (LOCO_OK == st) {
        st = loco_config_validate(cfg, err);
    }
    /* Resolve "same as" defaults so the libraries see concrete values. */
    if (LOCO_OK == st && 0 == cfg->model.n_kv_head) {
        cfg->model.n_kv_head = cfg->model.n_head;
    }
    if (LOCO_OK == st && 0 == cfg->optim.total_steps) {
        cfg->optim.total_steps = cfg->train.steps;
    }
    if (LOCO_OK == st) {
        st = resolve_transport(cfg, err);
        if (LOCO_OK != st && NULL != err) {
            err->status = LOCO_ERR_CONFIG;
            st = LOCO_ERR_CONFIG;
        }
    }
    if (LOCO_OK == st) {
        st = resolve_sync(cfg, err);
    }
    return st;
}

loco_status loco_config_load(loco_config *cfg, const char *path, const char *const *overrides,
                             int n_overrides, loco_error *err)
{
    char *text = NULL;
    size_t len = 0;
    loco_status st = loco_file_read_all(path, CONFIG_MAX_FILE_BYTES, &text, &len, err);
    if (LOCO_OK != st) {
        /* An unreadable or oversized config file is a usage error (exit code 2); the message
         * from the read names the file and the cause. */
        if (NULL != err) {
            err->status = LOCO_ERR_CONFIG;
        }
        return LOCO_ERR_CONFIG;
    }
    st = loco_config_load_string(cfg, path, text, len, overrides, n_overrides, err);
    free(text);
    return st;
}

/* =============================================================================================
 * Output */

static void write_value(const loco_config *cfg, const config_key *key, FILE *out)
{
    const char *field = (const char *)cfg + key->offset;
    switch (key->type) {
    case KEY_INT: fprintf(out, "%d", *(const int *)field); break;
    case KEY_U64: fprintf(out, "%llu", (unsigned long long)*(const uint64_t *)field); break;
    case KEY_FLOAT: fprintf(out, "%.9g", (double)*(const float *)field); break;
    case KEY_BOOL: fputs(*(const bool *)field ? "true" : "false", out); break;
    case KEY_STRING: loco_json_write_escaped(out, field); break; /* JSON strings are YAML */
    case KEY_ENUM: fputs(key->names[*(const int *)field], out); break;
    case KEY_DOUBLE:
    case KEY_UNIT: fprintf(out, "%.17g", *(const double *)field); break;
    case KEY_SIZE: fprintf(out, "%zu", *(const size_t *)field); break;
    case KEY_STRING_LIST: key->write_list(cfg, out); break;
    case KEY_INT_LIST: {
        const int *list = (const int *)field;
        int n = cfg->model.n_layer; /* the only list so far is model.kv_src */
        fputc('[', out);
        for (int i = 0; i < n; i++) {
            fprintf(out, "%s%d", i ? ", " : "", list[i]);
        }
        fputc(']', out);
        break;
    }
    }
}

void loco_config_write_yaml(const loco_config *cfg, FILE *out)
{
    char open_sections[8][64];
    int open_depth = 0;
    for (int i = 0; i < g_schema_count; i++) {
        const config_key *key = &g_schema[i];
        /* Split "a.b.c" into sections a, b and leaf c. */
        char parts[8][64];
        int n_parts = 0;
        const char *p = key->path;
        while (*p && n_parts < 8) {
            size_t len = strcspn(p, ".");
            snprintf(parts[n_parts++], 64, "%.*s", (int)len, p);
            p += len;
            if ('.' == *p) {
                p++;
            }
        }
        int common = 0;
        while (common < open_depth && common < n_parts - 1 &&
               0 == strcmp(open_sections[common], parts[common])) {
            common++;
        }
        open_depth = common;
        for (int s = common; s < n_parts - 1; s++) {
            fprintf(out, "%*s%s:\n", 2 * s, "", parts[s]);
            snprintf(open_sections[s], 64, "%s", parts[s]);
            open_depth = s + 1;
        }
        fprintf(out, "%*s%s: ", 2 * (n_parts - 1), "", parts[n_parts - 1]);
        write_value(cfg, key, out);
        fputc('\n', out);
    }
}

loco_status loco_config_save(const loco_config *cfg, const char *dir, loco_error *err)
{
    char path[LOCO_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    loco_atomic_file af;
    LOCO_TRY(loco_atomic_open(&af, path, err));
    fprintf(af.fp, "# resolved configuration of this run (loco %s)%s%s\n", LOCO_VERSION_STRING,
            cfg->file[0] ? "; loaded from " : "", cfg->file);
    loco_config_write_yaml(cfg, af.fp);
    return loco_atomic_commit(&af, err);
}

void loco_config_print_schema(FILE *out)
{
    loco_config defaults;
    loco_config_defaults(&defaults);
    for (int i = 0; i < g_schema_count; i++) {
        const config_key *key = &g_schema[i];
        char allowed[256];
        describe_allowed(key, allowed, sizeof allowed);
        fprintf(out, "  %-26s ", key->path);
        write_value(&defaults, key, out);
        fprintf(out, "\n      %s; %s\n", key->help, allowed);
    }
}
