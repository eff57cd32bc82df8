/* base/log.c — leveled logging to stderr (see log.h). */
#include "log.h"

#include "timer.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Process-wide logging settings: written once by main.c before threads start, read after. */
static loco_log_level g_log_level = LOCO_LOG_INFO;
static char g_log_prefix[32] = "";
static const char *const g_level_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR", "     "};

void loco_log_set_level(loco_log_level level) { g_log_level = level; }

loco_log_level loco_log_get_level(void) { return g_log_level; }

void loco_log_set_prefix(const char *prefix)
{
    snprintf(g_log_prefix, sizeof g_log_prefix, "%s", NULL == prefix ? "" : prefix);
}

int loco_log_level_parse(const char *name)
{
    static const char *const names[] = {"debug", "info", "warn", "error", "silent"};
    for (int i = 0; i < 5; i++) {
        if (0 == strcmp(name, names[i])) {
            return i;
        }
    }
    return -1;
}

void loco_log(loco_log_level level, const char *fmt, ...)
{
    if (level < g_log_level || level >= LOCO_LOG_SILENT) {
        return;
    }
    char line[2048];
    int n = snprintf(line, sizeof line, "loco%s%s%s %8.3f %s ", g_log_prefix[0] ? "[" : "",
                     g_log_prefix, g_log_prefix[0] ? "]" : "", loco_process_seconds(),
                     g_level_names[level]);
    if (n < 0 || (size_t)n >= sizeof line) {
        n = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* One write per line so lines from threads and processes do not interleave. */
    fprintf(stderr, "%s\n", line);
}
