/* base/fileio.h — whole-file reads and crash-safe writes.
 *
 * Writers never leave a half-written file behind: they write `PATH.tmp.PID`, fsync it, rename it
 * over PATH and fsync the directory. If anything fails, or the caller aborts, the temporary file
 * is removed and PATH is untouched.
 */
#ifndef LOCO_BASE_FILEIO_H
#define LOCO_BASE_FILEIO_H

#include "status.h"

#include <stddef.h>
#include <stdio.h>

/* Read a whole file into a malloc'd buffer (NUL-terminated for convenience; *len excludes it).
 * Files larger than max_bytes are refused with LOCO_ERR_RANGE. */
loco_status loco_file_read_all(const char *path, size_t max_bytes, char **data, size_t *len,
                               loco_error *err);

typedef struct loco_atomic_file {
    FILE *fp; /* write through this */
    char path[4096];
    char tmp_path[4096 + 32];
} loco_atomic_file;

/* Open PATH.tmp.PID for writing. */
loco_status loco_atomic_open(loco_atomic_file *af, const char *path, loco_error *err);
/* Flush, fsync, close and rename over the final path; fsync the directory. On failure the
 * temporary file is removed and the final path is left as it was. */
loco_status loco_atomic_commit(loco_atomic_file *af, loco_error *err);
/* Close and remove the temporary file (safe to call after a failed commit). */
void loco_atomic_abort(loco_atomic_file *af);

/* Write `len` bytes to PATH atomically (open + write + commit). */
loco_status loco_file_write_atomic(const char *path, const void *data, size_t len,
                                   loco_error *err);

/* mkdir -p: create a directory and its parents (mode 0755). Existing directories are fine. */
loco_status loco_mkdir_p(const char *path, loco_error *err);

#endif /* LOCO_BASE_FILEIO_H */
