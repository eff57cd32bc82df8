/* src/metrics.c — JSON-lines metrics (see metrics.h). */
#include "src/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

loco_status loco_metrics_open(loco_metrics *m, const char *run_dir, int rank, loco_error *err)
{
    memset(m, 0, sizeof *m);
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    m->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (m->fd < 0) {
        return loco_error_errno(err, LOCO_ERR_IO, errno, "cannot open %s", path);
    }
    m->rank = rank;
    m->start_s = loco_now_s();
    return LOCO_OK;
}

void loco_metrics_close(loco_metrics *m)
{
    if (NULL != m->mem) {
        fclose(m->mem);
        m->mem = NULL;
    }
    free(m->line);
    m->line = NULL;
    if (m->fd > 0) {
        close(m->fd);
    }
    m->fd = -1;
}

loco_json_writer *loco_metrics_begin(loco_metrics *m, const char *event)
{
    LOCO_ASSERT(NULL == m->mem);
    free(m->line);
    m->line = NULL;
    m->line_len = 0;
    m->mem = open_memstream(&m->line, &m->line_len);
    LOCO_ASSERT(NULL != m->mem);
    loco_json_writer_init(&m->writer, m->mem, false);
    loco_json_begin_object(&m->writer);
    loco_json_key(&m->writer, "event");
    loco_json_string(&m->writer, event);
    loco_json_key(&m->writer, "rank");
    loco_json_int(&m->writer, m->rank);
    loco_json_key(&m->writer, "time");
    loco_json_number(&m->writer, (double)(int64_t)((loco_now_s() - m->start_s) * 1e3) / 1e3);
    return &m->writer;
}

loco_status loco_metrics_end(loco_metrics *m)
{
    LOCO_ASSERT(NULL != m->mem);
    loco_json_end_object(&m->writer);
    fputc('\n', m->mem);
    fclose(m->mem);
    m->mem = NULL;
    if (m->fd < 0) {
        return LOCO_ERR_IO;
    }
    ssize_t written = write(m->fd, m->line, m->line_len);
    if (written != (ssize_t)m->line_len) {
        return LOCO_ERR_IO;
    }
    return LOCO_OK;
}
