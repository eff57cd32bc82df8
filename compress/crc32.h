/* compress/crc32.h — CRC-32 (the zlib/gzip polynomial) of message bytes.
 *
 * loco_crc32 returns exactly zlib's crc32_z(crc, buf, len). On x86-64 with PCLMULQDQ (and
 * SSE4.1) it folds 64 bytes at a time with carry-less multiplies (Gopal et al., "Fast CRC
 * Computation for Generic Polynomials Using PCLMULQDQ Instruction", Intel 2009), about ten
 * times faster than zlib's table-driven code; with VPCLMULQDQ, 128 bytes at a time on ymm or
 * 256 on zmm registers (dev, Zen 3: 11 -> 20 GB/s per core); elsewhere, and for short inputs,
 * it calls zlib.
 */
#ifndef LOCO_COMPRESS_CRC32_H
#define LOCO_COMPRESS_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32 of buf[0..len) continuing from crc (0 to start), equal to zlib's crc32_z. */
uint32_t loco_crc32(uint32_t crc, const uint8_t *buf, size_t len);

#endif /* LOCO_COMPRESS_CRC32_H */
