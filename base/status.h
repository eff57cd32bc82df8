/* base/status.h — loco's status codes, error details and programmer-error asserts.
 *
 * Every fallible function in loco returns a loco_status: LOCO_OK (0) or a negative error.
 * Functions that can say more than a code take an optional `loco_error *err` and fill it with a
 * one-line message naming what is wrong and how to fix it (file, peer, key, ...). Library code
 * never exits; only src/main.c turns a status into an exit code (loco_status_exit_code).
 */
#ifndef LOCO_BASE_STATUS_H
#define LOCO_BASE_STATUS_H

#include <stdarg.h>
#include <stddef.h>

typedef enum loco_status {
    LOCO_OK = 0,
    LOCO_ERR_INVALID_ARG = -1,   /* a caller passed a bad argument */
    LOCO_ERR_NOMEM = -2,         /* an allocation failed */
    LOCO_ERR_IO = -3,            /* a read/write/open/rename failed (errno in the message) */
    LOCO_ERR_FORMAT = -4,        /* a file or message is malformed (bad magic, bad field) */
    LOCO_ERR_VERSION = -5,       /* a file or peer speaks another format/protocol version */
    LOCO_ERR_CHECKSUM = -6,      /* a checksum or digest did not match: corrupt data */
    LOCO_ERR_TRUNCATED = -7,     /* data ended before its declared length */
    LOCO_ERR_RANGE = -8,         /* a value is out of its allowed range */
    LOCO_ERR_CONFIG = -9,        /* a configuration is invalid (usage error, exit code 2) */
    LOCO_ERR_USAGE = -10,        /* a command line is invalid (exit code 2) */
    LOCO_ERR_NOT_FOUND = -11,    /* a named file, key or tensor does not exist */
    LOCO_ERR_UNSUPPORTED = -12,  /* valid but not supported in this build or combination */
    LOCO_ERR_NONFINITE = -13,    /* a NaN or Inf appeared where a finite value is required */
    LOCO_ERR_PEER_LOST = -14,    /* a peer died, stalled or left: the operation was aborted */
    LOCO_ERR_TIMEOUT = -15,      /* a deadline passed */
    LOCO_ERR_AUTH = -16,         /* a peer failed authentication */
    LOCO_ERR_PROTOCOL = -17,     /* a peer sent a message that breaks the protocol */
    LOCO_ERR_ABORTED = -18,      /* the operation was aborted by a verdict or a signal */
    LOCO_ERR_SYSTEM = -19,       /* a system call failed (errno in the message) */
    LOCO_ERR_CUDA = -20,         /* a CUDA/cuBLAS/NCCL call failed, or no device */
    LOCO_ERR_MPI = -21,          /* an MPI call failed during bootstrap */
    LOCO_ERR_STOPPED = -22,      /* the run was asked to stop (SIGTERM, leave) */
    LOCO_ERR_INTERNAL = -23,     /* an invariant broke inside loco: a bug, please report it */
} loco_status;

/* A short, static, human-readable name of a status ("peer lost"). Never NULL. */
const char *loco_status_str(loco_status status);

/* The process exit code for a status: 0 for LOCO_OK, 2 for usage/config errors, 1 otherwise. */
int loco_status_exit_code(loco_status status);

/* Details of a failure: the status and a one-line message. Zero-initialise before use. */
typedef struct loco_error {
    loco_status status;
    char msg[512];
} loco_error;

/* Record a failure in *err (err may be NULL) and return `status`, so callers can write
 * `return loco_error_set(err, LOCO_ERR_FORMAT, "%s: bad magic", path);`. The first error recorded
 * wins: a later call does not overwrite a message already set (the root cause is kept). */
loco_status loco_error_set(loco_error *err, loco_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like loco_error_set, but appends ": <strerror(errnum)>". */
loco_status loco_error_errno(loco_error *err, loco_status status, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Clear an error record for reuse. */
void loco_error_clear(loco_error *err);

/* The message of an error record, or the status string if no message was recorded. */
const char *loco_error_msg(const loco_error *err, loco_status status);

/* Programmer errors (broken invariants, not runtime outcomes): print file:line and abort. */
void loco_assert_fail(const char *expr, const char *file, int line, const char *func)
    __attribute__((noreturn));
#define LOCO_ASSERT(expr) \
    ((expr) ? (void)0 : loco_assert_fail(#expr, __FILE__, __LINE__, __func__))

/* Propagate a non-OK status to the caller. */
#define LOCO_TRY(call)                         \
    do {                                       \
        loco_status loco_try_st_ = (call);     \
        if (LOCO_OK != loco_try_st_) {         \
            return loco_try_st_;               \
        }                                      \
    } while (0)

#endif /* LOCO_BASE_STATUS_H */
