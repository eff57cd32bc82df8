/* base/timer.c — monotonic clocks (see timer.h). */
#include "timer.h"

#include <time.h>

uint64_t loco_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double loco_now_s(void) { return (double)loco_now_ns() * 1e-9; }

double loco_wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double loco_process_seconds(void)
{
    /* The first caller fixes the origin; a race on first use is benign (compare-exchange keeps
     * one of two nearly equal values). */
    static uint64_t origin_ns; /* set once, on first use */
    uint64_t now = loco_now_ns();
    if (0 == __atomic_load_n(&origin_ns, __ATOMIC_RELAXED)) {
        uint64_t expected = 0;
        __atomic_compare_exchange_n(&origin_ns, &expected, now, 0, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED);
    }
    return (double)(now - __atomic_load_n(&origin_ns, __ATOMIC_RELAXED)) * 1e-9;
}
