/* tests/test_comm_ranks.h — run a test body on N in-process ranks (threads over real loopback
 * TCP, LOCO_BOOTSTRAP_LOCAL), shared by the tests/test_comm*.c files.
 *
 * Every thread forms a communicator in one loco_local_group and runs the body; bodies record
 * statuses and infos in their slot, and the main thread asserts after run_ranks returns
 * (Criterion's asserts belong on the test's own thread).
 */
#ifndef LOCO_TESTS_TEST_COMM_RANKS_H
#define LOCO_TESTS_TEST_COMM_RANKS_H

#include "collectives/comm.h"
#include "collectives/comm_impl.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define MAX_RANKS 8

/* Wall-clock assertions (rates, latencies) mean nothing in a sanitizer build, which runs several
 * times slower; those tests skip themselves there. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LOCO_TIMING_RELIABLE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LOCO_TIMING_RELIABLE 0
#endif
#endif
#ifndef LOCO_TIMING_RELIABLE
#define LOCO_TIMING_RELIABLE 1
#endif
/* Start a wall-clock test: skip it in sanitizer builds, and take an exclusive lock so two
 * timing tests (Criterion runs tests of a file two at a time) never measure each other. The
 * lock is released when the test's process ends. */
#define TIMING_TEST_BEGIN()                                                                       \
    do {                                                                                          \
        if (!LOCO_TIMING_RELIABLE) {                                                              \
            cr_skip_test("wall-clock timing is not meaningful in a sanitizer build");             \
        }                                                                                         \
        int lock_fd_ = open("/tmp/loco-timing-tests.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0666);   \
        if (lock_fd_ >= 0) {                                                                      \
            flock(lock_fd_, LOCK_EX);                                                             \
        }                                                                                         \
    } while (0)

typedef struct rank_slot rank_slot;
typedef void (*rank_body)(rank_slot *slot);

struct rank_slot {
    int rank, world;
    loco_comm_config cfg;
    loco_comm_t comm;
    loco_status init_status;
    loco_error init_err;
    rank_body body;
    void *arg;
    /* results the body leaves for the main thread */
    loco_status st[16];
    loco_op_info info[16];
    double seconds[16];
    void *out;
    uint64_t digest[16];
};

static inline void *rank_thread(void *p)
{
    rank_slot *slot = p;
    slot->init_status = loco_comm_init(&slot->comm, &slot->cfg, &slot->init_err);
    if (LOCO_OK == slot->init_status) {
        slot->body(slot);
        loco_comm_free(slot->comm);
    }
    return NULL;
}

static inline loco_comm_config local_config(void)
{
    loco_comm_config cfg = LOCO_COMM_CONFIG_INIT;
    cfg.bootstrap = LOCO_BOOTSTRAP_LOCAL; /* run_ranks creates the group */
    cfg.connect_timeout_s = 20;
    cfg.streams = 2;
    cfg.chunk_bytes = 64 * 1024;
    cfg.result_digest = true;
    cfg.has_key = true; /* JOIN bootstraps need a run key (LOCAL groups would make one) */
    memset(cfg.key, 0x5c, sizeof cfg.key);
    return cfg;
}

/* Run body on `world` ranks; cfg is each rank's template (bootstrap/local/rank are set here). */
static inline void run_ranks(int world, const loco_comm_config *cfg, rank_body body, void *arg,
                             rank_slot *slots)
{
    loco_local_group *group = NULL;
    if (LOCO_BOOTSTRAP_LOCAL == cfg->bootstrap) {
        cr_assert_eq(LOCO_OK, loco_local_group_init(&group, world, NULL));
    }
    pthread_t th[MAX_RANKS];
    for (int r = 0; r < world; r++) {
        memset(&slots[r], 0, sizeof slots[r]);
        slots[r].rank = r;
        slots[r].world = world;
        slots[r].cfg = *cfg;
        slots[r].cfg.local = group;
        slots[r].cfg.rank = r;
        slots[r].cfg.world = world;
        slots[r].body = body;
        slots[r].arg = arg;
        pthread_create(&th[r], NULL, rank_thread, &slots[r]);
    }
    for (int r = 0; r < world; r++) {
        pthread_join(th[r], NULL);
    }
    loco_local_group_free(group);
    for (int r = 0; r < world; r++) {
        cr_assert_eq(LOCO_OK, slots[r].init_status, "rank %d init: %s", r, slots[r].init_err.msg);
    }
}

/* A TCP port that was free a moment ago (bound to port 0, then closed). */
static inline int free_port(void)
{
    int fd = -1, port = 0;
    cr_assert_eq(LOCO_OK, loco_net_listen("127.0.0.1", 0, &fd, &port, NULL));
    close(fd);
    return port;
}

/* Deterministic inputs: rank r's element i. */
static inline float input_value(int rank, size_t i)
{
    uint32_t out[4];
    loco_rng_block(1234, (uint64_t)rank, i, out);
    return (loco_u32_to_unit(out[0]) - 0.5f) * 4.0f;
}

#endif /* LOCO_TESTS_TEST_COMM_RANKS_H */
