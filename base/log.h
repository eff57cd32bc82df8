/* base/log.h — leveled logging to stderr.
 *
 * Lines look like `loco[r2] 12.345 WARN  message`: the prefix names the process (set once by
 * main.c, e.g. the worker rank), then seconds since the process started, the level and the text.
 * The threshold and prefix are the only process-wide settings in base/; main.c sets them once at
 * start-up before any thread runs (DESIGN.md §3: no other global mutable state outside main.c).
 */
#ifndef LOCO_BASE_LOG_H
#define LOCO_BASE_LOG_H

typedef enum loco_log_level {
    LOCO_LOG_DEBUG = 0,
    LOCO_LOG_INFO = 1,
    LOCO_LOG_WARN = 2,
    LOCO_LOG_ERROR = 3,
    LOCO_LOG_SILENT = 4,
} loco_log_level;

/* Set the threshold: messages below it are dropped. Default LOCO_LOG_INFO. */
void loco_log_set_level(loco_log_level level);
loco_log_level loco_log_get_level(void);

/* Set the process name shown in brackets (at most 31 characters; "" for none). */
void loco_log_set_prefix(const char *prefix);

/* Parse "debug", "info", "warn", "error", "silent". Returns -1 if unknown. */
int loco_log_level_parse(const char *name);

void loco_log(loco_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOCO_DEBUG(...) loco_log(LOCO_LOG_DEBUG, __VA_ARGS__)
#define LOCO_INFO(...) loco_log(LOCO_LOG_INFO, __VA_ARGS__)
#define LOCO_WARN(...) loco_log(LOCO_LOG_WARN, __VA_ARGS__)
#define LOCO_ERROR(...) loco_log(LOCO_LOG_ERROR, __VA_ARGS__)

#endif /* LOCO_BASE_LOG_H */
