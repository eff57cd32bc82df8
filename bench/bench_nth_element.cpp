// bench/bench_nth_element.cpp — the baseline for exact top-k in `loco bench compress`:
// std::nth_element on a copy of |x| finds the k-th largest magnitude, then one scan keeps the
// entries above it and, in index order, enough entries equal to it (the same tie rule as
// compress/topk.h). The copy, the selection and the scan are all timed.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

extern "C" void loco_bench_nth_element_topk(const float *x, size_t n, size_t k, uint32_t *idx,
                                            float *val)
{
    if (0 == k) {
        return;
    }
    std::vector<float> mag(n);
    for (size_t i = 0; i < n; i++) {
        mag[i] = std::fabs(x[i]);
    }
    std::nth_element(mag.begin(), mag.begin() + (k - 1), mag.end(), std::greater<float>());
    const float thr = mag[k - 1];
    size_t above = 0;
    for (size_t i = 0; i < k; i++) {
        above += mag[i] > thr;
    }
    size_t ties = k - above, o = 0;
    for (size_t i = 0; i < n && o < k; i++) {
        float a = std::fabs(x[i]);
        if (a > thr || (a == thr && ties > 0)) {
            ties -= a == thr;
            idx[o] = (uint32_t)i;
            val[o] = x[i];
            o++;
        }
    }
}
