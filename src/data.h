/* src/data.h — token shards: preparing them from text, reading them, and giving each worker its
 * part (DESIGN.md §2; issue "skeleton", item 4).
 *
 * A prepared dataset is a directory with train.tok and val.tok (plus a human-readable
 * manifest.json). Each .tok file is:
 *
 *   offset  size  field
 *   0       8     magic "LOCOTOKS"
 *   8       4     format version (1)
 *   12      4     tokenizer id (1 = bytes)
 *   16      4     vocabulary size
 *   20      4     bytes per token (2: uint16 little-endian)
 *   24      8     token count N
 *   32      4     source count S
 *   36      4     split (0 train, 1 validation)
 *   40      8     XXH64 of the token payload
 *   48      8     XXH64 of the source table
 *   56      8     XXH64 of bytes 0..55
 *   64      S*136 source table: name[120] (NUL-padded), first token u64, token count u64
 *   ...     2*N   tokens
 *
 * Sources are the input files (each fortunes topic is one), in order, tiling [0, N). The
 * validation split is the tail of every source (cut at a line break), so every source is
 * represented in both splits. uint16 storage lets later tokenizers and GPT-2-sized random-token
 * benchmarks use the same format.
 */
#ifndef LOCO_SRC_DATA_H
#define LOCO_SRC_DATA_H

#include "base/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOCO_DATA_MAGIC "LOCOTOKS"
#define LOCO_DATA_VERSION 1u
#define LOCO_TOKENIZER_BYTES 1u
#define LOCO_DATA_HEADER_BYTES 64u
#define LOCO_DATA_SOURCE_BYTES 136u
#define LOCO_DATA_SOURCE_NAME 120

typedef enum loco_partition {
    LOCO_PARTITION_IID = 0,    /* blocks of data.block tokens dealt round-robin to workers */
    LOCO_PARTITION_SOURCE = 1, /* whole sources per worker (non-IID), balanced by token count */
} loco_partition;

/* data: section of the config. */
typedef struct loco_data_params {
    char path[1024];         /* prepared dataset directory */
    loco_partition partition;
    int block;               /* IID block size in tokens */
} loco_data_params;

typedef struct loco_data_source {
    char name[LOCO_DATA_SOURCE_NAME];
    uint64_t first; /* first token */
    uint64_t count;
} loco_data_source;

/* One opened .tok file (memory-mapped, read-only). */
typedef struct loco_token_file {
    void *map;
    size_t map_bytes;
    uint32_t tokenizer;
    uint32_t vocab;
    uint32_t split;
    uint64_t count;
    const uint16_t *tokens;      /* (count) */
    loco_data_source *sources;   /* (source_count) */
    uint32_t source_count;
} loco_token_file;

/* Open and fully validate a .tok file: magic, version (a mismatch says how to regenerate),
 * header/table/payload checksums, exact size, sources tiling the tokens, tokens < vocab. */
loco_status loco_token_file_open(loco_token_file *file, const char *path, loco_error *err);
void loco_token_file_close(loco_token_file *file);

/* Options of `loco data prepare`. */
typedef struct loco_prepare_params {
    const char *const *inputs; /* files or directories (plain text or gzip) */
    int n_inputs;
    const char *out_dir;
    double val_fraction;       /* tail of each source held out, in (0, 0.5] */
    uint64_t max_source_bytes; /* read at most this much of each source (0 = all) */
} loco_prepare_params;

/* Tokenize every input into OUT/train.tok, OUT/val.tok and OUT/manifest.json. Directories are
 * walked (sorted; hidden files, fortune .dat indexes and symlinks to files already listed are
 * skipped). Nothing is left behind on failure: files are written atomically and only after all
 * inputs were read. */
loco_status loco_data_prepare(const loco_prepare_params *params, loco_error *err);

/* Write a dataset of uniformly random tokens (for benchmarks with large vocabularies). */
loco_status loco_data_prepare_random(const char *out_dir, uint32_t vocab, uint64_t train_tokens,
                                     uint64_t val_tokens, uint64_t seed, loco_error *err);

/* A worker's view of a token file: a virtual stream made of ranges of the file, read as
 * batches of B sequences of T+1 tokens (inputs and next-token targets). The cursor advances by
 * T tokens per sequence and wraps to 0 at the end of the stream (epoch + 1). */
typedef struct loco_loader {
    const loco_token_file *file;
    loco_partition partition;
    int rank, world;
    uint64_t block;          /* IID: block size */
    uint64_t length;         /* tokens in this worker's stream */
    int n_ranges;            /* SOURCE: this worker's sources */
    uint64_t *range_first;   /* (n_ranges) */
    uint64_t *range_count;   /* (n_ranges) */
    int B, T;
    uint64_t cursor;         /* next sequence start in the stream */
    uint64_t epoch;
} loco_loader;

/* A loader's resumable position (saved in checkpoints). */
typedef struct loco_loader_state {
    uint64_t cursor;
    uint64_t epoch;
} loco_loader_state;

/* Give worker `rank` of `world` its part of the file. Errors (LOCO_ERR_CONFIG) when a worker
 * would get fewer than T+1 tokens, or when partitioning by source with more workers than
 * sources. */
loco_status loco_loader_init(loco_loader *loader, const loco_token_file *file,
                             loco_partition partition, int block, int rank, int world, int B,
                             int T, loco_error *err);
void loco_loader_free(loco_loader *loader);

/* Fill inputs (B, T) and targets (B, T) with the next batch. */
void loco_loader_next(loco_loader *loader, uint16_t *inputs, uint16_t *targets);

/* Index in the token file of position pos of this worker's stream (pos < length). */
uint64_t loco_loader_file_index(const loco_loader *loader, uint64_t pos);

/* Token at position pos of this worker's stream (pos < length). */
uint16_t loco_loader_token_at(const loco_loader *loader, uint64_t pos);

/* Place the cursor at the start of batch b of n batches spread evenly over the stream:
 * b * floor((length - 1) / n). With n at most (length - 1) / (B T) the batches do not overlap
 * (n = that maximum reads nearly the whole stream); validation uses this so a few batches
 * sample every source, not just the first ones. */
void loco_loader_seek_spread(loco_loader *loader, int b, int n);

/* Position the loader where it would be after reading `sequences` sequences from its start
 * (wraps included): how a worker whose rank or world changed (a recovery, a join) continues at
 * the group's data position in its new part of the file. */
void loco_loader_seek(loco_loader *loader, uint64_t sequences);

loco_loader_state loco_loader_get_state(const loco_loader *loader);
void loco_loader_set_state(loco_loader *loader, loco_loader_state state);

/* The best validation loss (nats per token) of an add-k smoothed bigram model counted on train,
 * over a small grid of k; *smoothing receives the k used (may be NULL). Needs vocab <= 4096. */
loco_status loco_bigram_val_loss(const loco_token_file *train, const loco_token_file *val,
                                 double *loss, double *smoothing, loco_error *err);

/* `loco data ...` */
int loco_cmd_data(int argc, char **argv);

#endif /* LOCO_SRC_DATA_H */
