/* src/main.c — the loco command line: `loco COMMAND [options]`.
 *
 * The only place that turns statuses into exit codes and sets process-wide settings (log level
 * and prefix). Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
 */
#include "base/base.h"
#include "bench/bench.h"
#include "src/commands.h"
#include "src/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const loco_command g_commands[] = {
    {"bench", "run a benchmark against a same-run baseline (loco bench --help)", loco_bench_main},
    {"coordinator", "run a loco run's coordinator as its own process (loco coordinator --help)",
     loco_cmd_coordinator},
    {"data", "prepare token shards from text, inspect and decode them (loco data --help)",
     loco_cmd_data},
    {"eval", "score a checkpoint on prepared text (loco eval --help)", loco_cmd_eval},
    {"report", "compare runs: Markdown table and PNG plots (loco report --help)", loco_cmd_report},
    {"sample", "generate text from a checkpoint (loco sample --help)", loco_cmd_sample},
    {"train", "train a model as a config describes (loco train --help)", loco_cmd_train},
    {"version", "print the version and build features", loco_cmd_version},
};
static const int g_command_count = (int)(sizeof g_commands / sizeof g_commands[0]);

static void usage(FILE *out)
{
    fprintf(out,
            "loco %s — distributed low-communication training\n\n"
            "usage: loco [--log-level LEVEL] COMMAND [options]\n\n"
            "commands:\n",
            LOCO_VERSION_STRING);
    for (int i = 0; i < g_command_count; i++) {
        fprintf(out, "  %-12s %s\n", g_commands[i].name, g_commands[i].summary);
    }
    fprintf(out,
            "\nglobal options:\n"
            "  --log-level LEVEL  debug, info (default), warn, error or silent; also LOCO_LOG\n"
            "  -h, --help         this help; `loco COMMAND --help` explains a command\n\n"
            "exit codes: 0 success, 1 runtime failure, 2 usage or configuration error\n");
}

int main(int argc, char **argv)
{
    (void)loco_process_seconds(); /* log times count from here */
    const char *level = getenv("LOCO_LOG");
    int arg = 1;
    while (arg < argc && '-' == argv[arg][0]) {
        if (0 == strcmp(argv[arg], "-h") || 0 == strcmp(argv[arg], "--help")) {
            usage(stdout);
            return 0;
        }
        if (0 == strcmp(argv[arg], "--log-level") && arg + 1 < argc) {
            level = argv[arg + 1];
            arg += 2;
            continue;
        }
        fprintf(stderr, "loco: unknown option '%s'\n\n", argv[arg]);
        usage(stderr);
        return 2;
    }
    if (NULL != level) {
        int parsed = loco_log_level_parse(level);
        if (parsed < 0) {
            fprintf(stderr, "loco: unknown log level '%s' (debug, info, warn, error, silent)\n",
                    level);
            return 2;
        }
        loco_log_set_level((loco_log_level)parsed);
    }
    if (arg >= argc) {
        usage(stderr);
        return 2;
    }
    for (int i = 0; i < g_command_count; i++) {
        if (0 == strcmp(argv[arg], g_commands[i].name)) {
            return g_commands[i].run(argc - arg, argv + arg);
        }
    }
    fprintf(stderr, "loco: unknown command '%s'\n\n", argv[arg]);
    usage(stderr);
    return 2;
}
