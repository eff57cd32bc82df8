/* optim/sync.h — sync strategies: how replicas of one model stay in agreement (DESIGN.md §8).
 *
 * The worker loop computes a local gradient and hands it to loco_sync_step, which does the rest
 * of the step: communicate what the strategy communicates, clip, and update the replica. The
 * strategies, one file each:
 *
 *   none       (sync_none.c) a single process: clip, inner optimizer step. No communication.
 *   ddp        (sync_ddp.c) every step the gradients are averaged over the workers, then clipped
 *              and fed to the inner optimizer. Optionally compressed (codec.h): dense and
 *              quantized codecs travel by the compressed ring (loco_allreduce_codec: every hop
 *              decodes, sums in fp32, re-encodes); sparse codecs (top-k, DGC, DCT top-k,
 *              PowerSGD) and any codec under error feedback (ef.h) by an allgather of each
 *              worker's message, which every worker decodes in rank order.
 *   diloco     (sync_diloco.c) H inner steps, then the pseudo-gradient
 *              Delta = theta_global - theta_local is averaged (optionally through a ring codec,
 *              e.g. 8-bit max-min or FP4), the outer optimizer updates theta_global and every
 *              replica restarts from it. Outer optimizer: SGD with momentum mu, Nesterov as
 *              torch.optim.SGD(nesterov=True): b = mu b + Delta; d = Delta + mu b (or d = b);
 *              theta -= outer_lr d. FedAvg is outer_lr 1, mu 0. With delay 1 the average of round
 *              t's Delta is computed by an asynchronous allreduce while round t+1's H steps run
 *              and applied at the end of round t+1 (one round stale): communication hides
 *              behind compute. H is fixed, or QSR: H = max(H_base, floor((alpha / lr)^2)),
 *              recomputed right after each sync, H_base during warm-up, clipped to the steps
 *              left. Every run ends with a sync at its last step, so all replicas finish equal.
 *              sync.exchange picks how the pseudo-gradients travel: ring (the compressed ring
 *              above; raw fp32 without a codec) or allgather (each worker encodes its whole
 *              Delta_i once; the messages are all-gathered and every worker decodes them in
 *              rank order: any codec but dgc and powersgd, no re-encoding error at each hop,
 *              (W-1) messages received per worker instead of the ring's 2(W-1)/W; no delay). With
 *              allgather the caller may encode Delta_i itself (loco_sync_step_in.delta_encoder:
 *              a GPU worker encodes on the device, so only the message crosses to the host).
 *   streaming  (sync_streaming.c) Streaming DiLoCo: the transformer blocks are split into P
 *              fragments (strided: block l in fragment l mod P; sequential: consecutive blocks;
 *              embeddings join the first fragment, the final LayerNorm the last). Every H/P steps
 *              one fragment (round robin) sends its pseudo-gradient (FP4 by default, summed in
 *              fp32), tau steps later the average arrives, the outer optimizer updates that
 *              fragment of theta_global and the replica's fragment is mixed:
 *              local = alpha local + (1 - alpha) global. tau < H/P and P | H are required.
 *   demo       (sync_demo.c) DeMo: per tensor, delta = beta delta + lr g (decoupled momentum),
 *              the top-k coefficients of each DCT chunk of delta are all-gathered and removed
 *              from delta, every worker averages the gathered coefficients (per coefficient,
 *              over the workers that sent it), inverts the DCT and steps
 *              theta -= lr sign(G) after decoupled weight decay theta *= 1 - lr wd.
 *
 * Invariants: the inner optimizer keeps its state across rounds; every shared quantity
 * (theta_global, outer momentum, DDP/DeMo replicas) is fp32 and bit-identical on every worker
 * after each sync (collectives give every member the same bytes and every worker applies them
 * in the same order). Bytes are counted by the communicator (loco_comm_get_totals).
 *
 * Failures: a collective that fails returns its status (LOCO_ERR_PEER_LOST when a member is
 * lost) from loco_sync_step / loco_sync_finish / loco_sync_sum / loco_sync_quiesce. The step's
 * local part (inner update, encoding into error feedback) has then been applied once, the
 * communication has not, and the strategy's shared state is unchanged. The caller recovers
 * and repeats (collectives/membership.h), every member at the same point:
 *   1. loco_sync_quiesce (its status does not matter: it finishes or gives up what is in
 *      flight, so that no request is outstanding);
 *   2. loco_comm_recover (the survivors form the next epoch);
 *   3. loco_sync_recovered (the strategy takes the new rank and world and starts again, in the
 *      new epoch, an asynchronous average the loss interrupted);
 *   4. the failed call again with the same arguments: loco_sync_step and loco_sync_finish then
 *      repeat only the communication and what follows it, over the new members (averages
 *      divide by the new world size); loco_sync_sum's values are intact.
 * A loss can surface later than it happened (an asynchronous average of diloco's delay or a
 * streaming fragment fails at its wait, or at the next collective of anyone): the same four
 * steps apply wherever it surfaces.
 */
#ifndef LOCO_OPTIM_SYNC_H
#define LOCO_OPTIM_SYNC_H

#include "base/base.h"
#include "collectives/comm.h"
#include "compress/codec.h"
#include "compress/ef.h"
#include "optim/optim.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum loco_sync_strategy {
    LOCO_SYNC_NONE = 0,
    LOCO_SYNC_DDP = 1,
    LOCO_SYNC_DILOCO = 2,
    LOCO_SYNC_STREAMING = 3,
    LOCO_SYNC_DEMO = 4,
    LOCO_SYNC_STRATEGY_COUNT
} loco_sync_strategy;

typedef enum loco_h_schedule {
    LOCO_H_FIXED = 0,
    LOCO_H_QSR = 1,
} loco_h_schedule;

typedef enum loco_outer_exchange {
    LOCO_EXCHANGE_RING = 0,      /* diloco: the (compressed) ring allreduce */
    LOCO_EXCHANGE_ALLGATHER = 1, /* diloco: all-gather every worker's encoded Delta_i */
} loco_outer_exchange;

typedef enum loco_fragment_pattern {
    LOCO_FRAGMENT_STRIDED = 0,    /* block l -> fragment l mod P */
    LOCO_FRAGMENT_SEQUENTIAL = 1, /* block l -> fragment l / ceil(L / P) */
} loco_fragment_pattern;

#define LOCO_SYNC_MAX_FRAGMENTS 64

/* What a strategy is asked to do; src/config.c fills it from the YAML sync: and codec: blocks. */
typedef struct loco_sync_params {
    loco_sync_strategy strategy;
    int h;                          /* inner steps per round (QSR: H_base) */
    loco_h_schedule h_schedule;
    float qsr_alpha;                /* QSR's alpha (> 0) */
    float outer_lr;                 /* outer SGD learning rate */
    float outer_momentum;           /* outer momentum mu in [0, 1) */
    bool outer_nesterov;
    int delay;                      /* diloco: 0, or 1 = apply the average one round late */
    loco_outer_exchange exchange;   /* diloco: how pseudo-gradients travel (ring by default) */
    int fragments;                  /* streaming: P */
    loco_fragment_pattern fragment_pattern;
    int overlap;                    /* streaming: tau, 0 <= tau < H/P */
    float mix_alpha;                /* streaming: alpha in [0, 1] */
    float demo_beta;                /* demo: momentum decay in (0, 1] */
    bool compress;                  /* false: exchange raw fp32 (codec ignored) */
    loco_codec_params codec;        /* what travels (when compress) */
    loco_ef_params ef;              /* ddp: error feedback around the codec */
    int total_steps;                /* the run's last step: rounds are cut to end there */
    uint64_t seed;                  /* for stochastic codecs */
} loco_sync_params;

/* Defaults of every field for a strategy: diloco H 50, outer lr 0.7, mu 0.9, Nesterov, no
 * delay; QSR alpha 0.0175; streaming P 2 strided, tau 1, alpha 0.5, FP4 (compress on); demo
 * beta 0.999 with DCT top-k 32 per chunk (compress on); ddp and diloco uncompressed; EF off
 * (mode none); total_steps 1000; seed 1. */
loco_sync_params loco_sync_params_default(loco_sync_strategy strategy);

/* "none", "ddp", "diloco", "streaming", "demo" (and back: LOCO_ERR_CONFIG listing the names). */
const char *loco_sync_strategy_name(loco_sync_strategy strategy);
loco_status loco_sync_strategy_parse(const char *name, loco_sync_strategy *strategy,
                                     loco_error *err);

/* Check params alone (no world size, no model): ranges, and that the codec and error feedback
 * fit the strategy (ring codecs for diloco/streaming, DCT top-k for demo, no EF around DGC,
 * P | H, tau < H/P, QSR only for diloco, ...). LOCO_ERR_CONFIG naming the sync.* or codec.* key
 * and what is allowed. */
loco_status loco_sync_params_validate(const loco_sync_params *params, loco_error *err);

/* Check params against the world and the model's tensor table: more than one worker needs a
 * strategy other than none; streaming needs P <= the number of transformer blocks. */
loco_status loco_sync_check_setup(const loco_sync_params *params, int world,
                                  const loco_tensor_table *table, loco_error *err);

/* QSR's round length for learning rate lr: max(h_base, floor((alpha / lr)^2)) (in double, with
 * a 1e-9 relative guard against rounding just below an integer); h_base when lr <= 0. */
int loco_qsr_h(int h_base, double alpha, double lr);

/* One outer SGD step on n elements: b = mu b + delta; d = nesterov ? delta + mu b : b (with
 * mu = 0: d = delta, b untouched and may be NULL); theta -= lr d. fp32 elementwise, so the
 * result depends only on the inputs (bit-identical wherever it runs). */
void loco_outer_sgd_step(float *theta, float *momentum, const float *delta, size_t n, float lr,
                         float mu, bool nesterov);

typedef struct loco_sync loco_sync; /* a strategy's state on one worker (opaque) */

/* Create the strategy for a replica of n = table->numel parameters. params (n) must already
 * hold the initial weights, identical on every worker (broadcast them first); the strategy
 * copies what it keeps as shared state (theta_global). comm may be NULL for a single process
 * (world 1: averages are identities; a codec still rounds what it would send). The table and
 * comm must outlive the strategy. On failure *sync is NULL. */
loco_status loco_sync_init(loco_sync **sync, const loco_sync_params *params, loco_comm_t comm,
                           const loco_tensor_table *table, const float *params_init,
                           loco_error *err);
void loco_sync_free(loco_sync *sync); /* NULL is fine */

const loco_sync_params *loco_sync_get_params(const loco_sync *sync);
int loco_sync_world(const loco_sync *sync);

/* A caller that encodes diloco's pseudo-gradient itself, where its replica lives (a GPU worker:
 * on the device, so that only the message crosses to the host). encode must write into out (cap
 * bytes; *len the message length) exactly the message loco_codec_encode_ex(codec, NULL, Delta,
 * n, cctx, ...) would write for Delta = global - replica (fp32, elementwise), where global (n,
 * host) is theta_global. global_version changes whenever theta_global does
 * (loco_sync_global_version), so the caller can keep a copy of it and refresh it only then. */
typedef struct loco_sync_delta_encoder {
    void *ctx;
    loco_status (*encode)(void *ctx, const float *global, uint64_t global_version,
                          const loco_codec *codec, const loco_codec_ctx *cctx, uint8_t *out,
                          size_t cap, size_t *len, loco_error *err);
} loco_sync_delta_encoder;

/* The inputs of one training step. */
typedef struct loco_sync_step_in {
    float *params;       /* (n) this replica's parameters, updated in place */
    float *grads;        /* (n) this step's local gradient; the strategy may overwrite it */
    bool grads_finite;   /* false when the local loss was not finite: grads are ignored and
                            this worker contributes nothing this step (it still takes part in
                            every collective, so the others never wait) */
    loco_optim *optim;   /* the inner optimizer (its params.grad_clip is the clip threshold) */
    float lr;            /* this step's learning rate (inner schedule) */
    int64_t step;        /* 0-based index of this step */
    bool inner_done;     /* the caller already clipped and applied the inner optimizer (a GPU
                            worker does it on the device; strategies none, diloco, streaming, see
                            loco_sync_accepts_inner_done): grads is ignored and may be NULL,
                            params must hold the updated replica when loco_sync_step_uses_params
                            says the step reads it */
    double inner_grad_norm; /* with inner_done: the norm the caller measured before clipping
                               (non-finite: the caller skipped the update) */
    const loco_sync_delta_encoder *delta_encoder; /* NULL, or (loco_sync_takes_delta_encoder)
                               the pseudo-gradient's encoder: params is then only written at a
                               round end (the replica restarts from theta_global), never read */
    bool update_by_caller; /* ddp only (loco_sync_averages_for_caller): average grads in place
                              (codec, error feedback) and return; the caller clips and applies
                              the inner optimizer to the average (a GPU worker, on the device).
                              params is not touched; out->grad_norm is not filled */
} loco_sync_step_in;

/* What happened in one step. */
typedef struct loco_sync_step_out {
    double grad_norm;    /* norm of the gradient the update used, before clipping (NaN if none) */
    bool skipped;        /* no update applied (non-finite gradient) */
    bool synced;         /* a sync (outer step / fragment update) completed in this step */
    int fragment;        /* streaming: the fragment that synced, else -1 */
    int h;               /* diloco/streaming: the current round length */
    double comm_wait_s;  /* seconds this step blocked in collectives */
    uint64_t sync_bytes_sent;     /* this step's collectives (exact, from loco_op_info) */
    uint64_t sync_bytes_received;
} loco_sync_step_out;

/* Run the rest of a training step (see the strategies above). On a collective failure returns
 * its status with err naming it (see Failures above); on a non-finite averaged gradient (ddp)
 * the update is skipped on every worker alike (out->skipped). */
loco_status loco_sync_step(loco_sync *sync, const loco_sync_step_in *in, loco_sync_step_out *out,
                           loco_error *err);

/* Strategies whose communication never needs the local gradient (none, diloco, streaming):
 * only those take steps with inner_done (loco_sync_step refuses it elsewhere with
 * LOCO_ERR_INVALID_ARG). */
bool loco_sync_accepts_inner_done(loco_sync_strategy strategy);

/* Does loco_sync_step at 0-based step `step` read or write params? none: never; diloco: at the
 * last step of a round (the pseudo-gradient is taken and the replica restarts from
 * theta_global); streaming: where a fragment's pseudo-gradient is prepared and where an average
 * is mixed in; every other strategy: always. A GPU worker brings its parameters to the host
 * before such a step and back to the device after it, and keeps them on the device otherwise. */
bool loco_sync_step_uses_params(const loco_sync *sync, int64_t step);

/* Strategies that can leave the inner update to the caller after the communication (ddp:
 * loco_sync_step_in.update_by_caller). */
bool loco_sync_averages_for_caller(loco_sync_strategy strategy);

/* Does the strategy take a loco_sync_delta_encoder (diloco with sync.exchange allgather and a
 * codec)? */
bool loco_sync_takes_delta_encoder(const loco_sync *sync);

/* A number that changes whenever theta_global changes (outer step, restored state); 0 for
 * strategies without one. */
uint64_t loco_sync_global_version(const loco_sync *sync);

/* The communicator was re-formed: after loco_comm_recover (step 3 of Failures above), and after
 * a sync point that changed the membership (loco_comm_sync_point with joiners, leavers or
 * removals; call loco_sync_restored first when the state was written). Takes the new rank and
 * world, resizes what depends on them, and restarts a lost asynchronous average. Every member
 * calls it at the same point. Fails only when memory runs out. */
loco_status loco_sync_recovered(loco_sync *sync, loco_error *err);

/* End of training: complete whatever is in flight (delay: apply the last round's average;
 * streaming: one last synchronous sync of every fragment) so params (n) ends equal to the
 * shared theta_global on every worker. out (may be NULL) reports the bytes. */
loco_status loco_sync_finish(loco_sync *sync, float *params, loco_sync_step_out *out,
                             loco_error *err);

/* The parameters to evaluate and digest: theta_global for diloco/streaming (identical on every
 * worker), the replica itself (params) for none/ddp/demo. */
const float *loco_sync_eval_params(const loco_sync *sync, const float *params);

/* Sum count floats over the workers in place (f32, bit-identical everywhere): for sharded
 * validation. A single process returns at once. */
loco_status loco_sync_sum(loco_sync *sync, float *values, size_t count, loco_error *err);

/* ---------------------------------------------------------------------------------------------
 * State: every buffer a strategy keeps, named, for checkpoints, digests and state transfer */

typedef enum loco_sync_dtype {
    LOCO_SYNC_F32 = 0,
    LOCO_SYNC_I64 = 1,
} loco_sync_dtype;

typedef struct loco_sync_buffer {
    const char *name;   /* "outer.params", "outer.momentum", "schedule", "ef.residual", ... */
    loco_sync_dtype dtype;
    void *data;         /* (count) elements of dtype */
    size_t count;
    bool shared;        /* identical on every worker after a sync (what a joiner must receive
                           and what digests compare); false: this worker's own (EF residual,
                           DeMo momentum, DGC velocity) */
} loco_sync_buffer;


/* Complete the operations in flight (diloco with delay, streaming's overlapped fragment),
 * keeping their results to be applied when the schedule says, so that every buffer holds its
 * final bytes. Call between steps before loco_sync_buffers when saving or transferring state.
 * Returns a failed collective's status (see Failures). */
loco_status loco_sync_quiesce(loco_sync *sync, loco_error *err);

/* The strategy's buffers: fills out[0 .. min(count, cap)) and returns count (call with cap 0 to
 * size the array). Names and data belong to the strategy. Writing restored contents into them
 * (same counts) and then calling loco_sync_restored resumes the strategy exactly. Call between
 * steps, after loco_sync_quiesce (an operation in flight leaves its buffer out of the list). */
int loco_sync_buffers(loco_sync *sync, loco_sync_buffer *out, int cap);

/* The buffers hold restored contents: rebuild anything derived from them. */
void loco_sync_restored(loco_sync *sync);

/* XXH64 over the shared buffers in order (names and bytes): equal on every worker after each
 * sync. */
uint64_t loco_sync_shared_digest(loco_sync *sync);

#endif /* LOCO_OPTIM_SYNC_H */
