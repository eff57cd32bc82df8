/* tests/cuda_skip.h — GPU tests skip cleanly (with the reason printed) when the process sees no
 * CUDA device or loco was built without CUDA: CI machines have no GPU. */
#ifndef LOCO_TESTS_CUDA_SKIP_H
#define LOCO_TESTS_CUDA_SKIP_H

#include "cuda/cuda.h"

#include <criterion/criterion.h>

#define SKIP_WITHOUT_GPU()                                   \
    do {                                                     \
        if (0 == loco_cuda_device_count()) {                 \
            cr_skip_test("skipped: no CUDA device");         \
        }                                                    \
    } while (0)

#endif /* LOCO_TESTS_CUDA_SKIP_H */
