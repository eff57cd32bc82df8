/* src/data_prepare.c — `loco data`: text (plain or gzip) to token files, random-token datasets,
 * and inspection (info, decode). See data.h for the file format. */
#include "src/data.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define DEFAULT_FORTUNES "/usr/share/games/fortunes"
#define DEFAULT_GCIDE "/usr/share/dictd/gcide.dict.dz"

/* One tokenized source held in memory until everything is read. */
typedef struct prepared_source {
    char name[LOCO_DATA_SOURCE_NAME];
    uint16_t *tokens;
    uint64_t count;
    uint64_t val_start; /* tokens [val_start, count) are validation */
} prepared_source;

typedef struct source_list {
    prepared_source *items;
    int count, capacity;
} source_list;

typedef struct path_list {
    char **items;
    int count, capacity;
} path_list;

static loco_status path_list_add(path_list *list, const char *path)
{
    if (list->count == list->capacity) {
        int cap = list->capacity ? 2 * list->capacity : 32;
        char **grown = realloc(list->items, (size_t)cap * sizeof *grown);
        if (NULL == grown) {
            return LOCO_ERR_NOMEM;
        }
        list->items = grown;
        list->capacity = cap;
    }
    list->items[list->count] = strdup(path);
    return NULL == list->items[list->count++] ? LOCO_ERR_NOMEM : LOCO_OK;
}

static void path_list_free(path_list *list)
{
    for (int i = 0; i < list->count; i++) {
        free(list->items[i]);
    }
    free(list->items);
    memset(list, 0, sizeof *list);
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && 0 == strcmp(s + n - m, suffix);
}

/* Expand inputs into a sorted list of files. Directory entries that are hidden, fortune .dat
 * indexes, or symbolic links (fortunes' .u8 aliases) are skipped. */
static loco_status collect_inputs(const char *const *inputs, int n, path_list *files,
                                  loco_error *err)
{
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (0 != stat(inputs[i], &st)) {
            return loco_error_errno(err, LOCO_ERR_NOT_FOUND, errno,
                                    "input %s not found (the default corpus comes from the Debian "
                                    "packages fortunes and dict-gcide: run launch/setup.sh or "
                                    "apt-get install fortunes dict-gcide)",
                                    inputs[i]);
        }
        if (!S_ISDIR(st.st_mode)) {
            if (LOCO_OK != path_list_add(files, inputs[i])) {
                return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory");
            }
            continue;
        }
        DIR *dir = opendir(inputs[i]);
        if (NULL == dir) {
            return loco_error_errno(err, LOCO_ERR_IO, errno, "cannot read directory %s",
                                    inputs[i]);
        }
        path_list found = {0};
        struct dirent *entry;
        while (NULL != (entry = readdir(dir))) {
            if ('.' == entry->d_name[0] || has_suffix(entry->d_name, ".dat")) {
                continue;
            }
            char full[4096];
            snprintf(full, sizeof full, "%s/%s", inputs[i], entry->d_name);
            struct stat lst;
            if (0 != lstat(full, &lst) || !S_ISREG(lst.st_mode)) {
                continue;
            }
            if (LOCO_OK != path_list_add(&found, full)) {
                closedir(dir);
                path_list_free(&found);
                return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory");
            }
        }
        closedir(dir);
        qsort(found.items, (size_t)found.count, sizeof *found.items, compare_strings);
        for (int f = 0; f < found.count; f++) {
            if (LOCO_OK != path_list_add(files, found.items[f])) {
                path_list_free(&found);
                return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory");
            }
        }
        path_list_free(&found);
    }
    if (0 == files->count) {
        return loco_error_set(err, LOCO_ERR_NOT_FOUND, "no input files found");
    }
    return LOCO_OK;
}

/* Read one file (plain or gzip: zlib reads both) into byte tokens. */
static loco_status read_source(const char *path, uint64_t max_bytes, prepared_source *src,
                               loco_error *err)
{
    memset(src, 0, sizeof *src);
    const char *base = strrchr(path, '/');
    snprintf(src->name, sizeof src->name, "%s", NULL != base ? base + 1 : path);
    gzFile gz = gzopen(path, "rb");
    if (NULL == gz) {
        return loco_error_errno(err, LOCO_ERR_IO, errno, "cannot open %s", path);
    }
    gzbuffer(gz, 1 << 17);
    size_t capacity = 1 << 16;
    uint8_t *bytes = malloc(capacity);
    size_t used = 0;
    loco_status status = LOCO_OK;
    for (;;) {
        if (NULL == bytes) {
            status = loco_error_set(err, LOCO_ERR_NOMEM, "out of memory reading %s", path);
            break;
        }
        if (used == capacity) {
            capacity *= 2;
            uint8_t *grown = realloc(bytes, capacity);
            if (NULL == grown) {
                free(bytes);
                bytes = NULL;
                continue;
            }
            bytes = grown;
        }
        size_t want = capacity - used;
        if (max_bytes > 0 && used + want > max_bytes) {
            want = max_bytes - used;
        }
        if (0 == want) {
            break;
        }
        int got = gzread(gz, bytes + used, (unsigned)(want > (1u << 30) ? (1u << 30) : want));
        if (got < 0) {
            int errnum;
            const char *msg = gzerror(gz, &errnum);
            status = loco_error_set(err, LOCO_ERR_FORMAT, "cannot decompress %s: %s", path, msg);
            break;
        }
        if (0 == got) {
            break;
        }
        used += (size_t)got;
    }
    gzclose(gz);
    if (LOCO_OK != status) {
        free(bytes);
        return status;
    }
    src->tokens = malloc((used ? used : 1) * sizeof(uint16_t));
    if (NULL == src->tokens) {
        free(bytes);
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory tokenizing %s", path);
    }
    for (size_t i = 0; i < used; i++) {
        src->tokens[i] = bytes[i]; /* the byte tokenizer: token = byte value */
    }
    free(bytes);
    src->count = used;
    return LOCO_OK;
}

/* Hold out the tail of a source: from the first line start at or after (1 - f) * count. */
static uint64_t validation_start(const prepared_source *src, double val_fraction)
{
    uint64_t cut = (uint64_t)((double)src->count * (1.0 - val_fraction));
    while (cut < src->count && cut > 0 && '\n' != src->tokens[cut - 1]) {
        cut++;
    }
    return cut;
}

static void write_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void write_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* Write one split of the sources: tokens [0, val_start) for train, [val_start, count) for val. */
static loco_status write_token_file(const char *path, const prepared_source *sources, int n,
                                    uint32_t split, uint32_t vocab, loco_atomic_file *af,
                                    loco_error *err)
{
    size_t table_bytes = (size_t)n * LOCO_DATA_SOURCE_BYTES;
    uint8_t *table = calloc(table_bytes ? table_bytes : 1, 1);
    if (NULL == table) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory writing %s", path);
    }
    uint64_t total = 0;
    loco_hasher payload;
    loco_hasher_init(&payload, 0);
    for (int s = 0; s < n; s++) {
        const prepared_source *src = &sources[s];
        uint64_t first = 0 == split ? 0 : src->val_start;
        uint64_t count = 0 == split ? src->val_start : src->count - src->val_start;
        uint8_t *e = table + (size_t)s * LOCO_DATA_SOURCE_BYTES;
        memcpy(e, src->name, strnlen(src->name, LOCO_DATA_SOURCE_NAME - 1));
        write_u64(e + LOCO_DATA_SOURCE_NAME, total);
        write_u64(e + LOCO_DATA_SOURCE_NAME + 8, count);
        loco_hasher_update(&payload, src->tokens + first, count * sizeof(uint16_t));
        total += count;
    }
    uint8_t header[LOCO_DATA_HEADER_BYTES] = {0};
    memcpy(header, LOCO_DATA_MAGIC, 8);
    write_u32(header + 8, LOCO_DATA_VERSION);
    write_u32(header + 12, LOCO_TOKENIZER_BYTES);
    write_u32(header + 16, vocab);
    write_u32(header + 20, 2);
    write_u64(header + 24, total);
    write_u32(header + 32, (uint32_t)n);
    write_u32(header + 36, split);
    write_u64(header + 40, loco_hasher_final(&payload));
    write_u64(header + 48, loco_hash64(table, table_bytes, 0));
    write_u64(header + 56, loco_hash64(header, 56, 0));
    loco_status status = loco_atomic_open(af, path, err);
    if (LOCO_OK == status) {
        int ok = 1 == fwrite(header, sizeof header, 1, af->fp);
        if (table_bytes > 0) {
            ok = ok && 1 == fwrite(table, table_bytes, 1, af->fp);
        }
        for (int s = 0; ok && s < n; s++) {
            const prepared_source *src = &sources[s];
            uint64_t first = 0 == split ? 0 : src->val_start;
            uint64_t count = 0 == split ? src->val_start : src->count - src->val_start;
            if (count > 0) {
                ok = 1 == fwrite(src->tokens + first, count * sizeof(uint16_t), 1, af->fp);
            }
        }
        if (!ok) {
            loco_atomic_abort(af);
            status = loco_error_errno(err, LOCO_ERR_IO, errno, "cannot write %s", path);
        }
    }
    free(table);
    return status;
}

static loco_status write_manifest(const char *out_dir, const prepared_source *sources, int n,
                                  uint32_t vocab, loco_atomic_file *af, loco_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", out_dir);
    LOCO_TRY(loco_atomic_open(af, path, err));
    loco_json_writer w;
    loco_json_writer_init(&w, af->fp, true);
    uint64_t train = 0, val = 0;
    for (int s = 0; s < n; s++) {
        train += sources[s].val_start;
        val += sources[s].count - sources[s].val_start;
    }
    loco_json_begin_object(&w);
    loco_json_key(&w, "format");
    loco_json_string(&w, "loco-tokens");
    loco_json_key(&w, "version");
    loco_json_int(&w, LOCO_DATA_VERSION);
    loco_json_key(&w, "tokenizer");
    loco_json_string(&w, "bytes");
    loco_json_key(&w, "vocab");
    loco_json_int(&w, vocab);
    loco_json_key(&w, "train_tokens");
    loco_json_uint(&w, train);
    loco_json_key(&w, "val_tokens");
    loco_json_uint(&w, val);
    loco_json_key(&w, "sources");
    loco_json_begin_array(&w);
    for (int s = 0; s < n; s++) {
        loco_json_begin_object(&w);
        loco_json_key(&w, "name");
        loco_json_string(&w, sources[s].name);
        loco_json_key(&w, "train_tokens");
        loco_json_uint(&w, sources[s].val_start);
        loco_json_key(&w, "val_tokens");
        loco_json_uint(&w, sources[s].count - sources[s].val_start);
        loco_json_end_object(&w);
    }
    loco_json_end_array(&w);
    loco_json_end_object(&w);
    return LOCO_OK;
}

/* Write train.tok, val.tok and manifest.json to temporary files, then commit all three. */
static loco_status write_dataset(const char *out_dir, const prepared_source *sources, int n,
                                 uint32_t vocab, loco_error *err)
{
    LOCO_TRY(loco_mkdir_p(out_dir, err));
    char train_path[4096], val_path[4096];
    snprintf(train_path, sizeof train_path, "%s/train.tok", out_dir);
    snprintf(val_path, sizeof val_path, "%s/val.tok", out_dir);
    loco_atomic_file train = {0}, val = {0}, manifest = {0};
    loco_status status = write_token_file(train_path, sources, n, 0, vocab, &train, err);
    if (LOCO_OK == status) {
        status = write_token_file(val_path, sources, n, 1, vocab, &val, err);
    }
    if (LOCO_OK == status) {
        status = write_manifest(out_dir, sources, n, vocab, &manifest, err);
    }
    if (LOCO_OK == status) {
        status = loco_atomic_commit(&train, err);
    }
    if (LOCO_OK == status) {
        status = loco_atomic_commit(&val, err);
    }
    if (LOCO_OK == status) {
        status = loco_atomic_commit(&manifest, err);
    }
    if (LOCO_OK != status) {
        loco_atomic_abort(&train);
        loco_atomic_abort(&val);
        loco_atomic_abort(&manifest);
    }
    return status;
}

loco_status loco_data_prepare(const loco_prepare_params *params, loco_error *err)
{
    if (!(params->val_fraction > 0.0 && params->val_fraction <= 0.5)) {
        return loco_error_set(err, LOCO_ERR_USAGE, "--val-fraction %g: allowed (0, 0.5]",
                              params->val_fraction);
    }
    path_list files = {0};
    loco_status status = collect_inputs(params->inputs, params->n_inputs, &files, err);
    prepared_source *sources = NULL;
    int n = 0;
    if (LOCO_OK == status) {
        sources = calloc((size_t)files.count, sizeof *sources);
        if (NULL == sources) {
            status = loco_error_set(err, LOCO_ERR_NOMEM, "out of memory");
        }
    }
    uint64_t total = 0;
    for (int i = 0; LOCO_OK == status && i < files.count; i++) {
        status = read_source(files.items[i], params->max_source_bytes, &sources[n], err);
        if (LOCO_OK == status && sources[n].count > 0) {
            sources[n].val_start = validation_start(&sources[n], params->val_fraction);
            total += sources[n].count;
            n++;
        } else if (LOCO_OK == status) {
            free(sources[n].tokens);
        }
    }
    if (LOCO_OK == status && 0 == total) {
        status = loco_error_set(err, LOCO_ERR_NOT_FOUND, "the inputs contain no text");
    }
    if (LOCO_OK == status) {
        status = write_dataset(params->out_dir, sources, n, 256, err);
    }
    if (LOCO_OK == status) {
        uint64_t val = 0;
        for (int s = 0; s < n; s++) {
            val += sources[s].count - sources[s].val_start;
        }
        LOCO_INFO("prepared %s: %d sources, %llu train and %llu validation tokens",
                  params->out_dir, n, (unsigned long long)(total - val), (unsigned long long)val);
    }
    for (int s = 0; s < n; s++) {
        free(sources[s].tokens);
    }
    free(sources);
    path_list_free(&files);
    return status;
}

loco_status loco_data_prepare_random(const char *out_dir, uint32_t vocab, uint64_t train_tokens,
                                     uint64_t val_tokens, uint64_t seed, loco_error *err)
{
    if (vocab < 2 || vocab > 65536 || 0 == train_tokens || 0 == val_tokens) {
        return loco_error_set(err, LOCO_ERR_USAGE,
                              "random data needs vocab in [2, 65536] and positive token counts");
    }
    prepared_source src = {0};
    snprintf(src.name, sizeof src.name, "random-%u", vocab);
    src.count = train_tokens + val_tokens;
    src.val_start = train_tokens;
    src.tokens = malloc(src.count * sizeof(uint16_t));
    if (NULL == src.tokens) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory");
    }
    loco_rng rng;
    loco_rng_init(&rng, seed, 0x72616e64ull /* "rand" */);
    for (uint64_t i = 0; i < src.count; i++) {
        src.tokens[i] = (uint16_t)loco_rng_below(&rng, vocab);
    }
    loco_status status = write_dataset(out_dir, &src, 1, vocab, err);
    free(src.tokens);
    return status;
}

/* =============================================================================================
 * Command line */

static void data_usage(FILE *out)
{
    fprintf(out,
            "usage: loco data prepare [--out DIR] [--val-fraction F] [--max-source-mb N] "
            "[INPUT...]\n"
            "       loco data random --out DIR --vocab V --tokens N [--val-tokens M] [--seed S]\n"
            "       loco data info PATH\n"
            "       loco data decode FILE [--source NAME] [--start N] [--count N]\n"
            "       loco data bigram DIR\n\n"
            "prepare   tokenize text files or directories (plain or gzip) with the byte tokenizer\n"
            "          into DIR/train.tok, DIR/val.tok and DIR/manifest.json. Each file is one\n"
            "          source (a partition for non-IID training); the last F of each source is\n"
            "          held out for validation. Without INPUT: the default corpus,\n"
            "          %s and %s.\n"
            "          --out DIR            output directory (default data/default)\n"
            "          --val-fraction F     held-out fraction of each source, (0, 0.5] "
            "(default 0.05)\n"
            "          --max-source-mb N    read at most N MiB of each source (default: all)\n"
            "random    a dataset of uniformly random tokens (benchmarks with large vocabularies)\n"
            "info      print a token file's header and sources (PATH: a .tok file or a dataset "
            "dir)\n"
            "decode    write a token file's tokens back as text (byte tokenizer) to stdout\n"
            "bigram    validation loss of the best add-k bigram model counted on DIR/train.tok:\n"
            "          the baseline a trained model must beat\n",
            DEFAULT_FORTUNES, DEFAULT_GCIDE);
}

static int report(loco_status status, const loco_error *err, const char *command)
{
    if (LOCO_OK != status) {
        fprintf(stderr, "loco data %s: %s\n", command, loco_error_msg(err, status));
    }
    return loco_status_exit_code(status);
}

static int parse_u64_arg(const char *text, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if ('\0' == text[0] || '-' == text[0] || '\0' != *end || ERANGE == errno) {
        return -1;
    }
    *out = v;
    return 0;
}

static int cmd_prepare(int argc, char **argv)
{
    loco_prepare_params params = {.out_dir = "data/default", .val_fraction = 0.05};
    static const struct option options[] = {{"out", required_argument, NULL, 'o'},
                                            {"val-fraction", required_argument, NULL, 'v'},
                                            {"max-source-mb", required_argument, NULL, 'm'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    int opt;
    optind = 1;
    while (-1 != (opt = getopt_long(argc, argv, "o:v:m:h", options, NULL))) {
        uint64_t mb;
        char *end;
        switch (opt) {
        case 'o': params.out_dir = optarg; break;
        case 'v':
            params.val_fraction = strtod(optarg, &end);
            if ('\0' != *end) {
                fprintf(stderr, "loco data prepare: --val-fraction '%s' is not a number\n",
                        optarg);
                return 2;
            }
            break;
        case 'm':
            if (0 != parse_u64_arg(optarg, &mb)) {
                fprintf(stderr, "loco data prepare: --max-source-mb '%s' is not a count\n",
                        optarg);
                return 2;
            }
            params.max_source_bytes = mb << 20;
            break;
        case 'h': data_usage(stdout); return 0;
        default: data_usage(stderr); return 2;
        }
    }
    static const char *const defaults[] = {DEFAULT_FORTUNES, DEFAULT_GCIDE};
    if (optind < argc) {
        params.inputs = (const char *const *)(argv + optind);
        params.n_inputs = argc - optind;
    } else {
        params.inputs = defaults;
        params.n_inputs = 2;
    }
    loco_error err = {0};
    return report(loco_data_prepare(&params, &err), &err, "prepare");
}

static int cmd_random(int argc, char **argv)
{
    const char *out = NULL;
    uint64_t vocab = 0, tokens = 0, val_tokens = 0, seed = 1;
    static const struct option options[] = {{"out", required_argument, NULL, 'o'},
                                            {"vocab", required_argument, NULL, 'V'},
                                            {"tokens", required_argument, NULL, 'n'},
                                            {"val-tokens", required_argument, NULL, 'v'},
                                            {"seed", required_argument, NULL, 's'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    int opt;
    optind = 1;
    while (-1 != (opt = getopt_long(argc, argv, "o:V:n:v:s:h", options, NULL))) {
        uint64_t *target = NULL;
        switch (opt) {
        case 'o': out = optarg; continue;
        case 'V': target = &vocab; break;
        case 'n': target = &tokens; break;
        case 'v': target = &val_tokens; break;
        case 's': target = &seed; break;
        case 'h': data_usage(stdout); return 0;
        default: data_usage(stderr); return 2;
        }
        if (0 != parse_u64_arg(optarg, target)) {
            fprintf(stderr, "loco data random: '%s' is not a non-negative integer\n", optarg);
            return 2;
        }
    }
    if (NULL == out || 0 == vocab || 0 == tokens) {
        fprintf(stderr, "loco data random: --out, --vocab and --tokens are required\n");
        return 2;
    }
    if (0 == val_tokens) {
        val_tokens = tokens / 20 > 0 ? tokens / 20 : 1;
    }
    loco_error err = {0};
    return report(loco_data_prepare_random(out, (uint32_t)(vocab > 65536 ? 0 : vocab), tokens,
                                           val_tokens, seed, &err),
                  &err, "random");
}

/* A dataset directory means its train.tok; a file means itself. */
static void resolve_token_path(const char *path, char *out, size_t cap)
{
    struct stat st;
    if (0 == stat(path, &st) && S_ISDIR(st.st_mode)) {
        snprintf(out, cap, "%s/train.tok", path);
    } else {
        snprintf(out, cap, "%s", path);
    }
}

static int cmd_info(int argc, char **argv)
{
    if (2 != argc || '-' == argv[1][0]) {
        if (argc > 1 && 0 == strcmp(argv[1], "--help")) {
            data_usage(stdout);
            return 0;
        }
        fprintf(stderr, "usage: loco data info PATH\n");
        return 2;
    }
    char path[4096];
    resolve_token_path(argv[1], path, sizeof path);
    loco_token_file file;
    loco_error err = {0};
    loco_status status = loco_token_file_open(&file, path, &err);
    if (LOCO_OK != status) {
        return report(status, &err, "info");
    }
    printf("%s: format %u, byte tokenizer, vocab %u, %s split, %llu tokens, %u sources\n", path,
           LOCO_DATA_VERSION, file.vocab, file.split ? "validation" : "train",
           (unsigned long long)file.count, file.source_count);
    for (uint32_t s = 0; s < file.source_count; s++) {
        printf("  %-40s %12llu tokens from %llu\n", file.sources[s].name,
               (unsigned long long)file.sources[s].count,
               (unsigned long long)file.sources[s].first);
    }
    loco_token_file_close(&file);
    return 0;
}

static int cmd_decode(int argc, char **argv)
{
    const char *source = NULL;
    uint64_t start = 0, count = UINT64_MAX;
    static const struct option options[] = {{"source", required_argument, NULL, 's'},
                                            {"start", required_argument, NULL, 'b'},
                                            {"count", required_argument, NULL, 'n'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    int opt;
    optind = 1;
    while (-1 != (opt = getopt_long(argc, argv, "s:b:n:h", options, NULL))) {
        switch (opt) {
        case 's': source = optarg; break;
        case 'b':
        case 'n':
            if (0 != parse_u64_arg(optarg, 'b' == opt ? &start : &count)) {
                fprintf(stderr, "loco data decode: '%s' is not a count\n", optarg);
                return 2;
            }
            break;
        case 'h': data_usage(stdout); return 0;
        default: data_usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "usage: loco data decode FILE [--source NAME] [--start N] [--count N]\n");
        return 2;
    }
    char path[4096];
    resolve_token_path(argv[optind], path, sizeof path);
    loco_token_file file;
    loco_error err = {0};
    loco_status status = loco_token_file_open(&file, path, &err);
    if (LOCO_OK != status) {
        return report(status, &err, "decode");
    }
    uint64_t first = 0, end = file.count;
    if (NULL != source) {
        uint32_t s = 0;
        while (s < file.source_count && 0 != strcmp(file.sources[s].name, source)) {
            s++;
        }
        if (s == file.source_count) {
            fprintf(stderr, "loco data decode: no source named '%s' in %s (see loco data info)\n",
                    source, path);
            loco_token_file_close(&file);
            return 1;
        }
        first = file.sources[s].first;
        end = first + file.sources[s].count;
    }
    first = start < end - first ? first + start : end;
    if (count < end - first) {
        end = first + count;
    }
    for (uint64_t i = first; i < end; i++) {
        if (file.tokens[i] > 255) {
            fprintf(stderr, "loco data decode: token %u is not a byte (not a byte-tokenized file)\n",
                    file.tokens[i]);
            loco_token_file_close(&file);
            return 1;
        }
        putchar(file.tokens[i]);
    }
    loco_token_file_close(&file);
    return 0;
}

static int cmd_bigram(int argc, char **argv)
{
    if (2 != argc || '-' == argv[1][0]) {
        fprintf(stderr, "usage: loco data bigram DIR\n");
        return 2;
    }
    char train_path[4096], val_path[4096];
    snprintf(train_path, sizeof train_path, "%s/train.tok", argv[1]);
    snprintf(val_path, sizeof val_path, "%s/val.tok", argv[1]);
    loco_token_file train, val;
    loco_error err = {0};
    loco_status st = loco_token_file_open(&train, train_path, &err);
    if (LOCO_OK != st) {
        return report(st, &err, "bigram");
    }
    st = loco_token_file_open(&val, val_path, &err);
    if (LOCO_OK != st) {
        loco_token_file_close(&train);
        return report(st, &err, "bigram");
    }
    double loss, k;
    st = loco_bigram_val_loss(&train, &val, &loss, &k, &err);
    if (LOCO_OK == st) {
        printf("bigram validation loss %.4f nats/token (add-%g smoothing, %llu train tokens, %llu "
               "validation tokens)\n",
               loss, k, (unsigned long long)train.count, (unsigned long long)val.count);
    }
    loco_token_file_close(&train);
    loco_token_file_close(&val);
    return report(st, &err, "bigram");
}

int loco_cmd_data(int argc, char **argv)
{
    if (argc < 2 || 0 == strcmp(argv[1], "--help") || 0 == strcmp(argv[1], "-h")) {
        data_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (0 == strcmp(argv[1], "prepare")) {
        return cmd_prepare(argc - 1, argv + 1);
    }
    if (0 == strcmp(argv[1], "random")) {
        return cmd_random(argc - 1, argv + 1);
    }
    if (0 == strcmp(argv[1], "info")) {
        return cmd_info(argc - 1, argv + 1);
    }
    if (0 == strcmp(argv[1], "decode")) {
        return cmd_decode(argc - 1, argv + 1);
    }
    if (0 == strcmp(argv[1], "bigram")) {
        return cmd_bigram(argc - 1, argv + 1);
    }
    fprintf(stderr, "loco data: unknown subcommand '%s'\n", argv[1]);
    data_usage(stderr);
    return 2;
}
