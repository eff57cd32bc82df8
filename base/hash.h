/* base/hash.h — 64-bit non-cryptographic hashing (XXH64) for state digests and shard checksums.
 *
 * Digests of shared state (parameters, optimizer state, step) are compared between workers to
 * detect divergence; they are not a defence against an attacker (authentication is libsodium's
 * job in collectives/). The output equals the reference XXH64 for the same bytes and seed.
 */
#ifndef LOCO_BASE_HASH_H
#define LOCO_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

/* XXH64 of len bytes with a seed. */
uint64_t loco_hash64(const void *data, size_t len, uint64_t seed);

/* Incremental XXH64: feeding the same bytes in any split gives loco_hash64's result. */
typedef struct loco_hasher {
    uint64_t total_len;
    uint64_t v[4];
    uint64_t seed;
    uint8_t buf[32];
    uint32_t buf_len;
} loco_hasher;

void loco_hasher_init(loco_hasher *h, uint64_t seed);
void loco_hasher_update(loco_hasher *h, const void *data, size_t len);
uint64_t loco_hasher_final(const loco_hasher *h);

/* Render a 64-bit digest as 16 lowercase hex digits plus NUL. */
void loco_hash_hex(uint64_t digest, char out[17]);

#endif /* LOCO_BASE_HASH_H */
