/* collectives/coord_impl.h — private to coord.c and coord_plan.c: the coordinator's state.
 *
 * The coordinator is one thread with an epoll loop (coord.c) over its listener and one
 * authenticated connection per member or joiner; every decision is made on that thread, from
 * the state below: verdicts and reconfigurations (the next epoch, parity repairs) by
 * coord_plan.c, deadlines, evictions and takeover after a failover by coord_time.c.
 */
#ifndef LOCO_COLLECTIVES_COORD_IMPL_H
#define LOCO_COLLECTIVES_COORD_IMPL_H

#include "collectives/ft_impl.h"

#include <stdio.h>

typedef enum cm_state {
    CM_PENDING = 0, /* a joiner waiting for a sync point */
    CM_MEMBER,      /* in the current epoch */
    CM_DEAD,        /* its connection broke (or it never came back after a failover) */
    CM_EVICTED,     /* silent, or too late for an operation or a reconfiguration */
    CM_LEFT,        /* left at a sync point */
    CM_FINISHED,    /* said goodbye at the end of its run */
    CM_REFUSED,     /* a joiner that could not be admitted (state layout differs) */
} cm_state;

typedef struct coord_member {
    loco_member m;            /* address and id */
    cm_state state;
    int conn;                 /* its connection slot, or -1 */
    bool registered;          /* REGISTER seen (since the last takeover) */
    uint64_t last_heard_ns;
    loco_msg_progress progress;
    /* the current epoch's operation */
    uint64_t begun_seq, result_seq, result_digest;
    int32_t result_status;
    /* what it reported when registering after a failover */
    uint32_t reg_epoch, reg_verdict;
    uint64_t reg_done_seq, reg_pend_seq, reg_pend_digest;
    /* reconfiguration */
    bool has_req;
    loco_msg_reconf req;      /* its RECONF (owned) */
    bool done;                /* PLAN_DONE for the current round */
    int32_t done_status;
    bool joining;             /* admitted by the round being executed (not counted yet) */
} coord_member;

typedef struct coord_conn {
    int fd;                   /* -1: free slot */
    bool authed;
    loco_hs hs;
    loco_chan chan;
    int member;               /* coord_member index once registered, or -1 */
    uint64_t deadline_ns;     /* handshake / registration deadline */
    char peer[64];
} coord_conn;

#define COORD_RECENT_MAX 1024

struct loco_coord {
    loco_comm_config cfg;
    uint8_t key[32];
    uint64_t nonce;           /* 0 until the first member authenticated (standalone) */
    int listen_fd, port;
    bool own_listen;
    int epfd, evfd, tfd;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;     /* guards stop and stats (read by other threads) */
    pthread_cond_t cond;
    bool stop;
    loco_coord_stats stats;
    FILE *events;             /* events_path, or NULL */
    /* connections and members */
    coord_conn *conns;
    int nconns;
    coord_member *mem;
    int nmem, capmem;
    uint32_t next_id;
    /* the current epoch */
    bool have_table;
    uint32_t epoch;
    int world;
    int *ranks;               /* (capmem) member index of each rank */
    bool broken;              /* a member was lost: no operation can complete in this epoch */
    uint64_t start_ns, next_ping_ns;
    /* operations of the current epoch */
    uint64_t op_seq;          /* the latest operation any member began */
    uint64_t decided_seq;     /* the latest with a verdict */
    uint64_t op_t0;           /* when its first member began it */
    double recent[COORD_RECENT_MAX];
    int nrecent, recent_head;
    /* reconfiguration (recover or sync point) */
    bool reconf;              /* collecting requests or executing a round */
    bool executing;           /* a round was planned; waiting for PLAN_DONE */
    uint32_t reconf_kind;
    uint64_t reconf_t0;
    uint32_t round;           /* rounds ever planned (PLAN and COMMIT carry it) */
    int reconf_rounds;        /* rounds planned in this reconfiguration */
    loco_plan plan;           /* the round being executed (owned) */
    int plan_new_members;     /* joiners admitted in it (counted when it commits) */
    uint64_t step;            /* the last sync point's step */
    /* takeover after a failover */
    bool takeover;
    uint64_t takeover_deadline_ns;
    uint32_t lost_host;
    loco_membership_counts counts;
    uint64_t ops_committed, ops_aborted, reconfigs;
    bool any_registered;
};

/* coord.c */
void coord_send(loco_coord *c, int member, loco_frame_type type, uint32_t epoch, uint64_t seq,
                const uint8_t *payload, uint32_t len);
/* Append one JSON event line (`fields` is the inside of an object, may be ""). */
void coord_event(loco_coord *c, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int coord_find_member(const loco_coord *c, uint32_t id);
int coord_add_member(loco_coord *c, const loco_member *m, cm_state state);
/* Install a member table as the current epoch (members not in it keep their state). */
loco_status coord_set_table(loco_coord *c, uint32_t epoch, const loco_member *table, int n);
int coord_rank_of(const loco_coord *c, int member);
void coord_publish_stats(loco_coord *c);

/* coord_plan.c: verdicts and reconfigurations */
void coord_send_verdict(loco_coord *c, uint64_t seq, loco_verdict_kind v, int blame,
                        int32_t status, const char *reason, int extra);
/* Abort operation seq for everyone (extra: a removed member that should hear it too); the
 * members will ask to recover. */
void coord_abort_op(loco_coord *c, uint64_t seq, int blame, int32_t status, const char *reason,
                    int extra);
void coord_start_reconf(loco_coord *c, uint32_t kind);
/* Collecting: plan once every member asked. Executing: commit once every participant is done. */
void coord_reconf_check(loco_coord *c);
void coord_on_begin(loco_coord *c, int member, uint32_t epoch, uint64_t seq);
void coord_on_result(loco_coord *c, int member, uint32_t epoch, uint64_t seq,
                     const loco_msg_outcome *r);
void coord_on_reconf(loco_coord *c, int member, uint32_t epoch, loco_msg_reconf *req);
void coord_on_plan_done(loco_coord *c, int member, uint32_t round, int32_t status,
                        const char *reason);
void coord_on_register(loco_coord *c, int member, const loco_msg_register *reg);
/* A member is gone (state DEAD, EVICTED or FINISHED), with a reason for the logs. */
void coord_member_gone(loco_coord *c, int member, cm_state state, const char *reason);
/* coord_time.c: deadlines (operation, reconfiguration window, round, takeover grace). */
void coord_tick(loco_coord *c, uint64_t now);
uint64_t coord_next_deadline(const loco_coord *c);
/* The deadline now in force for an operation or a reconfiguration window. */
double coord_deadline_s(const loco_coord *c);

#endif /* LOCO_COLLECTIVES_COORD_IMPL_H */
