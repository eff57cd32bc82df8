/* collectives/membership.h — fault tolerance over a communicator (DESIGN.md §6): one verdict
 * per collective, recovery after a loss, stragglers, joining and leaving at sync points, state
 * parity, coordinator failover, and the run's membership accounting.
 *
 * The control plane. A coordinator (inside the lowest rank's process by default, or a standalone
 * `loco coordinator --listen ADDR`, see coordinator.h) knows the members of each epoch. Every
 * collective reports its result digest to it; it answers every member with one verdict:
 * COMMITTED once every member's digest agrees, else ABORTED. A member's loco_allreduce (and every
 * other collective of comm.h) returns LOCO_OK only on COMMITTED, so no operation is reported done
 * that did not complete everywhere. On ABORTED the caller's inputs are intact (in place buffers
 * restored) and the call returns LOCO_ERR_PEER_LOST (LOCO_ERR_CHECKSUM if results diverged).
 *
 * Recovery: after LOCO_ERR_PEER_LOST, every surviving member calls loco_comm_recover; the
 * coordinator forms the next epoch with the members that asked (dead ones, and live ones that
 * did not ask within the operation deadline, are left out), everyone connects to the new ring,
 * and the caller repeats the operation. loco_allreduce_ft does this loop for one allreduce.
 *
 * Stragglers: an operation not finished everywhere op_deadline_s after its first member began it
 * (or the adaptive deadline: median + k * MAD of recent operations) is aborted and the members
 * holding it up (not started, silent, or on the blocked side of a frozen link) are evicted. With
 * the WAIT policy a live straggler gets straggler_wait_s instead.
 *
 * Sync points: the training loop calls loco_comm_sync_point at the same step on every member
 * with its shared state as a list of named buffers (parameters, outer optimizer state, step,
 * data cursor, RNG: collectives does not know what they are). There the coordinator
 *   - admits processes waiting to join (started with LOCO_BOOTSTRAP_ADMIT / --join HOST:PORT:
 *     authenticated, given a rank in the next epoch), and removes members that asked to leave;
 *   - compares the members' state digests (XXH64 per buffer): a member differing from the
 *     majority is repaired, its differing buffers overwritten ("parity");
 *   - has joiners and repaired members receive the state striped over several TCP streams from
 *     every majority member at once, checked against the majority's digests.
 * A joiner's first loco_comm_sync_point is where it is admitted: it blocks until the group
 * reaches its next sync point, then returns with the group's state in its buffers.
 *
 * Coordinator failover: if the coordinator's process dies, the members reconnect to the lowest
 * surviving rank, which starts a coordinator with the state every member holds (epoch, members,
 * counts, step); an operation in flight is committed if any member had seen it committed (or
 * every member of its epoch reported the same digest), else aborted, the same for everyone.
 *
 * Threading: as comm.h — one thread at a time per communicator; no request may be outstanding
 * when calling loco_comm_recover or loco_comm_sync_point.
 */
#ifndef LOCO_COLLECTIVES_MEMBERSHIP_H
#define LOCO_COLLECTIVES_MEMBERSHIP_H

#include "collectives/comm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Membership events over the whole run, as the coordinator counted them. */
typedef struct loco_membership_counts {
    uint32_t started; /* members of epoch 0 */
    uint32_t died;    /* lost their connection (killed, crashed, host gone) */
    uint32_t evicted; /* alive but not progressing: silent, or late past the deadline */
    uint32_t joined;  /* admitted at a sync point */
    uint32_t left;    /* left at a sync point on request */
} loco_membership_counts;

/* One buffer of the shared state: every member holds the same bytes. */
#define LOCO_STATE_MAX_BUFFERS 256
#define LOCO_STATE_NAME_MAX 63
typedef struct loco_state_buffer {
    const char *name; /* unique, at most LOCO_STATE_NAME_MAX characters */
    void *ptr;        /* (bytes) overwritten when this member joins or is repaired */
    size_t bytes;
} loco_state_buffer;

typedef struct loco_sync_options {
    bool leave; /* this member leaves the group here (SIGTERM, leave_at_step) */
} loco_sync_options;

/* What a recovery or sync point did. */
typedef struct loco_reconf_report {
    uint32_t epoch_before, epoch; /* membership epoch on entry and on return */
    int rank, world;              /* this member's rank and the group's size on return */
    uint32_t member_id;           /* stable id of this member */
    uint64_t step;                /* the group's step at the sync point (a joiner learns it) */
    bool joined;                  /* this process was admitted here and received the state */
    bool left;                    /* this member left (it asked to): stop using the comm */
    bool evicted;                 /* this member was removed (too late, or found dead) */
    bool repaired;                /* this member's state differed from the majority: the
                                     differing buffers were overwritten */
    int n_joined, n_left, n_removed, n_repaired; /* events of this sync point, group-wide */
    int rounds;                   /* plan rounds (more than 1 when a member failed meanwhile) */
    uint64_t state_bytes_received, state_bytes_sent;
    double seconds;               /* time in the call */
    double transfer_seconds;      /* time moving state */
    loco_membership_counts counts;/* run totals */
    char note[256];               /* one line: who joined, left, was repaired, removed */
} loco_reconf_report;

/* After a collective returned LOCO_ERR_PEER_LOST: form the next epoch with the survivors. Every
 * surviving member must call it (with no request outstanding); it returns once the new epoch
 * is connected everywhere, and the caller repeats the failed operations in order. Returns
 * LOCO_ERR_ABORTED with report->evicted when this member was left out (too late, or believed
 * dead), LOCO_ERR_TIMEOUT after ft.sync_timeout_s, LOCO_ERR_INVALID_ARG on a communicator
 * without a control plane. report may be NULL. */
loco_status loco_comm_recover(loco_comm_t comm, loco_reconf_report *report);

/* A step boundary, called by every member with the same `step` and the same buffer layout
 * (names and sizes, in the same order). Admits joiners, removes leavers, checks and repairs the
 * state's parity and hands the state to whoever needs it (see the file comment). On return every
 * member holds bit-identical state buffers. When opt->leave, this member leaves: it returns
 * LOCO_ERR_STOPPED with report->left and must only free the communicator. A joiner passes its
 * own (uninitialised) buffers and any step; they are filled in. Deaths during the sync point are
 * absorbed (the group re-forms without them). report and opt may be NULL. */
loco_status loco_comm_sync_point(loco_comm_t comm, uint64_t step, const loco_state_buffer *state,
                                 int nstate, const loco_sync_options *opt,
                                 loco_reconf_report *report);

/* Leave at the next sync point, as if opt->leave were given there. Async-signal-safe (for a
 * SIGTERM handler). */
void loco_comm_request_leave(loco_comm_t comm);

/* True once this process is a member of the current epoch (a joiner before its first sync
 * point, a member that left or was evicted: false). */
bool loco_comm_admitted(loco_comm_t comm);
/* This member's stable id (its rank in epoch 0; joiners get fresh ids). */
uint32_t loco_comm_member_id(loco_comm_t comm);
/* "HOST:PORT" a new process can give as --join to reach this group through this member (it is
 * redirected to the coordinator). "" before a joiner is admitted. */
void loco_comm_join_address(loco_comm_t comm, char *out, size_t cap);

/* The control plane's totals, for metrics and run.json. */
typedef struct loco_ft_totals {
    loco_membership_counts counts;  /* run-wide, as of the last verdict or plan seen */
    uint64_t ops_committed;         /* this member's operations that were committed */
    uint64_t ops_aborted;           /* ... and aborted */
    uint64_t retries;               /* operations repeated by loco_allreduce_ft */
    uint64_t recoveries;            /* completed loco_comm_recover calls */
    uint64_t sync_points;           /* completed loco_comm_sync_point calls */
    uint64_t repairs;               /* times this member's state was repaired */
    uint64_t epochs;                /* epochs this member went through after the first */
    uint32_t failovers;             /* times this member had to find a new coordinator */
    bool coordinator_here;          /* this process hosts the coordinator now */
    double recover_seconds;         /* total time in loco_comm_recover */
    uint64_t state_bytes_sent, state_bytes_received;
} loco_ft_totals;

void loco_comm_get_ft_totals(loco_comm_t comm, loco_ft_totals *totals);

/* loco_allreduce that recovers and repeats on LOCO_ERR_PEER_LOST, up to max_retries times:
 * on success the result is over the members of the epoch it finally ran in (info->world,
 * info->epoch), info->retries says how often it was repeated. Other failures (and a member
 * that was evicted meanwhile: LOCO_ERR_ABORTED) are returned as they are. */
loco_status loco_allreduce_ft(loco_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                              loco_dtype dtype, loco_reduce_op op, int max_retries,
                              loco_op_info *info);

#endif /* LOCO_COLLECTIVES_MEMBERSHIP_H */
