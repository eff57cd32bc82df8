/* compress/quant_common.c — the bucketed-quantizer driver: payload layout, tile-parallel encode
 * (bucket statistics from quant_stats.c), validate-then-apply decode (quant_impl.h). */
#include "quant_impl.h"
#include "bitpack.h"
#include "crc32.h"

#include <zlib.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

/* Where everything of a quantized payload lives. */
typedef struct qlayout {
    size_t n, bucket, nbuckets; /* effective bucket length B; last bucket may be shorter */
    size_t tiles_per_bucket, items;
    size_t codes_off;           /* start of the codes region */
    size_t full_code_bytes;     /* codes of one full bucket */
    size_t total;               /* payload bytes */
    int bits;                   /* 0: base-3 (ternary) */
    int scale_floats;
} qlayout;

/* Bytes of a run of len codes. */
static size_t run_bytes(int bits, size_t len)
{
    return bits > 0 ? loco_bitpack_bytes(len, bits) : (len + 4) / 5;
}

static void qlayout_init(qlayout *L, const loco_qkind *kind, size_t n, size_t bucket, int bits)
{
    memset(L, 0, sizeof *L);
    L->n = n;
    L->bits = bits;
    L->scale_floats = kind->scale_floats;
    if (0 == n) {
        return;
    }
    L->bucket = (0 == bucket || bucket > n) ? n : bucket;
    L->nbuckets = (n + L->bucket - 1) / L->bucket;
    L->tiles_per_bucket = (L->bucket + LOCO_CODEC_TILE - 1) / LOCO_CODEC_TILE;
    L->items = L->nbuckets * L->tiles_per_bucket;
    L->codes_off = L->nbuckets * (size_t)kind->scale_floats * 4;
    L->full_code_bytes = run_bytes(bits, L->bucket);
    size_t tail = n - (L->nbuckets - 1) * L->bucket;
    L->total = L->codes_off + (L->nbuckets - 1) * L->full_code_bytes + run_bytes(bits, tail);
}

/* Work item i: its bucket, first element, length (0 for an empty tail tile), code offset. */
typedef struct qitem {
    size_t bucket, start, len, code_off;
} qitem;

static qitem qlayout_item(const qlayout *L, size_t i)
{
    qitem it;
    it.bucket = i / L->tiles_per_bucket;
    size_t t = i % L->tiles_per_bucket;
    size_t bstart = it.bucket * L->bucket;
    size_t blen = L->n - bstart < L->bucket ? L->n - bstart : L->bucket;
    size_t off = t * LOCO_CODEC_TILE;
    it.start = bstart + off;
    it.len = off >= blen ? 0 : (blen - off < LOCO_CODEC_TILE ? blen - off : LOCO_CODEC_TILE);
    it.code_off = L->codes_off + it.bucket * L->full_code_bytes + run_bytes(L->bits, off);
    return it;
}

/* Ask for x[0..len) to be brought into the cache (the next buckets, while these compute). */
static inline void prefetch_floats(const float *x, size_t len)
{
#if defined(__GNUC__)
    for (size_t i = 0; i < len; i += 16) { /* one 64-byte line per 16 floats */
        __builtin_prefetch(x + i);
    }
#else
    (void)x;
    (void)len;
#endif
}

/* The input still to be prefetched, asked for a piece at a time between the stages of the
 * current buckets' work. A whole bucket's lines asked for at once fill the core's miss buffers
 * and stall it until the first ones arrive; a few lines at a time overlap with the arithmetic
 * (h200-host: max-min 4-bit stochastic at 64M, 1.02 -> 0.85 ns per element). */
typedef struct qprefetch {
    const float *next;
    size_t left, piece; /* floats */
} qprefetch;

static inline void qprefetch_piece(qprefetch *pf)
{
    if (NULL == pf) {
        return;
    }
    size_t m = pf->left < pf->piece ? pf->left : pf->piece;
    prefetch_floats(pf->next, m);
    pf->next += m;
    pf->left -= m;
}

/* How a message rounds: to nearest, or stochastically with the draws of (rng, seed, stream). */
typedef struct qdraws {
    bool stochastic;
    loco_codec_rng rng;
    uint64_t seed, stream;
} qdraws;

/* Where to code the tiles of a bucket during its statistics pass (scale_free_codes). */
typedef struct qcoder {
    const loco_qkind *kind;
    const qlayout *L;
    size_t first_item; /* the bucket's tile 0 */
    const float *in;   /* the whole input */
    qdraws draws;
    uint8_t *payload;
} qcoder;

static void encode_item(const loco_qkind *kind, const qlayout *L, const qitem *it,
                        const float *in, const float *scales, const qdraws *draws,
                        uint8_t *payload, qprefetch *pf);

/* Code tile t of the coder's bucket (the scales are not used). */
static void qcoder_tile(const qcoder *c, size_t t)
{
    const float none[4] = {0};
    qitem it = qlayout_item(c->L, c->first_item + t);
    encode_item(c->kind, c->L, &it, c->in, none, &c->draws, c->payload, NULL);
}

/* Tile t of a long bucket: its statistics into its lane (t % 64), then coded if there is a
 * coder. */
static void qstats_lane_tile(const float *x, size_t len, unsigned want, const qcoder *coder,
                             loco_qstats *lane, size_t t)
{
    size_t off = t * LOCO_CODEC_TILE;
    size_t n = len - off < LOCO_CODEC_TILE ? len - off : LOCO_CODEC_TILE;
    loco_qstats part;
    loco_qstats_tile(x + off, n, want, &part);
    loco_qstats_merge(&lane[t % 64], &part);
    if (NULL != coder) {
        qcoder_tile(coder, t);
    }
}

/* A bucket's statistics: tiles in order for short buckets; for long ones, 64 fixed lanes (lane
 * l takes tiles l, l+64, ... and merges them in that order), merged in lane order, so the result
 * never depends on threads. With a coder (long buckets only), each tile is also coded right
 * after it is read. */
static void qstats_bucket(const float *x, size_t len, unsigned want, const qcoder *coder,
                          loco_qstats *st)
{
    if (len <= LOCO_CODEC_TILE) {
        loco_qstats_tile(x, len, want, st);
        if (NULL != coder) {
            qcoder_tile(coder, 0);
        }
        return;
    }
    enum { LANES = 64, BLOCK = 4 };
    loco_qstats lane[LANES];
    size_t ntiles = (len + LOCO_CODEC_TILE - 1) / LOCO_CODEC_TILE;
    int lanes = ntiles < LANES ? (int)ntiles : LANES;
    for (int l = 0; l < lanes; l++) {
        loco_qstats_identity(&lane[l]);
    }
#if defined(_OPENMP)
    const bool one_worker = ntiles < 16 || 1 == omp_get_max_threads();
#else
    const bool one_worker = true;
#endif
    if (one_worker) { /* address order: every lane still meets its tiles in increasing order */
        for (size_t t = 0; t < ntiles; t++) {
            qstats_lane_tile(x, len, want, coder, lane, t);
        }
    } else {
        /* A worker takes a block of 4 neighbouring lanes and walks their tiles in address
         * order (4 contiguous tiles, then the next 64); together the workers stream through
         * memory. */
#pragma omp parallel for schedule(static)
        for (int b = 0; b < LANES / BLOCK; b++) {
            for (size_t row = 0; row < ntiles; row += LANES) {
                size_t first = row + (size_t)(b * BLOCK);
                size_t last = first + BLOCK < ntiles ? first + BLOCK : ntiles;
                for (size_t t = first; t < last; t++) {
                    qstats_lane_tile(x, len, want, coder, lane, t);
                }
            }
        }
    }
    *st = lane[0];
    for (int l = 1; l < lanes; l++) {
        loco_qstats_merge(st, &lane[l]);
    }
}

/* ---- packing of one run --------------------------------------------------------------------- */

#if defined(__AVX512VBMI__) && defined(__AVX512BW__)
/* The bytes of 8 groups of 5 trits (the 40 codes at c, no more read) into out[0..8): vpermb
 * spreads the groups over 8-byte slots, vpmaddubsw weighs them by 1, 3, 9, 27, 81 into words
 * that stay below 256 (t0 + 3 t1, 9 t2 + 27 t3, 81 t4, 0) and vpsadbw adds each slot's bytes. */
static inline void trit_groups8_store(const uint8_t *c, uint8_t *out)
{
    static const uint8_t spread[64] = {
        0,  1,  2,  3,  4,  0, 0, 0, 5,  6,  7,  8,  9,  0, 0, 0, 10, 11, 12, 13, 14, 0,
        0,  0,  15, 16, 17, 18, 19, 0, 0, 0, 20, 21, 22, 23, 24, 0, 0,  0,  25, 26, 27, 28,
        29, 0,  0,  0,  30, 31, 32, 33, 34, 0, 0, 0,  35, 36, 37, 38, 39, 0,  0,  0};
    const __m512i weights = _mm512_set1_epi64(0x000000511B090301ll); /* 1 3 9 27 81 0 0 0 */
    __m512i v = _mm512_maskz_loadu_epi8(0xFFFFFFFFFFull, c);
    __m512i t = _mm512_maskz_permutexvar_epi8(0x1F1F1F1F1F1F1F1Full,
                                              _mm512_loadu_si512((const void *)spread), v);
    __m512i sums = _mm512_sad_epu8(_mm512_maddubs_epi16(t, weights), _mm512_setzero_si512());
    _mm_storel_epi64((__m128i *)out, _mm512_cvtepi64_epi8(sums));
}
#elif defined(__AVX2__)
/* The bytes of 8 groups of 5 trits (40 codes at c, reading c[0..46)), as a little-endian word:
 * each 128-bit lane spreads two groups over 8-byte slots, vpmaddubsw weighs them by 1, 3, 9, 27,
 * 81, and vpmaddwd plus a horizontal add finish each group's sum (at most 242). */
static inline uint64_t trit_groups8(const uint8_t *c)
{
    const __m256i spread = _mm256_setr_epi8(0, 1, 2, 3, 4, -1, -1, -1, 5, 6, 7, 8, 9, -1, -1, -1,
                                            0, 1, 2, 3, 4, -1, -1, -1, 5, 6, 7, 8, 9, -1, -1, -1);
    const __m256i weights = _mm256_setr_epi8(1, 3, 9, 27, 81, 0, 0, 0, 1, 3, 9, 27, 81, 0, 0, 0,
                                             1, 3, 9, 27, 81, 0, 0, 0, 1, 3, 9, 27, 81, 0, 0, 0);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i sum[2];
    for (int h = 0; h < 2; h++) { /* groups 4h, 4h + 1 | 4h + 2, 4h + 3 */
        const uint8_t *p = c + 20 * h;
        __m256i v = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p)),
            _mm_loadu_si128((const __m128i *)(p + 10)), 1);
        __m256i w = _mm256_maddubs_epi16(_mm256_shuffle_epi8(v, spread), weights);
        sum[h] = _mm256_madd_epi16(w, ones); /* two partial sums per group */
    }
    /* [g0 g1 g4 g5 | g2 g3 g6 g7] -> g0..g7 in 32-bit lanes, then byte 0 of each */
    __m256i g = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(sum[0], sum[1]),
                                            _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
    const __m256i low_bytes = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                               -1, -1, -1, 0, 4, 8, 12, -1, -1, -1, -1, -1, -1,
                                               -1, -1, -1, -1, -1, -1);
    g = _mm256_shuffle_epi8(g, low_bytes);
    return (uint64_t)(uint32_t)_mm256_extract_epi32(g, 0) |
           (uint64_t)(uint32_t)_mm256_extract_epi32(g, 4) << 32;
}
#endif

static void run_pack(int bits, const uint8_t *codes, size_t len, uint8_t *out)
{
    if (bits > 0) {
        loco_bitpack(codes, len, bits, out);
        return;
    }
    /* Base 3: byte g = t0 + 3 t1 + 9 t2 + 27 t3 + 81 t4 of codes 5 g .. 5 g + 4. With AVX-512
     * VBMI or AVX2, 8 groups at a time while their loads stay inside the run. Then byte 4 of
     * (8 trit bytes, little-endian) * (81, 27, 9, 3, 1 in bytes 0..4) is the sum: bytes 0..3 of
     * the product stay below 256 (no carry in) and trits 5..7 only reach bytes 5 and up. Groups
     * whose 8-byte load would pass the run's end take the plain sum. */
    size_t first = 0; /* groups done */
#if defined(__AVX512VBMI__) && defined(__AVX512BW__)
    for (; 5 * first + 40 <= len; first += 8) {
        trit_groups8_store(codes + 5 * first, out + first);
    }
#elif defined(__AVX2__)
    for (; 5 * first + 46 <= len; first += 8) {
        uint64_t b = trit_groups8(codes + 5 * first);
        memcpy(out + first, &b, 8);
    }
#endif
    const uint64_t weights = 81u | 27u << 8 | 9u << 16 | 3u << 24 | 1ull << 32;
    size_t groups = len / 5, wide = len >= 8 ? (len - 8) / 5 + 1 : 0;
    wide = wide < groups ? wide : groups;
    for (size_t g = first; g < wide; g++) {
        uint64_t v;
        memcpy(&v, codes + 5 * g, 8);
        out[g] = (uint8_t)((v * weights) >> 32);
    }
    for (size_t g = wide > first ? wide : first; g < groups; g++) {
        const uint8_t *t = codes + 5 * g;
        out[g] = (uint8_t)(t[0] + 3 * t[1] + 9 * t[2] + 27 * t[3] + 81 * t[4]);
    }
    size_t rest = len - 5 * groups;
    if (rest > 0) {
        unsigned v = 0, mul = 1;
        for (size_t j = 0; j < rest; j++, mul *= 3) {
            v += codes[5 * groups + j] * mul;
        }
        out[groups] = (uint8_t)v;
    }
}

/* The 5 trits of every byte value 0..242 (t0 + 3 t1 + 9 t2 + 27 t3 + 81 t4), built by the
 * preprocessor: a constant table, no runtime state. */
#define LOCO_T5(v) {(v) % 3, (v) / 3 % 3, (v) / 9 % 3, (v) / 27 % 3, (v) / 81 % 3}
#define LOCO_R3(v) LOCO_T5(v), LOCO_T5((v) + 1), LOCO_T5((v) + 2)
#define LOCO_R9(v) LOCO_R3(v), LOCO_R3((v) + 3), LOCO_R3((v) + 6)
#define LOCO_R27(v) LOCO_R9(v), LOCO_R9((v) + 9), LOCO_R9((v) + 18)
#define LOCO_R81(v) LOCO_R27(v), LOCO_R27((v) + 27), LOCO_R27((v) + 54)
const uint8_t loco_trit_table[243][5] = {LOCO_R81(0), LOCO_R81(81), LOCO_R81(162)};

/* Is a packed run well formed: zero padding bits; for base-3, every byte below 243 and the trits
 * beyond the run zero? (Cheap: no unpacking.) */
static bool run_valid(int bits, const uint8_t *in, size_t len)
{
    if (bits > 0) {
        return loco_bitpack_padding_zero(in, len, bits);
    }
    size_t full = len / 5, rest = len - 5 * full;
    uint8_t worst = 0;
    for (size_t g = 0; g < full; g++) {
        worst = in[g] > worst ? in[g] : worst;
    }
    static const unsigned limit[5] = {1, 3, 9, 27, 81};
    return worst < 243 && (0 == rest || in[full] < limit[rest]);
}

/* Unpack a run that run_valid accepted. */
static void run_unpack(int bits, const uint8_t *in, size_t len, uint8_t *codes)
{
    if (bits > 0) {
        loco_bitunpack(in, len, bits, codes);
        return;
    }
    size_t full = len / 5;
    for (size_t g = 0; g < full; g++) {
        memcpy(codes + 5 * g, loco_trit_table[in[g]], 5);
    }
    if (len > 5 * full) {
        memcpy(codes + 5 * full, loco_trit_table[in[full]], len - 5 * full);
    }
}

/* ---- encode --------------------------------------------------------------------------------- */

int loco_quant_bits(const loco_qkind *kind, const loco_codec_params *p)
{
    return kind->base3 ? 0 : (0 != kind->fixed_bits ? kind->fixed_bits : p->bits);
}

size_t loco_quant_payload_bound(const loco_qkind *kind, const loco_codec_params *p, size_t n)
{
    qlayout L;
    qlayout_init(&L, kind, n, (size_t)p->bucket, loco_quant_bits(kind, p));
    return L.total;
}

/* Quantize and pack one item whose bucket scales are known. */
static void encode_item(const loco_qkind *kind, const qlayout *L, const qitem *it,
                        const float *in, const float *scales, const qdraws *draws,
                        uint8_t *payload, qprefetch *pf)
{
    if (NULL != kind->quantize_packed) { /* no draws, no code array */
        qprefetch_piece(pf);
        kind->quantize_packed(in + it->start, it->len, scales, L->bits, payload + it->code_off);
        qprefetch_piece(pf);
        return;
    }
    uint16_t r[LOCO_CODEC_TILE];
    uint8_t codes[LOCO_CODEC_TILE];
    if (draws->stochastic) {
        loco_codec_draws16(draws->rng, draws->seed, draws->stream, it->start, it->len, r);
    }
    qprefetch_piece(pf);
    kind->quantize(in + it->start, it->len, scales, L->bits, draws->stochastic ? r : NULL,
                   codes);
    qprefetch_piece(pf);
    run_pack(L->bits, codes, it->len, payload + it->code_off);
}

/* A running CRC-32 over consecutive payload bytes, formed a few KB at a time while they are in
 * cache (the framing then need not read the payload again: at 64M elements a 4-bit message is
 * 32 MB streamed back from memory). */
typedef struct qcrc {
    const uint8_t *next;
    size_t pending;
    uint32_t crc;
} qcrc;

/* bytes more were written after the pending ones; CRC them once at least flush_at are pending. */
static void qcrc_add(qcrc *c, size_t bytes, size_t flush_at)
{
    c->pending += bytes;
    if (c->pending > 0 && c->pending >= flush_at) {
        c->crc = loco_crc32(c->crc, c->next, c->pending);
        c->next += c->pending;
        c->pending = 0;
    }
}

loco_status loco_quant_encode(const loco_qkind *kind, const loco_codec_params *p, const float *in,
                              size_t n, const loco_codec_ctx *ctx, uint8_t *payload, size_t cap,
                              size_t *len, loco_wire *w, loco_error *err)
{
    qlayout L;
    qlayout_init(&L, kind, n, (size_t)p->bucket, loco_quant_bits(kind, p));
    if (L.total > cap) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "%s encode: payload needs %zu bytes, capacity %zu (use "
                              "loco_codec_bound)",
                              kind->name, L.total, cap);
    }
    const qdraws draws = {p->stochastic && kind->stochastic, p->rng, ctx->seed,
                          loco_codec_stream(ctx)};
    const int sf = kind->scale_floats;
    int status = LOCO_OK;
    if (L.bucket <= LOCO_CODEC_TILE) {
        /* Short buckets, two at a time: one item per bucket; the pair's statistics in one
         * interleaved pass (loco_qstats_pair), then each bucket's codes. The next pair is
         * prefetched in six pieces while this one computes. Up to 64 contiguous ranges of
         * pairs, each with a running CRC of its codes, combined in order below (a CRC is the
         * same however the ranges are cut). */
        enum { RANGES = 64 };
        const size_t pairs = (L.nbuckets + 1) / 2;
        const size_t nranges = pairs < RANGES ? pairs : RANGES;
        uint32_t range_crc[RANGES];
#pragma omp parallel for schedule(static) reduction(min : status) if (n >= 65536)
        for (size_t r = 0; r < nranges; r++) {
            size_t first = r * pairs / nranges, last = (r + 1) * pairs / nranges;
            qcrc crc = {payload + L.codes_off + 2 * first * L.full_code_bytes, 0, 0};
            for (size_t pair = first; pair < last; pair++) {
                size_t j0 = 2 * pair;
                int count = j0 + 1 < L.nbuckets ? 2 : 1;
                qitem it[2];
                for (int g = 0; g < count; g++) {
                    it[g] = qlayout_item(&L, (j0 + (size_t)g) * L.tiles_per_bucket);
                }
                size_t ahead = it[count - 1].start + it[count - 1].len;
                qprefetch pf = {in + ahead, n - ahead < 2 * L.bucket ? n - ahead : 2 * L.bucket,
                                0};
                pf.piece = (pf.left / 6 + 15) / 16 * 16;
                if (pair + 1 == last) {
                    pf.left = 0; /* the next range's pairs belong to another worker */
                }
                qprefetch_piece(&pf);
                loco_qstats st[2];
                if (2 == count && it[0].len == it[1].len) {
                    loco_qstats_pair(in + it[0].start, in + it[1].start, it[0].len, kind->stats,
                                     st);
                } else {
                    for (int g = 0; g < count; g++) {
                        loco_qstats_tile(in + it[g].start, it[g].len, kind->stats, &st[g]);
                    }
                }
                qprefetch_piece(&pf);
                for (int g = 0; g < count; g++) {
                    if (st[g].absmax_bits >= 0x7F800000u) {
                        status = status < LOCO_ERR_NONFINITE ? status : LOCO_ERR_NONFINITE;
                        continue;
                    }
                    float scales[4];
                    loco_status s = kind->scales(p, L.bits, &st[g], it[g].len, scales);
                    if (LOCO_OK != s) {
                        status = status < (int)s ? status : (int)s;
                        continue;
                    }
                    memcpy(payload + (j0 + (size_t)g) * (size_t)sf * 4, scales, (size_t)sf * 4);
                    encode_item(kind, &L, &it[g], in, scales, &draws, payload, &pf);
                }
                for (int g = 0; g < count; g++) {
                    qcrc_add(&crc, run_bytes(L.bits, it[g].len), 4096);
                }
            }
            qcrc_add(&crc, 0, 0);
            range_crc[r] = crc.crc;
        }
        if (LOCO_OK == status) {
            uint32_t all = loco_crc32(0, payload, L.codes_off); /* the scales */
            for (size_t r = 0; r < nranges; r++) {
                size_t first = 2 * (r * pairs / nranges), last = 2 * ((r + 1) * pairs / nranges);
                size_t from = L.codes_off + first * L.full_code_bytes;
                size_t to = last < L.nbuckets ? L.codes_off + last * L.full_code_bytes : L.total;
                all = (uint32_t)crc32_combine(all, range_crc[r], (z_off_t)(to - from));
            }
            w->payload_crc = all;
            w->payload_crc_known = true;
        }
    } else {
        /* Long buckets: statistics per bucket (parallel inside), then every tile in parallel;
         * families whose codes need no scales code each tile in the statistics pass. */
        for (size_t j = 0; j < L.nbuckets && LOCO_OK == status; j++) {
            size_t start = j * L.bucket;
            size_t blen = n - start < L.bucket ? n - start : L.bucket;
            loco_qstats st;
            qcoder coder = {kind, &L, j * L.tiles_per_bucket, in, draws, payload};
            qstats_bucket(in + start, blen, kind->stats, kind->scale_free_codes ? &coder : NULL,
                          &st);
            if (st.absmax_bits >= 0x7F800000u) {
                status = LOCO_ERR_NONFINITE;
                break;
            }
            float scales[4];
            status = kind->scales(p, L.bits, &st, blen, scales);
            memcpy(payload + j * (size_t)sf * 4, scales, (size_t)sf * 4);
        }
        if (LOCO_OK == status && !kind->scale_free_codes) {
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < L.items; i++) {
                qitem it = qlayout_item(&L, i);
                if (0 == it.len) {
                    continue;
                }
                float scales[4];
                memcpy(scales, payload + it.bucket * (size_t)sf * 4, (size_t)sf * 4);
                encode_item(kind, &L, &it, in, scales, &draws, payload, NULL);
            }
        }
    }
    if (LOCO_ERR_NONFINITE == status) {
        return loco_error_set(err, LOCO_ERR_NONFINITE, "%s encode: input has NaN or Inf",
                              kind->name);
    }
    if (LOCO_OK != status) {
        return loco_error_set(err, (loco_status)status,
                              "%s encode: a bucket's scale is not representable in fp32 "
                              "(values too large); scale the input down",
                              kind->name);
    }
    *len = L.total;
    return LOCO_OK;
}

/* ---- decode --------------------------------------------------------------------------------- */

bool loco_packed_has_code(const uint8_t *packed, size_t len, int bits, unsigned bad)
{
    if (4 == bits || 8 == bits) {
        /* x = word ^ (bad in every field): a field of x is zero where the code is bad; the
         * borrow trick (x - 0x11..) & ~x & 0x88.. is non-zero iff some field is zero */
        const uint64_t ones = 8 == bits ? 0x0101010101010101ull : 0x1111111111111111ull;
        const uint64_t high = ones << (bits - 1), pattern = ones * bad;
        size_t bytes = (len * (size_t)bits + 7) / 8, words = bytes / 8;
        uint64_t hit = 0;
        for (size_t w = 0; w < words; w++) {
            uint64_t v;
            memcpy(&v, packed + 8 * w, 8);
            v ^= pattern;
            hit |= (v - ones) & ~v & high;
        }
        if (0 != hit) {
            return true;
        }
        size_t done = words * 8 * 8 / (size_t)bits; /* codes in the whole words */
        for (size_t i = done; i < len; i++) {
            unsigned code = 8 == bits ? packed[i] : (packed[i / 2] >> (4 * (i % 2))) & 15u;
            if (code == bad) {
                return true;
            }
        }
        return false;
    }
    uint8_t codes[LOCO_CODEC_TILE];
    for (size_t off = 0; off < len; off += LOCO_CODEC_TILE) {
        size_t m = len - off < LOCO_CODEC_TILE ? len - off : LOCO_CODEC_TILE;
        /* a tile of b-bit codes starts on a byte: LOCO_CODEC_TILE is a multiple of 8 */
        loco_bitunpack(packed + off / 8 * (size_t)bits, m, bits, codes);
        unsigned found = 0;
        for (size_t i = 0; i < m; i++) {
            found |= codes[i] == bad;
        }
        if (found) {
            return true;
        }
    }
    return false;
}

loco_status loco_qcheck_nonneg_scale(const float *scales, int bits)
{
    if (!isfinite(scales[0])) {
        return LOCO_ERR_NONFINITE;
    }
    return scales[0] >= 0.0f ? LOCO_OK : LOCO_ERR_RANGE;
}

loco_status loco_quant_decode_add(const loco_qkind *kind, const loco_wire *w,
                                  const uint8_t *payload, size_t len, float *out, size_t n,
                                  float scale, loco_error *err)
{
    int bits = w->bits;
    bool fixed = kind->base3 || 0 != kind->fixed_bits;
    int want = kind->base3 ? 0 : kind->fixed_bits;
    if (fixed && bits != want) {
        return loco_error_set(err, LOCO_ERR_RANGE, "%s message: bits field %d, must be %d",
                              kind->name, bits, want);
    }
    if (!fixed && (bits < kind->min_bits || bits > kind->max_bits)) {
        return loco_error_set(err, LOCO_ERR_RANGE, "%s message: %d bits (allowed %d..%d)",
                              kind->name, bits, kind->min_bits, kind->max_bits);
    }
    if (0 != w->k || 0 != w->nonce || 0 != w->param || 0 != w->rows || 0 != w->cols) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "%s message: header fields unused by this codec are not zero",
                              kind->name);
    }
    qlayout L;
    qlayout_init(&L, kind, n, w->bucket, bits);
    if (len < L.total) {
        return loco_error_set(err, LOCO_ERR_TRUNCATED,
                              "%s message: payload %zu bytes, %zu needed for %zu elements",
                              kind->name, len, L.total, n);
    }
    if (len > L.total) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "%s message: payload %zu bytes, exactly %zu expected", kind->name,
                              len, L.total);
    }
    const int sf = kind->scale_floats;
    for (size_t j = 0; j < L.nbuckets; j++) {
        float scales[4];
        memcpy(scales, payload + j * (size_t)sf * 4, (size_t)sf * 4);
        loco_status s = kind->check_scales(scales, bits);
        if (LOCO_OK != s) {
            return loco_error_set(err, s, "%s message: bucket %zu has a %s scale", kind->name,
                                  j, LOCO_ERR_NONFINITE == s ? "NaN/Inf" : "out-of-range");
        }
    }
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n >= 65536)
    for (size_t i = 0; i < L.items; i++) {
        qitem it = qlayout_item(&L, i);
        if (0 == it.len) {
            continue;
        }
        bool ok = run_valid(L.bits, payload + it.code_off, it.len);
        if (ok && NULL != kind->codes_ok) { /* not every b-bit value is a code */
            ok = kind->codes_ok(payload + it.code_off, it.len, bits);
        }
        bad |= !ok;
    }
    if (bad) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "%s message: a code is outside the alphabet or padding bits are "
                              "set",
                              kind->name);
    }
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t i = 0; i < L.items; i++) {
        qitem it = qlayout_item(&L, i);
        if (0 == it.len) {
            continue;
        }
        uint8_t codes[LOCO_CODEC_TILE];
        float scales[4];
        memcpy(scales, payload + it.bucket * (size_t)sf * 4, (size_t)sf * 4);
        if (NULL != kind->dequant_add_packed) {
            kind->dequant_add_packed(payload + it.code_off, it.len, scales, bits, scale,
                                     out + it.start);
            continue;
        }
        run_unpack(L.bits, payload + it.code_off, it.len, codes);
        kind->dequant_add(codes, it.len, scales, bits, scale, out + it.start);
    }
    return LOCO_OK;
}
