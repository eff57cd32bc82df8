/* base/hash.c — XXH64 (Yann Collet's specification), one-shot and incremental. */
#include "hash.h"

#include <stdio.h>
#include <string.h>

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t read64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8); /* little-endian hosts only; loco targets x86-64 and aarch64 LE */
    return v;
}

static inline uint32_t read32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t xxh_round(uint64_t acc, uint64_t input)
{
    acc += input * P2;
    acc = rotl64(acc, 31);
    return acc * P1;
}

static inline uint64_t xxh_merge(uint64_t acc, uint64_t val)
{
    acc ^= xxh_round(0, val);
    return acc * P1 + P4;
}

static uint64_t xxh_finish(uint64_t h, const uint8_t *p, size_t len)
{
    while (len >= 8) {
        h ^= xxh_round(0, read64(p));
        h = rotl64(h, 27) * P1 + P4;
        p += 8;
        len -= 8;
    }
    if (len >= 4) {
        h ^= (uint64_t)read32(p) * P1;
        h = rotl64(h, 23) * P2 + P3;
        p += 4;
        len -= 4;
    }
    while (len > 0) {
        h ^= (uint64_t)(*p) * P5;
        h = rotl64(h, 11) * P1;
        p++;
        len--;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

static uint64_t xxh_converge(const uint64_t v[4])
{
    uint64_t h = rotl64(v[0], 1) + rotl64(v[1], 7) + rotl64(v[2], 12) + rotl64(v[3], 18);
    for (int i = 0; i < 4; i++) {
        h = xxh_merge(h, v[i]);
    }
    return h;
}

uint64_t loco_hash64(const void *data, size_t len, uint64_t seed)
{
    const uint8_t *p = data;
    const uint8_t *end = p + len;
    uint64_t h;
    if (len >= 32) {
        uint64_t v[4] = {seed + P1 + P2, seed + P2, seed, seed - P1};
        const uint8_t *limit = end - 32;
        do {
            v[0] = xxh_round(v[0], read64(p));
            v[1] = xxh_round(v[1], read64(p + 8));
            v[2] = xxh_round(v[2], read64(p + 16));
            v[3] = xxh_round(v[3], read64(p + 24));
            p += 32;
        } while (p <= limit);
        h = xxh_converge(v);
    } else {
        h = seed + P5;
    }
    h += (uint64_t)len;
    return xxh_finish(h, p, (size_t)(end - p));
}

void loco_hasher_init(loco_hasher *h, uint64_t seed)
{
    memset(h, 0, sizeof *h);
    h->seed = seed;
    h->v[0] = seed + P1 + P2;
    h->v[1] = seed + P2;
    h->v[2] = seed;
    h->v[3] = seed - P1;
}

void loco_hasher_update(loco_hasher *h, const void *data, size_t len)
{
    const uint8_t *p = data;
    h->total_len += len;
    if (h->buf_len + len < 32) {
        memcpy(h->buf + h->buf_len, p, len);
        h->buf_len += (uint32_t)len;
        return;
    }
    if (h->buf_len > 0) {
        size_t fill = 32 - h->buf_len;
        memcpy(h->buf + h->buf_len, p, fill);
        for (int i = 0; i < 4; i++) {
            h->v[i] = xxh_round(h->v[i], read64(h->buf + 8 * i));
        }
        p += fill;
        len -= fill;
        h->buf_len = 0;
    }
    while (len >= 32) {
        for (int i = 0; i < 4; i++) {
            h->v[i] = xxh_round(h->v[i], read64(p + 8 * i));
        }
        p += 32;
        len -= 32;
    }
    memcpy(h->buf, p, len);
    h->buf_len = (uint32_t)len;
}

uint64_t loco_hasher_final(const loco_hasher *h)
{
    uint64_t acc;
    if (h->total_len >= 32) {
        acc = xxh_converge(h->v);
    } else {
        acc = h->seed + P5;
    }
    acc += h->total_len;
    return xxh_finish(acc, h->buf, h->buf_len);
}

void loco_hash_hex(uint64_t digest, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)digest);
}
