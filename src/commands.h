/* src/commands.h — the subcommands of the loco binary; main.c dispatches to them.
 *
 * Each takes argv with argv[0] == the command name, prints its own --help, and returns a process
 * exit code: 0 success, 1 runtime failure, 2 usage or configuration error.
 */
#ifndef LOCO_SRC_COMMANDS_H
#define LOCO_SRC_COMMANDS_H

typedef struct loco_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} loco_command;

int loco_cmd_version(int argc, char **argv);
int loco_cmd_report(int argc, char **argv);
int loco_cmd_train(int argc, char **argv);
int loco_cmd_eval(int argc, char **argv);
int loco_cmd_sample(int argc, char **argv);
int loco_cmd_coordinator(int argc, char **argv);

#endif /* LOCO_SRC_COMMANDS_H */
