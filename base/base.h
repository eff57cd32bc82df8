/* base/base.h — the ground floor of loco, in one include.
 *
 * Read in this order: status.h (status codes, loco_error, LOCO_ASSERT), log.h, timer.h, rng.h
 * (Philox, keyed by seed/stream/counter), hash.h (XXH64 digests), half.h (bf16/fp16), tensor.h
 * (the tensor table), json.h (writer and safe reader), fileio.h (atomic writes).
 * Nothing in base/ includes a header from any other loco folder.
 */
#ifndef LOCO_BASE_BASE_H
#define LOCO_BASE_BASE_H

#include "fileio.h"
#include "half.h"
#include "hash.h"
#include "json.h"
#include "log.h"
#include "rng.h"
#include "status.h"
#include "tensor.h"
#include "timer.h"

#define LOCO_VERSION_STRING "0.1.0"

#endif /* LOCO_BASE_BASE_H */
