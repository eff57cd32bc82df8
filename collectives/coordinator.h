/* collectives/coordinator.h — the coordinator of a loco run, as a standalone service
 * (`loco coordinator --listen ADDR`, DESIGN.md §1).
 *
 * Members, epochs, heartbeats and one verdict per collective (collectives/membership.h explains
 * the protocol). By default a coordinator runs inside the lowest rank's process and nobody needs
 * this header; a standalone one is started before the workers, which are configured with
 * ft.coordinator: external and ft.coordinator_addr: HOST:PORT. It learns the members from their
 * registrations (the first one brings epoch 0's table). If it dies, the lowest surviving rank
 * takes over. Every connection to it is authenticated with the run key (the same key_file /
 * LOCO_RUN_KEY(_FILE) as the workers; never on the command line).
 */
#ifndef LOCO_COLLECTIVES_COORDINATOR_H
#define LOCO_COLLECTIVES_COORDINATOR_H

#include "collectives/comm.h"
#include "collectives/membership.h"

typedef struct loco_coord loco_coord;

typedef struct loco_coord_config {
    char listen[256];       /* "HOST:PORT" to listen on (PORT 0 = any free port) */
    loco_comm_config comm;  /* the run's transport settings: key, heartbeat_s, peer_timeout_s,
                               integrity and the ft: section (deadlines, straggler policy) */
    char events_path[1024]; /* "" or a file: one JSON line per event (registrations, verdicts,
                               epochs, evictions), appended and flushed as they happen */
} loco_coord_config;

typedef struct loco_coord_stats {
    loco_membership_counts counts;
    uint32_t epoch;            /* current membership epoch */
    int world;                 /* members of the current epoch */
    int alive;                 /* members connected now */
    uint64_t ops_committed, ops_aborted;
    uint64_t reconfigurations; /* plans formed (recoveries and sync points) */
    bool run_over;             /* every member finished, left or died */
} loco_coord_stats;

/* Bind and start serving on a thread of its own. Errors name the address or the missing key. */
loco_status loco_coord_start(loco_coord **coord, const loco_coord_config *cfg, loco_error *err);
/* The port it listens on (for `listen` with port 0). */
int loco_coord_port(const loco_coord *coord);
/* Wait until the run is over (every member finished, left or died after at least one
 * registered) or timeout_s passes (< 0: no limit): LOCO_OK or LOCO_ERR_TIMEOUT. */
loco_status loco_coord_wait(loco_coord *coord, double timeout_s);
void loco_coord_get_stats(loco_coord *coord, loco_coord_stats *stats);
/* Stop serving and free everything (members still connected see it as the coordinator dying
 * and fail over). coord may be NULL. */
void loco_coord_stop(loco_coord *coord);

#endif /* LOCO_COLLECTIVES_COORDINATOR_H */
