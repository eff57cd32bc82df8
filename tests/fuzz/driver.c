/* tests/fuzz/driver.c — a stand-in for libFuzzer's main, so every fuzz target also runs under
 * ctest with gcc and no sanitizer runtime.
 *
 *   fuzz_x [-seconds=N] [-seed=S] [CORPUS_DIR_OR_FILE ...]
 *
 * Runs each seed input, then random mutations of them (bit flips, byte sets, truncation,
 * duplication, splices, random junk) until N seconds pass (default 5). A crash or sanitizer
 * report fails the test; a clean exit prints how many inputs ran. With clang, build with
 * -DLOCO_FUZZ=ON for the real coverage-guided libFuzzer instead.
 */
#include "base/rng.h"
#include "base/timer.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEEDS 256
#define FUZZ_MAX_INPUT (1 << 20)

typedef struct seed_set {
    uint8_t *data[MAX_SEEDS];
    size_t size[MAX_SEEDS];
    int count;
} seed_set;

static void add_seed_file(seed_set *seeds, const char *path)
{
    if (seeds->count >= MAX_SEEDS) {
        return;
    }
    FILE *fp = fopen(path, "rb");
    if (NULL == fp) {
        return;
    }
    uint8_t *buf = malloc(FUZZ_MAX_INPUT);
    size_t n = fread(buf, 1, FUZZ_MAX_INPUT, fp);
    fclose(fp);
    seeds->data[seeds->count] = buf;
    seeds->size[seeds->count] = n;
    seeds->count++;
}

static void add_seed_path(seed_set *seeds, const char *path)
{
    struct stat st;
    if (0 != stat(path, &st)) {
        fprintf(stderr, "fuzz driver: no corpus at %s (continuing with random inputs)\n", path);
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        add_seed_file(seeds, path);
        return;
    }
    DIR *dir = opendir(path);
    struct dirent *entry;
    while (NULL != dir && NULL != (entry = readdir(dir))) {
        if ('.' == entry->d_name[0]) {
            continue;
        }
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", path, entry->d_name);
        add_seed_file(seeds, full);
    }
    if (NULL != dir) {
        closedir(dir);
    }
}

static size_t mutate(loco_rng *rng, const seed_set *seeds, uint8_t *buf, size_t cap)
{
    size_t n = 0;
    if (seeds->count > 0 && loco_rng_below(rng, 8) != 0) {
        int s = (int)loco_rng_below(rng, (uint32_t)seeds->count);
        n = seeds->size[s] < cap ? seeds->size[s] : cap;
        memcpy(buf, seeds->data[s], n);
    } else {
        n = loco_rng_below(rng, 512);
        for (size_t i = 0; i < n; i++) {
            buf[i] = (uint8_t)loco_rng_u32(rng);
        }
        return n;
    }
    int edits = 1 + (int)loco_rng_below(rng, 8);
    for (int e = 0; e < edits && n > 0; e++) {
        size_t at = loco_rng_below(rng, (uint32_t)n);
        switch (loco_rng_below(rng, 6)) {
        case 0: buf[at] ^= (uint8_t)(1u << loco_rng_below(rng, 8)); break;
        case 1: buf[at] = (uint8_t)loco_rng_u32(rng); break;
        case 2: n = at; break; /* truncate */
        case 3: { /* interesting values into 4 bytes */
            static const uint32_t vals[] = {0, 1, 0x7F, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF};
            uint32_t v = vals[loco_rng_below(rng, 7)];
            if (at + 4 <= n) memcpy(buf + at, &v, 4);
            break;
        }
        case 4: /* duplicate a block */
            if (2 * n <= cap) {
                memcpy(buf + n, buf, n);
                n *= 2;
            }
            break;
        default: /* splice another seed's tail */
            if (seeds->count > 0) {
                int s = (int)loco_rng_below(rng, (uint32_t)seeds->count);
                size_t from = seeds->size[s] ? loco_rng_below(rng, (uint32_t)seeds->size[s]) : 0;
                size_t take = seeds->size[s] - from;
                if (at + take > cap) take = cap - at;
                memcpy(buf + at, seeds->data[s] + from, take);
                n = at + take;
            }
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    double seconds = 5.0;
    uint64_t seed = 1;
    seed_set seeds = {0};
    for (int i = 1; i < argc; i++) {
        if (0 == strncmp(argv[i], "-seconds=", 9)) {
            seconds = atof(argv[i] + 9);
        } else if (0 == strncmp(argv[i], "-seed=", 6)) {
            seed = strtoull(argv[i] + 6, NULL, 10);
        } else if ('-' != argv[i][0]) {
            add_seed_path(&seeds, argv[i]);
        }
    }
    long runs = 0;
    for (int s = 0; s < seeds.count; s++) {
        /* Exact-size copies so sanitizers see reads past the end. */
        uint8_t *copy = malloc(seeds.size[s] ? seeds.size[s] : 1);
        memcpy(copy, seeds.data[s], seeds.size[s]);
        LLVMFuzzerTestOneInput(copy, seeds.size[s]);
        free(copy);
        runs++;
    }
    loco_rng rng;
    loco_rng_init(&rng, seed, 0);
    uint8_t *buf = malloc(FUZZ_MAX_INPUT);
    double start = loco_now_s();
    while (loco_now_s() - start < seconds) {
        size_t n = mutate(&rng, &seeds, buf, FUZZ_MAX_INPUT);
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, buf, n);
        LLVMFuzzerTestOneInput(copy, n);
        free(copy);
        runs++;
    }
    free(buf);
    for (int s = 0; s < seeds.count; s++) {
        free(seeds.data[s]);
    }
    printf("fuzz driver: %ld inputs (%d seeds) in %.1f s, no crash\n", runs, seeds.count, seconds);
    return 0;
}
