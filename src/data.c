/* src/data.c — token files: opening and validating them, and each worker's loader (data.h). */
#include "src/data.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static uint32_t read_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t read_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static const char *regenerate_hint(void)
{
    return "regenerate it with `loco data prepare` (or launch/setup.sh)";
}

loco_status loco_token_file_open(loco_token_file *file, const char *path, loco_error *err)
{
    memset(file, 0, sizeof *file);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return loco_error_errno(err, ENOENT == errno ? LOCO_ERR_NOT_FOUND : LOCO_ERR_IO, errno,
                                "cannot open token file %s (prepare data with `loco data "
                                "prepare`)",
                                path);
    }
    struct stat st;
    if (0 != fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return loco_error_set(err, LOCO_ERR_IO, "%s is not a regular file", path);
    }
    size_t bytes = (size_t)st.st_size;
    if (bytes < LOCO_DATA_HEADER_BYTES) {
        close(fd);
        return loco_error_set(err, LOCO_ERR_TRUNCATED,
                              "%s: %zu bytes, shorter than the %u-byte header; %s", path, bytes,
                              LOCO_DATA_HEADER_BYTES, regenerate_hint());
    }
    void *map = mmap(NULL, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (MAP_FAILED == map) {
        return loco_error_errno(err, LOCO_ERR_IO, errno, "cannot map %s", path);
    }
    const uint8_t *h = map;
    loco_status status = LOCO_OK;
    if (0 != memcmp(h, LOCO_DATA_MAGIC, 8)) {
        status = loco_error_set(err, LOCO_ERR_FORMAT, "%s is not a loco token file (bad magic); %s",
                                path, regenerate_hint());
        goto fail;
    }
    uint32_t version = read_u32(h + 8);
    if (LOCO_DATA_VERSION != version) {
        status = loco_error_set(err, LOCO_ERR_VERSION,
                                "%s has format version %u, this loco reads version %u; %s", path,
                                version, LOCO_DATA_VERSION, regenerate_hint());
        goto fail;
    }
    if (loco_hash64(h, 56, 0) != read_u64(h + 56)) {
        status = loco_error_set(err, LOCO_ERR_CHECKSUM, "%s: header checksum mismatch (corrupt); %s",
                                path, regenerate_hint());
        goto fail;
    }
    file->tokenizer = read_u32(h + 12);
    file->vocab = read_u32(h + 16);
    uint32_t token_bytes = read_u32(h + 20);
    file->count = read_u64(h + 24);
    file->source_count = read_u32(h + 32);
    file->split = read_u32(h + 36);
    if (LOCO_TOKENIZER_BYTES != file->tokenizer || 2 != token_bytes || file->vocab < 2 ||
        file->vocab > 65536 || file->split > 1) {
        status = loco_error_set(err, LOCO_ERR_FORMAT,
                                "%s: unsupported tokenizer %u / %u-byte tokens / vocab %u / split "
                                "%u; %s",
                                path, file->tokenizer, token_bytes, file->vocab, file->split,
                                regenerate_hint());
        goto fail;
    }
    /* Exact size: header + table + payload, computed without overflow. */
    uint64_t table_bytes = (uint64_t)file->source_count * LOCO_DATA_SOURCE_BYTES;
    if (file->source_count > (1u << 24) || file->count > ((uint64_t)1 << 40) ||
        LOCO_DATA_HEADER_BYTES + table_bytes + 2 * file->count != bytes) {
        status = loco_error_set(err, LOCO_ERR_TRUNCATED,
                                "%s: %zu bytes, but the header promises %u sources and %llu tokens "
                                "(truncated or corrupt); %s",
                                path, bytes, file->source_count, (unsigned long long)file->count,
                                regenerate_hint());
        goto fail;
    }
    const uint8_t *table = h + LOCO_DATA_HEADER_BYTES;
    if (loco_hash64(table, table_bytes, 0) != read_u64(h + 48)) {
        status = loco_error_set(err, LOCO_ERR_CHECKSUM,
                                "%s: source table checksum mismatch (corrupt); %s", path,
                                regenerate_hint());
        goto fail;
    }
    file->tokens = (const uint16_t *)(table + table_bytes);
    if (loco_hash64(file->tokens, 2 * file->count, 0) != read_u64(h + 40)) {
        status = loco_error_set(err, LOCO_ERR_CHECKSUM,
                                "%s: token checksum mismatch (corrupt); %s", path,
                                regenerate_hint());
        goto fail;
    }
    file->sources = calloc(file->source_count ? file->source_count : 1, sizeof *file->sources);
    if (NULL == file->sources) {
        status = loco_error_set(err, LOCO_ERR_NOMEM, "out of memory opening %s", path);
        goto fail;
    }
    uint64_t next = 0;
    for (uint32_t s = 0; s < file->source_count; s++) {
        const uint8_t *e = table + (size_t)s * LOCO_DATA_SOURCE_BYTES;
        loco_data_source *src = &file->sources[s];
        memcpy(src->name, e, LOCO_DATA_SOURCE_NAME);
        src->name[LOCO_DATA_SOURCE_NAME - 1] = '\0';
        src->first = read_u64(e + LOCO_DATA_SOURCE_NAME);
        src->count = read_u64(e + LOCO_DATA_SOURCE_NAME + 8);
        if (src->first != next || src->count > file->count - next) {
            status = loco_error_set(err, LOCO_ERR_FORMAT,
                                    "%s: source %u (%s) does not tile the tokens; %s", path, s,
                                    src->name, regenerate_hint());
            goto fail;
        }
        next += src->count;
    }
    if (next != file->count) {
        status = loco_error_set(err, LOCO_ERR_FORMAT,
                                "%s: sources cover %llu of %llu tokens; %s", path,
                                (unsigned long long)next, (unsigned long long)file->count,
                                regenerate_hint());
        goto fail;
    }
    for (uint64_t i = 0; i < file->count; i++) {
        if (file->tokens[i] >= file->vocab) {
            status = loco_error_set(err, LOCO_ERR_FORMAT,
                                    "%s: token %llu is %u, outside vocabulary %u; %s", path,
                                    (unsigned long long)i, file->tokens[i], file->vocab,
                                    regenerate_hint());
            goto fail;
        }
    }
    file->map = map;
    file->map_bytes = bytes;
    return LOCO_OK;
fail:
    free(file->sources);
    munmap(map, bytes);
    memset(file, 0, sizeof *file);
    return status;
}

void loco_token_file_close(loco_token_file *file)
{
    if (NULL != file->map) {
        munmap(file->map, file->map_bytes);
    }
    free(file->sources);
    memset(file, 0, sizeof *file);
}

/* =============================================================================================
 * Loader */

/* Assign sources to workers, largest first, each to the worker holding the fewest tokens (ties to
 * the lowest rank): deterministic and balanced. owner[s] receives the worker of source s. */
static void assign_sources(const loco_token_file *file, int world, int *owner)
{
    uint32_t n = file->source_count;
    uint32_t *order = malloc(n * sizeof *order);
    uint64_t *load = calloc((size_t)world, sizeof *load);
    LOCO_ASSERT(NULL != order && NULL != load);
    for (uint32_t i = 0; i < n; i++) {
        order[i] = i;
    }
    /* insertion sort by count desc, index asc (source counts are small) */
    for (uint32_t i = 1; i < n; i++) {
        uint32_t v = order[i];
        uint32_t j = i;
        while (j > 0 && file->sources[order[j - 1]].count < file->sources[v].count) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
    for (uint32_t i = 0; i < n; i++) {
        int best = 0;
        for (int w = 1; w < world; w++) {
            if (load[w] < load[best]) {
                best = w;
            }
        }
        owner[order[i]] = best;
        load[best] += file->sources[order[i]].count;
    }
    free(order);
    free(load);
}

loco_status loco_loader_init(loco_loader *loader, const loco_token_file *file,
                             loco_partition partition, int block, int rank, int world, int B,
                             int T, loco_error *err)
{
    memset(loader, 0, sizeof *loader);
    LOCO_ASSERT(world >= 1 && rank >= 0 && rank < world && B >= 1 && T >= 1);
    loader->file = file;
    loader->partition = partition;
    loader->rank = rank;
    loader->world = world;
    loader->B = B;
    loader->T = T;
    if (LOCO_PARTITION_IID == partition) {
        if (block < 1) {
            return loco_error_set(err, LOCO_ERR_CONFIG, "data.block must be >= 1");
        }
        loader->block = (uint64_t)block;
        uint64_t nblocks = (file->count + loader->block - 1) / loader->block;
        uint64_t mine = nblocks > (uint64_t)rank ? (nblocks - 1 - (uint64_t)rank) / world + 1 : 0;
        loader->length = mine * loader->block;
        if (mine > 0 && (mine - 1) * world + (uint64_t)rank == nblocks - 1) {
            /* this worker holds the last, possibly partial, block */
            loader->length -= nblocks * loader->block - file->count;
        }
    } else {
        if ((uint32_t)world > file->source_count) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "data.partition: source needs at least one source per worker, "
                                  "but %d workers share %u sources; use fewer workers or "
                                  "data.partition: iid",
                                  world, file->source_count);
        }
        int *owner = malloc(file->source_count * sizeof *owner);
        loader->range_first = malloc(file->source_count * sizeof(uint64_t));
        loader->range_count = malloc(file->source_count * sizeof(uint64_t));
        if (NULL == owner || NULL == loader->range_first || NULL == loader->range_count) {
            free(owner);
            loco_loader_free(loader);
            return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory partitioning data");
        }
        assign_sources(file, world, owner);
        for (uint32_t s = 0; s < file->source_count; s++) {
            if (owner[s] == rank && file->sources[s].count > 0) {
                loader->range_first[loader->n_ranges] = file->sources[s].first;
                loader->range_count[loader->n_ranges] = file->sources[s].count;
                loader->n_ranges++;
                loader->length += file->sources[s].count;
            }
        }
        free(owner);
    }
    if (loader->length < (uint64_t)T + 1) {
        uint64_t length = loader->length;
        loco_loader_free(loader);
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "worker %d of %d gets %llu tokens, fewer than one sequence of %d; "
                              "use more data, fewer workers or a shorter train.seq_len",
                              rank, world, (unsigned long long)length, T + 1);
    }
    return LOCO_OK;
}

void loco_loader_free(loco_loader *loader)
{
    free(loader->range_first);
    free(loader->range_count);
    loader->range_first = NULL;
    loader->range_count = NULL;
    loader->n_ranges = 0;
}

uint64_t loco_loader_file_index(const loco_loader *loader, uint64_t pos)
{
    LOCO_ASSERT(pos < loader->length);
    if (LOCO_PARTITION_IID == loader->partition) {
        uint64_t j = pos / loader->block;
        return (j * (uint64_t)loader->world + (uint64_t)loader->rank) * loader->block +
               pos % loader->block;
    }
    for (int r = 0; r < loader->n_ranges; r++) {
        if (pos < loader->range_count[r]) {
            return loader->range_first[r] + pos;
        }
        pos -= loader->range_count[r];
    }
    LOCO_ASSERT(0 && "position beyond the worker's ranges");
    return 0;
}

uint16_t loco_loader_token_at(const loco_loader *loader, uint64_t pos)
{
    return loader->file->tokens[loco_loader_file_index(loader, pos)];
}

void loco_loader_next(loco_loader *loader, uint16_t *inputs, uint16_t *targets)
{
    const int T = loader->T;
    for (int b = 0; b < loader->B; b++) {
        if (loader->cursor + (uint64_t)T + 1 > loader->length) {
            loader->cursor = 0;
            loader->epoch++;
        }
        uint16_t *in_row = inputs + (size_t)b * T;
        uint16_t *tg_row = targets + (size_t)b * T;
        uint16_t prev = loco_loader_token_at(loader, loader->cursor);
        for (int t = 0; t < T; t++) {
            uint16_t next = loco_loader_token_at(loader, loader->cursor + (uint64_t)t + 1);
            in_row[t] = prev;
            tg_row[t] = next;
            prev = next;
        }
        loader->cursor += (uint64_t)T;
    }
}

void loco_loader_seek_spread(loco_loader *loader, int b, int n)
{
    LOCO_ASSERT(n > 0 && b >= 0 && b < n);
    uint64_t stride = loader->length > 0 ? (loader->length - 1) / (uint64_t)n : 0;
    loader->cursor = (uint64_t)b * stride;
}

void loco_loader_seek(loco_loader *loader, uint64_t sequences)
{
    /* loco_loader_next starts a sequence at cursor while cursor + T + 1 <= length: at
     * cursor = 0, T, 2T, ..., so (length - 1) / T sequences per pass */
    const uint64_t T = (uint64_t)loader->T;
    uint64_t per_pass = loader->length > T ? (loader->length - 1) / T : 1;
    loader->epoch = sequences / per_pass;
    loader->cursor = sequences % per_pass * T;
}

loco_loader_state loco_loader_get_state(const loco_loader *loader)
{
    return (loco_loader_state){loader->cursor, loader->epoch};
}

void loco_loader_set_state(loco_loader *loader, loco_loader_state state)
{
    loader->cursor = state.cursor;
    loader->epoch = state.epoch;
}
