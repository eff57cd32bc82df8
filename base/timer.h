/* base/timer.h — monotonic clocks and a small stopwatch. */
#ifndef LOCO_BASE_TIMER_H
#define LOCO_BASE_TIMER_H

#include <stdint.h>

/* Nanoseconds on CLOCK_MONOTONIC (never jumps; for durations and deadlines). */
uint64_t loco_now_ns(void);

/* Seconds on CLOCK_MONOTONIC as a double. */
double loco_now_s(void);

/* Wall-clock seconds since the Unix epoch (for logs and records only, never for deadlines). */
double loco_wall_s(void);

/* Seconds since this process first asked for the time (used by the logger). */
double loco_process_seconds(void);

typedef struct loco_timer {
    uint64_t start_ns;
} loco_timer;

static inline void loco_timer_start(loco_timer *t) { t->start_ns = loco_now_ns(); }
static inline double loco_timer_elapsed_s(const loco_timer *t)
{
    return (double)(loco_now_ns() - t->start_ns) * 1e-9;
}

#endif /* LOCO_BASE_TIMER_H */
