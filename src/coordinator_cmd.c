/* src/coordinator_cmd.c — `loco coordinator`: a run's coordinator as its own process
 * (DESIGN.md §1; collectives/coordinator.h).
 *
 *   loco coordinator --listen HOST:PORT [CONFIG.yaml] [--set key=value ...] [--events FILE]
 *                    [--timeout DURATION]
 *
 * The workers of the run use ft.coordinator: external and ft.coordinator_addr: HOST:PORT. The
 * transport and ft settings (heartbeat, timeouts, deadlines, straggler policy, integrity) come
 * from the same config as the workers'; the run key from transport.key_file, LOCO_RUN_KEY_FILE
 * or LOCO_RUN_KEY — never the command line. It serves until the run is over (every member
 * finished, left or died), prints one summary line, and exits 0 (1 on a runtime failure or
 * timeout, 2 on a usage or configuration error). SIGINT or SIGTERM stop it early: the members
 * then fail over to one of them.
 */
#include "base/base.h"
#include "collectives/coordinator.h"
#include "src/commands.h"
#include "src/config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SETS 64

static volatile sig_atomic_t g_stop_requested; /* set by the signal handler only */

static void on_signal(int sig)
{
    (void)sig;
    g_stop_requested = 1;
}

static void coordinator_usage(FILE *out)
{
    fprintf(out,
            "usage: loco coordinator --listen HOST:PORT [CONFIG.yaml] [--set key=value ...]\n"
            "                        [--events FILE] [--timeout DURATION]\n\n"
            "Runs the coordinator of a loco run as its own process: members, epochs, heartbeats\n"
            "and one verdict per collective. Workers use ft.coordinator: external and\n"
            "ft.coordinator_addr: HOST:PORT. The run key comes from transport.key_file,\n"
            "LOCO_RUN_KEY_FILE or LOCO_RUN_KEY (never the command line). Exits when every\n"
            "member finished, left or died, with a summary line.\n\n"
            "  --listen HOST:PORT  address to listen on (PORT 0: any; the port is printed)\n"
            "  --set key=value     override a config key (transport.*, ft.*)\n"
            "  --events FILE       append one JSON line per event (verdicts, epochs, members)\n"
            "  --timeout DURATION  give up after this long (default: none)\n");
}

int loco_cmd_coordinator(int argc, char **argv)
{
    const char *listen = NULL, *config = NULL, *events = NULL, *sets[MAX_SETS];
    int nsets = 0;
    double timeout_s = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (0 == strcmp(a, "-h") || 0 == strcmp(a, "--help")) {
            coordinator_usage(stdout);
            return 0;
        }
        bool has_value = i + 1 < argc;
        if (0 == strcmp(a, "--listen") && has_value) {
            listen = argv[++i];
        } else if (0 == strcmp(a, "--events") && has_value) {
            events = argv[++i];
        } else if (0 == strcmp(a, "--set") && has_value && nsets < MAX_SETS) {
            sets[nsets++] = argv[++i];
        } else if (0 == strcmp(a, "--timeout") && has_value) {
            loco_error e = {0};
            if (LOCO_OK != loco_parse_duration(argv[++i], &timeout_s, &e)) {
                fprintf(stderr, "loco coordinator: --timeout: %s\n", e.msg);
                return 2;
            }
        } else if ('-' != a[0] && NULL == config) {
            config = a;
        } else {
            fprintf(stderr, "loco coordinator: unknown or incomplete option '%s'\n\n", a);
            coordinator_usage(stderr);
            return 2;
        }
    }
    if (NULL == listen) {
        fprintf(stderr, "loco coordinator: --listen HOST:PORT is required\n\n");
        coordinator_usage(stderr);
        return 2;
    }
    loco_config *cfg = calloc(1, sizeof *cfg);
    if (NULL == cfg) {
        return 1;
    }
    loco_error err = {0};
    loco_status st = LOCO_OK;
    if (NULL != config) {
        st = loco_config_load(cfg, config, sets, nsets, &err);
    } else {
        loco_config_defaults(cfg);
        for (int i = 0; i < nsets && LOCO_OK == st; i++) {
            st = loco_config_set(cfg, sets[i], &err);
        }
        if (LOCO_OK == st) {
            st = loco_config_validate(cfg, &err);
        }
    }
    if (LOCO_OK != st) {
        fprintf(stderr, "loco coordinator: %s\n", loco_error_msg(&err, st));
        free(cfg);
        return loco_status_exit_code(st);
    }
    loco_coord_config cc = {.comm = cfg->transport.comm};
    cc.comm.link_rules = NULL;
    cc.comm.n_link_rules = 0;
    snprintf(cc.listen, sizeof cc.listen, "%s", listen);
    if (NULL != events) {
        snprintf(cc.events_path, sizeof cc.events_path, "%s", events);
    } else if ('\0' != cc.comm.ft.events_path[0]) {
        snprintf(cc.events_path, sizeof cc.events_path, "%s", cc.comm.ft.events_path);
    }
    free(cfg);
    loco_coord *coord = NULL;
    st = loco_coord_start(&coord, &cc, &err);
    if (LOCO_OK != st) {
        fprintf(stderr, "loco coordinator: %s\n", loco_error_msg(&err, st));
        return loco_status_exit_code(st);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    printf("loco coordinator: listening on port %d\n", loco_coord_port(coord));
    fflush(stdout);
    double waited = 0;
    st = LOCO_ERR_TIMEOUT;
    while (!g_stop_requested && (timeout_s < 0 || waited < timeout_s)) {
        if (LOCO_OK == loco_coord_wait(coord, 0.2)) {
            st = LOCO_OK;
            break;
        }
        waited += 0.2;
    }
    loco_coord_stats s;
    loco_coord_get_stats(coord, &s);
    loco_coord_stop(coord);
    const char *how = LOCO_OK == st ? "run over" : g_stop_requested ? "stopped" : "timed out";
    printf("loco coordinator: %s: started %u, died %u, evicted %u, joined %u, left %u; epoch %u, "
           "%llu operations committed, %llu aborted, %llu reconfigurations\n",
           how, s.counts.started, s.counts.died, s.counts.evicted, s.counts.joined,
           s.counts.left, s.epoch, (unsigned long long)s.ops_committed,
           (unsigned long long)s.ops_aborted, (unsigned long long)s.reconfigurations);
    return LOCO_OK == st || g_stop_requested ? 0 : 1;
}
