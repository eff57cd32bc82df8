/* tests/test_ft_common.h — helpers shared by the control-plane tests (test_ft*.c): a config with
 * short heartbeats and timeouts, and inputs that depend on the member id so that a result over
 * the wrong set of members shows.
 */
#ifndef LOCO_TESTS_TEST_FT_COMMON_H
#define LOCO_TESTS_TEST_FT_COMMON_H

#include "collectives/ft_impl.h"
#include "test_comm_ranks.h"

static inline loco_comm_config ft_config(void)
{
    loco_comm_config cfg = local_config();
    cfg.heartbeat_s = 0.1;
    cfg.peer_timeout_s = 1.0;
    cfg.op_timeout_s = 20;
    cfg.ft.op_deadline_s = 3.0;
    cfg.ft.sync_timeout_s = 20;
    cfg.ft.join_timeout_s = 20;
    return cfg;
}

/* Inputs that depend on the member id and the attempt, so a result over the wrong set of
 * members shows. */
static inline void fill(float *x, size_t n, uint32_t id)
{
    for (size_t i = 0; i < n; i++) {
        x[i] = input_value((int)id, i);
    }
}

/* The sum over the given member ids, in double: each result must be within fp32 rounding. */
static inline bool close_to_sum(const float *x, size_t n, const uint32_t *ids, int nids)
{
    for (size_t i = 0; i < n; i++) {
        double ref = 0, mag = 0;
        for (int k = 0; k < nids; k++) {
            double v = input_value((int)ids[k], i);
            ref += v;
            mag += v < 0 ? -v : v;
        }
        if ((x[i] > ref ? x[i] - ref : ref - x[i]) > 8 * 0x1p-24 * mag + 1e-30) {
            return false;
        }
    }
    return true;
}

#endif /* LOCO_TESTS_TEST_FT_COMMON_H */
