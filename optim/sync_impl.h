/* optim/sync_impl.h — private to optim/: the strategy table behind loco_sync and the helpers
 * every strategy shares (collectives with byte accounting, message exchange by allgather, the
 * inner update). Reading order: sync.h, this file, sync.c, then one file per strategy
 * (sync_none.c, sync_ddp.c, sync_diloco.c, sync_streaming.c, sync_demo.c).
 */
#ifndef LOCO_OPTIM_SYNC_IMPL_H
#define LOCO_OPTIM_SYNC_IMPL_H

#include "optim/sync.h"

/* A growing list of buffers: entries past cap are counted, not written. */
typedef struct sync_buffer_list {
    loco_sync_buffer *out;
    int cap, count;
} sync_buffer_list;

/* What each strategy implements. step is required; the others may be NULL (nothing to do, no
 * buffers, the replica itself is evaluated). */
typedef struct sync_ops {
    loco_status (*init)(loco_sync *s, const float *params_init, loco_error *err);
    void (*free)(loco_sync *s);
    loco_status (*step)(loco_sync *s, const loco_sync_step_in *in, loco_sync_step_out *out,
                        loco_error *err);
    loco_status (*finish)(loco_sync *s, float *params, loco_sync_step_out *out, loco_error *err);
    /* complete operations in flight, keeping their results for later use */
    loco_status (*quiesce)(loco_sync *s, loco_error *err);
    /* list buffers through sync_add_buffer (which drops what does not fit) */
    void (*buffers)(loco_sync *s, sync_buffer_list *list);
    void (*restored)(loco_sync *s);
    const float *(*eval_params)(const loco_sync *s, const float *params);
    /* does step `step` read or write params (NULL: always) */
    bool (*uses_params)(const loco_sync *s, int64_t step);
    /* the communicator was re-formed (s->rank, s->world are the new ones): resize what depends
     * on the world size and start again an asynchronous operation that was lost */
    loco_status (*recovered)(loco_sync *s, loco_error *err);
    /* changes whenever the shared theta_global does (NULL: no theta_global) */
    uint64_t (*global_version)(const loco_sync *s);
} sync_ops;

extern const sync_ops loco_sync_none_ops;
extern const sync_ops loco_sync_ddp_ops;
extern const sync_ops loco_sync_diloco_ops;
extern const sync_ops loco_sync_streaming_ops;
extern const sync_ops loco_sync_demo_ops;

struct loco_sync {
    loco_sync_params p;
    const sync_ops *ops;
    loco_comm_t comm;              /* NULL: a single process */
    int rank, world;
    uint32_t member;               /* stable id (loco_comm_member_id; = rank in epoch 0): keys
                                      this worker's codec draws, whatever its rank becomes */
    const loco_tensor_table *table;
    size_t n;                      /* parameters */
    loco_codec *codec;             /* NULL when nothing is compressed */
    void *impl;                    /* the strategy's own state */
    /* Resuming after a lost member (sync.h, Failures): the step (or finish) whose
     * communication failed is called again; the strategy then skips its local part. */
    int64_t resume_step;           /* the failed step's index, or -1 */
    bool resume_finish;            /* loco_sync_finish failed in its communication */
    bool resuming;                 /* set by the dispatcher during such a repeated call */
    double resume_grad_norm;       /* what the failed call's local part reported */
    bool resume_skipped;
};

/* ---------------------------------------------------------------------------------------------
 * Collectives with accounting: each adds its op's exact bytes and its blocking time to out
 * (may be NULL). With comm == NULL (one process) they act on the local values alone. */

/* In-place average over the workers of count floats: raw f32 when codec is NULL, else the
 * compressed ring (one process: buf = decode(encode(buf)), what the ring's owner would hold).
 * step keys the codec's random draws. */
loco_status sync_allreduce_avg(loco_sync *s, const loco_codec *codec, float *buf, size_t count,
                               int64_t step, loco_sync_step_out *out, loco_error *err);

/* The same, started asynchronously: *req receives the request (NULL for one process, where the
 * work is done at once). buf belongs to the operation until sync_wait. */
loco_status sync_iallreduce_avg(loco_sync *s, const loco_codec *codec, float *buf, size_t count,
                                int64_t step, loco_request_t *req, loco_error *err);

/* Finish a request from sync_iallreduce_avg (NULL: nothing to wait for). */
loco_status sync_wait(loco_sync *s, loco_request_t *req, loco_sync_step_out *out,
                      loco_error *err);

/* An asynchronous average that survives a lost member (diloco's delay, streaming's fragments).
 * Once started it is in flight until sync_async_wait. A member lost meanwhile makes it "lost":
 * its start was refused (the epoch was already broken) or its wait failed; either way its
 * buffer holds its input again (the collectives restore in-place buffers), and after
 * loco_comm_recover, sync_async_restart starts it again over the new members. */
typedef struct sync_async {
    const loco_codec *codec;
    float *buf;            /* (count) averaged in place */
    size_t count;
    int64_t step;          /* keys the codec's draws */
    loco_request_t req;    /* NULL: done, lost, or one process */
    bool lost;
} sync_async;

/* Start averaging buf (count) in place. A start refused with LOCO_ERR_PEER_LOST marks it lost
 * and returns LOCO_OK: the loss surfaces at sync_async_wait or at the caller's next collective,
 * and the operation is restarted after the recovery. Other failures are returned. */
loco_status sync_async_start(loco_sync *s, sync_async *a, const loco_codec *codec, float *buf,
                             size_t count, int64_t step, loco_error *err);

/* Finish it: LOCO_OK with the average in buf, or LOCO_ERR_PEER_LOST (lost, now or before). */
loco_status sync_async_wait(loco_sync *s, sync_async *a, loco_sync_step_out *out,
                            loco_error *err);

/* After a recovery: start a lost operation again (no-op otherwise). */
loco_status sync_async_restart(loco_sync *s, sync_async *a, loco_error *err);

/* ---------------------------------------------------------------------------------------------
 * Message exchange: each worker encodes its vector as a sequence of units (the whole buffer, or
 * one unit per tensor), every unit through its own codec state and error feedback; the
 * concatenated messages ([u32 length][codec message] per unit) are all-gathered; every worker
 * then reads every worker's units in rank order. */

#define SYNC_NAME_MAX 96

typedef struct sync_unit {
    char name[SYNC_NAME_MAX]; /* the tensor's name, or "all" */
    char buf_names[4][SYNC_NAME_MAX + 24]; /* names of its buffers in the state list */
    size_t offset, numel;     /* range of the flat buffer */
    size_t rows, cols;        /* shape the codec sees (rows * cols == numel) */
    loco_codec_state *cstate;
    loco_ef *ef;              /* error feedback (mode none: the message is C(g)) */
} sync_unit;

typedef struct sync_exchange {
    sync_unit *units;         /* (count) */
    int count;
    size_t bound;             /* largest blob one worker may send */
    uint8_t *send;            /* (bound) this worker's blob */
    size_t send_len;
    uint8_t *recv;            /* (world * bound) every worker's blob */
    size_t *recv_counts;      /* (world) */
    size_t *recv_displs;      /* (world) */
    uint64_t *sizes;          /* (world) */
} sync_exchange;

/* Units over the whole buffer (per_tensor false) or one per tensor of the table (2-D tensors
 * shaped as they are, others 1 x n), each with codec state and EF state (ef may be NULL: none). */
loco_status sync_exchange_init(loco_sync *s, bool per_tensor, const loco_ef_params *ef,
                               sync_exchange *x, loco_error *err);
void sync_exchange_free(sync_exchange *x);

/* The world size changed (recovery, sync point): size the per-worker arrays for s->world. */
loco_status sync_exchange_resize(loco_sync *s, sync_exchange *x, loco_error *err);

/* Encode g (n floats) into x->send, unit by unit (EF state updated). */
loco_status sync_exchange_encode(loco_sync *s, sync_exchange *x, const float *g, int64_t step,
                                 loco_error *err);

/* All-gather the blobs (sizes first, then bytes). Repeatable: the blob is not changed. */
loco_status sync_exchange_gather(loco_sync *s, sync_exchange *x, loco_sync_step_out *out,
                                 loco_error *err);

/* The message of unit u from worker r after a gather, validated for framing. */
loco_status sync_exchange_message(const sync_exchange *x, int r, int u, const uint8_t **msg,
                                  size_t *len, loco_error *err);

/* The codec context of unit u of worker r's message at step. Encoders key their random draws
 * by r = the sender's member id (stable across membership changes, so a message repeated after
 * a recovery is the one first encoded); decoders do not read r. */
loco_codec_ctx sync_codec_ctx(const loco_sync *s, int r, int u, int64_t step);

/* ---------------------------------------------------------------------------------------------
 * The inner update shared by every strategy but demo: clip grads by the inner optimizer's
 * grad_clip (out->grad_norm), then one optimizer step on params with the decay table. A
 * non-finite norm (or !finite) skips the update (out->skipped). With in->inner_done the caller
 * did both: only out->grad_norm and out->skipped are filled from in->inner_grad_norm. */
loco_status sync_inner_update(loco_sync *s, const loco_sync_step_in *in, bool finite,
                              loco_sync_step_out *out, loco_error *err);

/* Append one buffer to the list. */
void sync_add_buffer(sync_buffer_list *list, const char *name, loco_sync_dtype dtype, void *data,
                     size_t count, bool shared);

/* Append the exchange's per-unit buffers (EF residual/estimate, codec state) under
 * PREFIX.UNIT.KIND names (private to this worker). */
void sync_exchange_buffers(sync_exchange *x, sync_buffer_list *list);

#endif /* LOCO_OPTIM_SYNC_IMPL_H */
