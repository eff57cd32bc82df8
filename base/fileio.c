/* base/fileio.c — whole-file reads and crash-safe writes (see fileio.h). */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

loco_status loco_file_read_all(const char *path, size_t max_bytes, char **data, size_t *len,
                               loco_error *err)
{
    *data = NULL;
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (NULL == fp) {
        return loco_error_errno(err, errno == ENOENT ? LOCO_ERR_NOT_FOUND : LOCO_ERR_IO, errno,
                                "cannot open %s", path);
    }
    struct stat st;
    if (0 != fstat(fileno(fp), &st)) {
        int e = errno;
        fclose(fp);
        return loco_error_errno(err, LOCO_ERR_IO, e, "cannot stat %s", path);
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(fp);
        return loco_error_set(err, LOCO_ERR_IO, "%s is not a regular file", path);
    }
    if ((size_t)st.st_size > max_bytes) {
        fclose(fp);
        return loco_error_set(err, LOCO_ERR_RANGE, "%s is %lld bytes, more than the %zu allowed",
                              path, (long long)st.st_size, max_bytes);
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (NULL == buf) {
        fclose(fp);
        return loco_error_set(err, LOCO_ERR_NOMEM, "cannot allocate %zu bytes for %s", size, path);
    }
    size_t got = fread(buf, 1, size, fp);
    int read_error = ferror(fp);
    fclose(fp);
    if (got != size || read_error) {
        free(buf);
        return loco_error_set(err, LOCO_ERR_IO, "short read of %s (%zu of %zu bytes)", path, got,
                              size);
    }
    buf[size] = '\0';
    *data = buf;
    *len = size;
    return LOCO_OK;
}

loco_status loco_atomic_open(loco_atomic_file *af, const char *path, loco_error *err)
{
    memset(af, 0, sizeof *af);
    if (strlen(path) >= sizeof af->path) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG, "path too long: %s", path);
    }
    snprintf(af->path, sizeof af->path, "%s", path);
    snprintf(af->tmp_path, sizeof af->tmp_path, "%s.tmp.%ld", path, (long)getpid());
    af->fp = fopen(af->tmp_path, "wb");
    if (NULL == af->fp) {
        return loco_error_errno(err, LOCO_ERR_IO, errno, "cannot create %s", af->tmp_path);
    }
    return LOCO_OK;
}

static void fsync_parent_dir(const char *path)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
}

loco_status loco_atomic_commit(loco_atomic_file *af, loco_error *err)
{
    if (NULL == af->fp) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG, "%s: file not open", af->path);
    }
    int failed = 0 != fflush(af->fp) || ferror(af->fp);
    int e = errno;
    if (!failed && 0 != fsync(fileno(af->fp))) {
        failed = 1;
        e = errno;
    }
    if (0 != fclose(af->fp) && !failed) {
        failed = 1;
        e = errno;
    }
    af->fp = NULL;
    if (!failed && 0 != rename(af->tmp_path, af->path)) {
        failed = 1;
        e = errno;
    }
    if (failed) {
        unlink(af->tmp_path);
        return loco_error_errno(err, LOCO_ERR_IO, e, "cannot write %s", af->path);
    }
    fsync_parent_dir(af->path);
    return LOCO_OK;
}

void loco_atomic_abort(loco_atomic_file *af)
{
    if (NULL != af->fp) {
        fclose(af->fp);
        af->fp = NULL;
    }
    if ('\0' != af->tmp_path[0]) {
        unlink(af->tmp_path);
    }
}

loco_status loco_file_write_atomic(const char *path, const void *data, size_t len,
                                   loco_error *err)
{
    loco_atomic_file af;
    LOCO_TRY(loco_atomic_open(&af, path, err));
    if (len > 0 && 1 != fwrite(data, len, 1, af.fp)) {
        int e = errno;
        loco_atomic_abort(&af);
        return loco_error_errno(err, LOCO_ERR_IO, e, "cannot write %s", path);
    }
    return loco_atomic_commit(&af, err);
}

loco_status loco_mkdir_p(const char *path, loco_error *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (0 == n || n >= sizeof buf) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG, "bad directory path '%s'", path);
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if ('/' == buf[i] || '\0' == buf[i]) {
            char saved = buf[i];
            buf[i] = '\0';
            if (0 != mkdir(buf, 0755) && EEXIST != errno) {
                return loco_error_errno(err, LOCO_ERR_IO, errno, "cannot create directory %s", buf);
            }
            buf[i] = saved;
        }
    }
    struct stat st;
    if (0 != stat(path, &st) || !S_ISDIR(st.st_mode)) {
        return loco_error_set(err, LOCO_ERR_IO, "%s exists and is not a directory", path);
    }
    return LOCO_OK;
}
