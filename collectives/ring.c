/* collectives/ring.c — the collectives as ring schedules, run by the event-loop thread.
 *
 * The result is cut into blocks (allreduce: one per member; allgatherv: each member's
 * contribution; broadcast: one), each block into chunks of at most chunk_bytes. An operation is
 * a sequence of ring steps; at step s rank i sends one block to its successor and receives one
 * from its predecessor (N = world size, blocks indexed mod N):
 *
 *   allreduce, reduce-scatter  s = 0..N-2:     send block i-s,        receive block i-s-1 (+=)
 *   allreduce, allgather       s = N-1..2N-3:  send block i+1-(s-N+1), receive block i-(s-N+1)
 *   allgatherv / barrier       s = 0..N-2:     send block i-s,        receive block i-s-1
 *   broadcast from root        d = i-root:     receive at step d-1,   send at step d (d < N-1)
 *
 * In every schedule the block received at step s is the block sent at step s+1, so each chunk
 * travels on its own: when chunk c of step s arrives it is reduced (or stored) and sent on as
 * chunk c of step s+1 at once. Chunks of one block pipeline through the ring and are striped
 * over the data streams (chunk c goes on stream c mod K).
 *
 * Allreduce determinism: after the last reduce-scatter step, rank i holds block i+1 summed over
 * all members in a fixed ring order. It alone finalises it (AVG: divides by N; with a codec:
 * x = decode(encode(x))), and the allgather forwards those bytes verbatim, so every member ends
 * with identical bytes. bf16 is reduced in fp32 and rounded once per hop.
 */
#include "collectives/comm_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t loco_dtype_size(loco_dtype dtype)
{
    switch (dtype) {
    case LOCO_DTYPE_F32: return 4;
    case LOCO_DTYPE_BF16: return 2;
    case LOCO_DTYPE_BYTE: return 1;
    }
    return 0;
}

/* ---- reductions ----------------------------------------------------------------------------- */

void loco_reduce_f32(float *dst, const float *a, const float *b, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        dst[k] = a[k] + b[k];
    }
}

void loco_reduce_bf16(uint16_t *dst, const uint16_t *a, const uint16_t *b, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        dst[k] = loco_f32_to_bf16(loco_bf16_to_f32(a[k]) + loco_bf16_to_f32(b[k]));
    }
}

/* AVG: the owner divides its finished chunk by the world size. */
static void ring_average(uint8_t *region, size_t n, loco_dtype dtype, int world)
{
    float w = (float)world;
    if (LOCO_DTYPE_F32 == dtype) {
        float *x = (float *)region;
        for (size_t k = 0; k < n; k++) {
            x[k] /= w;
        }
    } else {
        uint16_t *x = (uint16_t *)region;
        for (size_t k = 0; k < n; k++) {
            x[k] = loco_f32_to_bf16(loco_bf16_to_f32(x[k]) / w);
        }
    }
}

/* ---- schedule ------------------------------------------------------------------------------- */

static int mod(int x, int n) { return ((x % n) + n) % n; }

/* Distance from the broadcast root along the ring. */
static int ring_bcast_distance(const loco_comm_t comm, const loco_op *op)
{
    return mod(comm->rank - op->root, comm->world);
}

static bool ring_is_recv_step(const loco_comm_t comm, const loco_op *op, int step)
{
    if (LOCO_OP_BROADCAST == op->kind) {
        return ring_bcast_distance(comm, op) == step + 1;
    }
    return step >= 0 && step < op->nsteps;
}

static int ring_recv_block(const loco_comm_t comm, const loco_op *op, int step)
{
    int N = comm->world, i = comm->rank;
    switch (op->kind) {
    case LOCO_OP_ALLREDUCE: return step < N - 1 ? mod(i - step - 1, N) : mod(i - (step - N + 1), N);
    case LOCO_OP_ALLGATHERV:
    case LOCO_OP_BARRIER: return mod(i - step - 1, N);
    case LOCO_OP_BROADCAST: return 0;
    }
    return 0;
}

static size_t ring_chunk_count(const loco_op *op, int block, uint32_t chunk)
{
    const loco_block *b = &op->blocks[block];
    size_t first = (size_t)chunk * op->chunk_elems;
    size_t n = b->count - first;
    return n < op->chunk_elems ? n : op->chunk_elems;
}

/* The result's bytes of (block, chunk). */
static uint8_t *ring_region(const loco_op *op, int block, uint32_t chunk)
{
    if (NULL == op->work) { /* a barrier: every block is empty */
        return NULL;
    }
    size_t elem = op->blocks[block].offset + (size_t)chunk * op->chunk_elems;
    return op->work + elem * op->esize;
}

static uint32_t ring_nchunks(size_t count, size_t chunk_elems)
{
    size_t n = (count + chunk_elems - 1) / chunk_elems;
    return n < 1 ? 1 : (uint32_t)n;
}

static uint8_t *ring_slot(const loco_op *op, int block, uint32_t chunk)
{
    return op->slots + (op->slot_base[block] + chunk) * op->slot_bytes;
}

/* The codec context of the chunk (block, chunk) encoded by `encoder`. */
static loco_codec_ctx ring_codec_ctx(const loco_op *op, int block, uint32_t chunk, int encoder)
{
    loco_codec_ctx ctx = op->ctx;
    ctx.rank = (uint32_t)encoder;
    ctx.tensor = (uint32_t)(op->slot_base[block] + chunk);
    return ctx;
}

/* Signature of an operation: members that start different collectives as the same sequence
 * number are caught at the first frame instead of silently mixing buffers. */
void loco_op_prepare(loco_comm_t comm, loco_op *op)
{
    uint64_t key[8] = {(uint64_t)op->kind, (uint64_t)op->dtype, (uint64_t)op->reduce,
                       (uint64_t)op->count, (uint64_t)(int64_t)op->root,
                       (uint64_t)op->codec_id,
                       (uint64_t)comm->cfg.chunk_bytes, (uint64_t)comm->world};
    uint64_t h = loco_hash64(key, sizeof key, 0);
    if (NULL != op->counts) {
        h = loco_hash64(op->counts, (size_t)comm->world * sizeof *op->counts, h);
    }
    op->sig = (uint32_t)(h ^ (h >> 32));
    op->esize = loco_dtype_size(op->dtype);
}

/* ---- start ---------------------------------------------------------------------------------- */

/* Carve the op's scratch regions out of one arena (sizes first, then one reserve). */
typedef struct ring_layout {
    size_t blocks, recv_base, recv_seen, backup, work, slot_base, slot_len, slots, total;
} ring_layout;

static size_t align64(size_t x) { return (x + 63) & ~(size_t)63; }

static void ring_geometry(loco_comm_t comm, loco_op *op, loco_block *blocks)
{
    int N = comm->world;
    switch (op->kind) {
    case LOCO_OP_ALLREDUCE: {
        size_t base = op->count / (size_t)N, extra = op->count % (size_t)N, off = 0;
        for (int b = 0; b < N; b++) {
            blocks[b].offset = off;
            blocks[b].count = base + ((size_t)b < extra ? 1 : 0);
            off += blocks[b].count;
        }
        break;
    }
    case LOCO_OP_ALLGATHERV:
    case LOCO_OP_BARRIER:
        for (int b = 0; b < N; b++) {
            blocks[b].offset = NULL == op->displs ? 0 : op->displs[b];
            blocks[b].count = NULL == op->counts ? 0 : op->counts[b];
        }
        break;
    case LOCO_OP_BROADCAST:
        blocks[0].offset = 0;
        blocks[0].count = op->count;
        break;
    }
    int nblocks = LOCO_OP_BROADCAST == op->kind ? 1 : N;
    for (int b = 0; b < nblocks; b++) {
        blocks[b].nchunks = ring_nchunks(blocks[b].count, op->chunk_elems);
    }
}

static loco_status ring_layout_op(loco_comm_t comm, loco_op *op, ring_layout *L, loco_error *err)
{
    int N = comm->world;
    memset(L, 0, sizeof *L);
    size_t off = 0;
    L->blocks = off;
    off += align64((size_t)N * sizeof(loco_block));
    L->recv_base = off;
    off += align64((size_t)(op->nsteps + 1) * sizeof(uint64_t));
    L->slot_base = off;
    off += align64((size_t)(N + 1) * sizeof(uint64_t));
    /* geometry is needed to size the rest: compute it in a temporary place first */
    LOCO_TRY(loco_scratch_reserve(comm, off, err));
    op->blocks = (loco_block *)(comm->scratch + L->blocks);
    ring_geometry(comm, op, op->blocks);
    uint64_t nrecv = 0, nslots = 0;
    for (int s = 0; s < op->nsteps; s++) {
        if (ring_is_recv_step(comm, op, s)) {
            nrecv += op->blocks[ring_recv_block(comm, op, s)].nchunks;
        }
    }
    int nblocks = LOCO_OP_BROADCAST == op->kind ? 1 : N;
    for (int b = 0; b < nblocks; b++) {
        nslots += op->blocks[b].nchunks;
    }
    L->recv_seen = off;
    off += align64((size_t)(nrecv + 7) / 8);
    size_t bytes = op->count * op->esize;
    bool in_place = LOCO_OP_ALLREDUCE == op->kind && op->sendbuf == op->recvbuf;
    if (in_place) {
        L->backup = off;
        off += align64(bytes);
    }
    bool bcast_stage = LOCO_OP_BROADCAST == op->kind && comm->rank != op->root;
    if (bcast_stage) {
        L->work = off;
        off += align64(bytes);
    }
    if (NULL != op->hops) {
        L->slot_len = off;
        off += align64((size_t)nslots * sizeof(uint32_t));
        L->slots = off;
        off += align64((size_t)nslots * op->slot_bytes);
    }
    L->total = off;
    LOCO_TRY(loco_scratch_reserve(comm, L->total, err)); /* may move the arena */
    uint8_t *base = comm->scratch;
    op->blocks = (loco_block *)(base + L->blocks);
    op->recv_base = (uint64_t *)(base + L->recv_base);
    op->slot_base = (uint64_t *)(base + L->slot_base);
    op->recv_seen = base + L->recv_seen;
    memset(op->recv_seen, 0, (size_t)(nrecv + 7) / 8);
    op->backup = in_place ? base + L->backup : NULL;
    op->work = bcast_stage ? base + L->work : op->recvbuf;
    if (NULL != op->hops) {
        op->slot_len = (uint32_t *)(base + L->slot_len);
        op->slots = base + L->slots;
    }
    uint64_t acc = 0;
    for (int s = 0; s < op->nsteps; s++) {
        op->recv_base[s] = acc;
        if (ring_is_recv_step(comm, op, s)) {
            acc += op->blocks[ring_recv_block(comm, op, s)].nchunks;
        }
    }
    op->recv_base[op->nsteps] = acc;
    op->recv_expected = acc;
    acc = 0;
    for (int b = 0; b < nblocks; b++) {
        op->slot_base[b] = acc;
        acc += op->blocks[b].nchunks;
    }
    return LOCO_OK;
}

static loco_status ring_send(loco_comm_t comm, loco_op *op, int step, uint32_t chunk,
                             const uint8_t *payload, size_t len, loco_error *err)
{
    return loco_loop_send_data(comm, op, (int)(chunk % (uint32_t)comm->cfg.streams), step, chunk,
                               payload, (uint32_t)len, err);
}

/* Codec: encode n floats of `in` into the slot of (block, chunk). */
static loco_status ring_encode(loco_comm_t comm, loco_op *op, int block, uint32_t chunk,
                               const float *in, size_t n, loco_error *err)
{
    loco_codec_ctx ctx = ring_codec_ctx(op, block, chunk, comm->rank);
    size_t len = 0;
    loco_status st = op->hops->encode(op->codec, NULL, in, n, &ctx, ring_slot(op, block, chunk),
                                      op->slot_bytes, &len);
    if (LOCO_OK != st) {
        return loco_error_set(err, st, "rank %d: encoding chunk %u of block %d failed: %s",
                              comm->rank, chunk, block, loco_status_str(st));
    }
    op->slot_len[op->slot_base[block] + chunk] = (uint32_t)len;
    return LOCO_OK;
}

/* Codec: region = decode(slot of (block, chunk)) as encoded by `encoder`. */
static loco_status ring_decode_into(loco_comm_t comm, loco_op *op, int block, uint32_t chunk,
                                    int encoder, float *region, size_t n, const char *from,
                                    loco_error *err)
{
    loco_codec_ctx ctx = ring_codec_ctx(op, block, chunk, encoder);
    memset(region, 0, n * sizeof(float));
    loco_status st = op->hops->decode_add(op->codec, ring_slot(op, block, chunk),
                                          op->slot_len[op->slot_base[block] + chunk], region, n,
                                          1.0f, &ctx);
    if (LOCO_OK != st) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL,
                              "undecodable codec message (%s) for chunk %u of block %d: %s", from,
                              chunk, block, loco_status_str(st));
    }
    return LOCO_OK;
}

/* The owner finalises a fully reduced chunk: AVG divides; a codec rounds it through itself. */
static loco_status ring_finalize_chunk(loco_comm_t comm, loco_op *op, int block, uint32_t chunk,
                                       loco_error *err)
{
    uint8_t *region = ring_region(op, block, chunk);
    size_t n = ring_chunk_count(op, block, chunk);
    if (LOCO_REDUCE_AVG == op->reduce) {
        ring_average(region, n, op->dtype, comm->world);
    }
    if (NULL != op->hops) {
        LOCO_TRY(ring_encode(comm, op, block, chunk, (const float *)region, n, err));
        LOCO_TRY(ring_decode_into(comm, op, block, chunk, comm->rank, (float *)region, n, "self",
                                  err));
    }
    return LOCO_OK;
}

/* World of one: the result is the input, finalised as an owner would. */
static loco_status ring_start_alone(loco_comm_t comm, loco_op *op, loco_error *err)
{
    if (LOCO_OP_ALLREDUCE == op->kind) {
        if (op->recvbuf != op->sendbuf) {
            memcpy(op->recvbuf, op->sendbuf, op->count * op->esize);
        }
        for (uint32_t c = 0; c < op->blocks[0].nchunks; c++) {
            LOCO_TRY(ring_finalize_chunk(comm, op, 0, c, err));
        }
    } else if (LOCO_OP_ALLGATHERV == op->kind) {
        uint8_t *dst = op->recvbuf + op->blocks[0].offset * op->esize;
        if (dst != op->sendbuf && op->blocks[0].count > 0) {
            memcpy(dst, op->sendbuf, op->blocks[0].count * op->esize);
        }
    }
    return LOCO_OK;
}

loco_status loco_op_start(loco_comm_t comm, loco_op *op, loco_error *err)
{
    int N = comm->world;
    op->chunk_elems = comm->cfg.chunk_bytes / op->esize;
    op->nsteps = LOCO_OP_ALLREDUCE == op->kind ? 2 * (N - 1) : N - 1;
    if (NULL != op->hops) {
        op->slot_bytes = op->hops->bound(op->codec, op->chunk_elems);
    }
    ring_layout layout;
    loco_status st = ring_layout_op(comm, op, &layout, err);
    if (LOCO_OK != st) {
        return st;
    }
    op->max_payload = (uint32_t)(NULL != op->hops ? op->slot_bytes : op->chunk_elems * op->esize);
    if (op->backup) {
        memcpy(op->backup, op->recvbuf, op->count * op->esize);
    }
    if (1 == N) {
        return ring_start_alone(comm, op, err);
    }
    for (int k = 0; k < comm->cfg.streams; k++) {
        loco_conn *c = comm->in[k];
        if (c->rx_cap < op->max_payload) {
            uint8_t *grown = realloc(c->rx_buf, op->max_payload);
            if (NULL == grown) {
                return loco_error_set(err, LOCO_ERR_NOMEM, "rank %d: no memory for a %u-byte "
                                      "receive buffer", comm->rank, op->max_payload);
            }
            c->rx_buf = grown;
            c->rx_cap = op->max_payload;
        }
    }
    /* First sends: our own block (allreduce / allgatherv), or the root's data (broadcast). */
    int i = comm->rank;
    if (LOCO_OP_BROADCAST == op->kind) {
        if (i == op->root) {
            for (uint32_t c = 0; c < op->blocks[0].nchunks; c++) {
                size_t n = ring_chunk_count(op, 0, c);
                LOCO_TRY(ring_send(comm, op, 0, c,
                                   op->recvbuf + (size_t)c * op->chunk_elems * op->esize,
                                   n * op->esize, err));
            }
        }
        return LOCO_OK;
    }
    const loco_block *own = &op->blocks[i];
    if ((LOCO_OP_ALLGATHERV == op->kind || LOCO_OP_BARRIER == op->kind) && own->count > 0) {
        uint8_t *dst = op->recvbuf + own->offset * op->esize;
        if (dst != op->sendbuf) {
            memcpy(dst, op->sendbuf, own->count * op->esize);
        }
    }
    for (uint32_t c = 0; c < own->nchunks; c++) {
        size_t n = ring_chunk_count(op, i, c);
        size_t off = (own->offset + (size_t)c * op->chunk_elems) * op->esize;
        if (NULL != op->hops) {
            LOCO_TRY(ring_encode(comm, op, i, c, (const float *)(op->sendbuf + off), n, err));
            LOCO_TRY(ring_send(comm, op, 0, c, ring_slot(op, i, c),
                               op->slot_len[op->slot_base[i] + c], err));
        } else {
            const uint8_t *src = LOCO_OP_ALLREDUCE == op->kind ? op->sendbuf : op->recvbuf;
            LOCO_TRY(ring_send(comm, op, 0, c, n > 0 ? src + off : NULL, n * op->esize, err));
        }
    }
    return LOCO_OK;
}

/* ---- receive -------------------------------------------------------------------------------- */

loco_status loco_op_accept_header(loco_comm_t comm, loco_op *op, loco_conn *conn, loco_error *err)
{
    const loco_frame_header *h = &conn->rx_frame;
    if (h->sig != op->sig) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL,
                              "it started a different collective as operation %llu (signature "
                              "%08x, ours %08x: kind, count, dtype, op, root, chunk size or "
                              "recvcounts differ)",
                              (unsigned long long)h->seq, h->sig, op->sig);
    }
    int step = h->step;
    if (!ring_is_recv_step(comm, op, step)) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "step %d of a %d-step %s", step,
                              op->nsteps,
                              LOCO_OP_BROADCAST == op->kind ? "broadcast" : "collective");
    }
    int block = ring_recv_block(comm, op, step);
    if (h->chunk >= op->blocks[block].nchunks) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "chunk %u of a %u-chunk block", h->chunk,
                              op->blocks[block].nchunks);
    }
    uint64_t bit = op->recv_base[step] + h->chunk;
    if (op->recv_seen[bit / 8] & (1u << (bit % 8))) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "chunk %u of step %d twice", h->chunk,
                              step);
    }
    size_t n = ring_chunk_count(op, block, h->chunk);
    bool reduce_step = LOCO_OP_ALLREDUCE == op->kind && step < comm->world - 1;
    if (NULL != op->hops) {
        if (h->length > op->slot_bytes) {
            return loco_error_set(err, LOCO_ERR_PROTOCOL,
                                  "a %u-byte codec message for %zu values (bound %zu)",
                                  h->length, n, op->slot_bytes);
        }
        conn->rx_dst = reduce_step ? conn->rx_buf : ring_slot(op, block, h->chunk);
        return LOCO_OK;
    }
    if ((size_t)h->length != n * op->esize) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL,
                              "%u bytes for chunk %u of step %d; expected %zu", h->length,
                              h->chunk, step, n * op->esize);
    }
    conn->rx_dst = reduce_step ? conn->rx_buf : ring_region(op, block, h->chunk);
    return LOCO_OK;
}

/* Allreduce, a reduce-scatter chunk arrived in conn->rx_buf. */
static loco_status ring_on_reduce(loco_comm_t comm, loco_op *op, loco_conn *conn, int step,
                                  int block, uint32_t chunk, loco_error *err)
{
    size_t n = ring_chunk_count(op, block, chunk);
    uint8_t *region = ring_region(op, block, chunk);
    const uint8_t *mine = op->sendbuf + (region - op->work);
    bool last = step == comm->world - 2;
    if (NULL != op->hops) {
        if (region != mine) {
            memcpy(region, mine, n * sizeof(float));
        }
        loco_codec_ctx ctx = ring_codec_ctx(op, block, chunk, comm->prev);
        loco_status st = op->hops->decode_add(op->codec, conn->rx_buf, conn->rx_frame.length,
                                              (float *)region, n, 1.0f, &ctx);
        if (LOCO_OK != st) {
            return loco_error_set(err, LOCO_ERR_PROTOCOL,
                                  "undecodable codec message for chunk %u (%s)", chunk,
                                  loco_status_str(st));
        }
        if (last) {
            LOCO_TRY(ring_finalize_chunk(comm, op, block, chunk, err));
        } else {
            LOCO_TRY(ring_encode(comm, op, block, chunk, (const float *)region, n, err));
        }
        return ring_send(comm, op, step + 1, chunk, ring_slot(op, block, chunk),
                         op->slot_len[op->slot_base[block] + chunk], err);
    }
    if (LOCO_DTYPE_F32 == op->dtype) {
        loco_reduce_f32((float *)region, (const float *)mine, (const float *)conn->rx_buf, n);
    } else {
        loco_reduce_bf16((uint16_t *)region, (const uint16_t *)mine,
                         (const uint16_t *)conn->rx_buf, n);
    }
    if (last) {
        LOCO_TRY(ring_finalize_chunk(comm, op, block, chunk, err));
    }
    return ring_send(comm, op, step + 1, chunk, region, n * op->esize, err);
}

loco_status loco_op_on_payload(loco_comm_t comm, loco_op *op, loco_conn *conn, loco_error *err)
{
    const loco_frame_header *h = &conn->rx_frame;
    int step = h->step;
    int block = ring_recv_block(comm, op, step);
    uint32_t chunk = h->chunk;
    uint64_t bit = op->recv_base[step] + chunk;
    op->recv_seen[bit / 8] |= (uint8_t)(1u << (bit % 8));
    op->recv_done++;
    if (LOCO_OP_ALLREDUCE == op->kind && step < comm->world - 1) {
        return ring_on_reduce(comm, op, conn, step, block, chunk, err);
    }
    size_t n = ring_chunk_count(op, block, chunk);
    if (NULL != op->hops) { /* allgather of a codec message: decode it, forward it verbatim */
        op->slot_len[op->slot_base[block] + chunk] = h->length;
        int owner = mod(block - 1, comm->world);
        LOCO_TRY(ring_decode_into(comm, op, block, chunk, owner,
                                  (float *)ring_region(op, block, chunk), n, "received", err));
        if (step + 1 < op->nsteps) {
            return ring_send(comm, op, step + 1, chunk, ring_slot(op, block, chunk), h->length,
                             err);
        }
        return LOCO_OK;
    }
    bool forward = LOCO_OP_BROADCAST == op->kind ? step + 1 < comm->world - 1
                                                 : step + 1 < op->nsteps;
    if (forward) {
        return ring_send(comm, op, step + 1, chunk, ring_region(op, block, chunk), n * op->esize,
                         err);
    }
    return LOCO_OK;
}

bool loco_op_complete(const loco_op *op)
{
    return op->recv_done == op->recv_expected && 0 == op->tx_outstanding;
}

void loco_op_restore(loco_op *op)
{
    if (NULL != op->backup && op->started) {
        memcpy(op->recvbuf, op->backup, op->count * op->esize);
    }
}

/* The result's digest: the bytes every member must hold identically. */
static uint64_t ring_digest(loco_comm_t comm, const loco_op *op)
{
    switch (op->kind) {
    case LOCO_OP_ALLREDUCE:
    case LOCO_OP_BROADCAST: return loco_hash64(op->work, op->count * op->esize, 0);
    case LOCO_OP_ALLGATHERV: {
        loco_hasher hs;
        loco_hasher_init(&hs, 0);
        for (int b = 0; b < comm->world; b++) {
            loco_hasher_update(&hs, op->recvbuf + op->blocks[b].offset * op->esize,
                               op->blocks[b].count * op->esize);
        }
        return loco_hasher_final(&hs);
    }
    case LOCO_OP_BARRIER: return 0;
    }
    return 0;
}

void loco_op_digest(loco_comm_t comm, loco_op *op)
{
    if (comm->cfg.result_digest && LOCO_OP_BARRIER != op->kind) {
        op->info.has_digest = true;
        op->info.digest = ring_digest(comm, op);
    }
}

void loco_op_commit(loco_comm_t comm, loco_op *op)
{
    if (LOCO_OP_BROADCAST == op->kind && comm->rank != op->root && op->count > 0) {
        memcpy(op->recvbuf, op->work, op->count * op->esize); /* complete: hand it over */
    }
    op->info.status = LOCO_OK;
}
