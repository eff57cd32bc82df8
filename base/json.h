/* base/json.h — a small JSON writer and a hostile-input-safe JSON reader.
 *
 * Writer: streams to a FILE* (use open_memstream for a string), tracking commas and nesting, so
 * callers write `loco_json_key(w, "step"); loco_json_int(w, 12);`. Non-finite numbers become null.
 *
 * Reader: parses a whole document into one node array (one allocation per document) with limits
 * on nesting depth and node count; every string is unescaped into a side buffer. Malformed input
 * returns LOCO_ERR_FORMAT with the byte offset of the problem. Used for safetensors headers,
 * checkpoint metadata, run.json and metrics.jsonl.
 */
#ifndef LOCO_BASE_JSON_H
#define LOCO_BASE_JSON_H

#include "status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---------------------------------------------------------------------------------------------
 * Writer */

#define LOCO_JSON_MAX_DEPTH 32

typedef struct loco_json_writer {
    FILE *out;
    int depth;
    bool has_item[LOCO_JSON_MAX_DEPTH]; /* a value was written at this depth: next needs a comma */
    bool after_key;                     /* a key was written: the value follows without a comma */
    bool pretty;                        /* newline + indentation between items */
} loco_json_writer;

void loco_json_writer_init(loco_json_writer *w, FILE *out, bool pretty);
void loco_json_begin_object(loco_json_writer *w);
void loco_json_end_object(loco_json_writer *w);
void loco_json_begin_array(loco_json_writer *w);
void loco_json_end_array(loco_json_writer *w);
void loco_json_key(loco_json_writer *w, const char *key);
void loco_json_string(loco_json_writer *w, const char *s);
void loco_json_number(loco_json_writer *w, double v); /* %.17g; NaN/Inf -> null */
void loco_json_int(loco_json_writer *w, int64_t v);
void loco_json_uint(loco_json_writer *w, uint64_t v);
void loco_json_bool(loco_json_writer *w, bool v);
void loco_json_null(loco_json_writer *w);
/* Write a JSON string literal (with quotes and escapes) for s to out. */
void loco_json_write_escaped(FILE *out, const char *s);

/* ---------------------------------------------------------------------------------------------
 * Reader */

typedef enum loco_json_type {
    LOCO_JSON_NULL,
    LOCO_JSON_BOOL,
    LOCO_JSON_NUMBER,
    LOCO_JSON_STRING,
    LOCO_JSON_ARRAY,
    LOCO_JSON_OBJECT,
} loco_json_type;

typedef struct loco_json_node {
    loco_json_type type;
    int next;        /* index of the next sibling, or -1 */
    int first_child; /* arrays/objects: first element/member value, or -1 */
    int count;       /* arrays/objects: number of elements/members */
    const char *key; /* member of an object: its key (NUL-terminated), else NULL */
    const char *str; /* strings: unescaped, NUL-terminated (may contain no NUL: \u0000 refused) */
    size_t str_len;
    double number;
    bool is_integer; /* number written without fraction/exponent and fits int64 */
    int64_t integer;
    bool boolean;
} loco_json_node;

typedef struct loco_json_doc {
    loco_json_node *nodes; /* nodes[0] is the root */
    int count;
    char *strings; /* unescaped keys and strings */
} loco_json_doc;

typedef struct loco_json_limits {
    int max_depth; /* default 64 */
    int max_nodes; /* default 1 << 20 */
} loco_json_limits;

/* Parse `len` bytes of text (need not be NUL-terminated). limits may be NULL for defaults.
 * On error, doc is left empty and err names the byte offset and the problem. */
loco_status loco_json_parse(loco_json_doc *doc, const char *text, size_t len,
                            const loco_json_limits *limits, loco_error *err);
void loco_json_free(loco_json_doc *doc);

static inline const loco_json_node *loco_json_root(const loco_json_doc *doc)
{
    return doc->count > 0 ? &doc->nodes[0] : NULL;
}
/* The member `key` of an object node, or NULL if absent or node is not an object. */
const loco_json_node *loco_json_get(const loco_json_doc *doc, const loco_json_node *obj,
                                    const char *key);
/* First child / next sibling for iteration; NULL at the end. */
const loco_json_node *loco_json_child(const loco_json_doc *doc, const loco_json_node *node);
const loco_json_node *loco_json_next(const loco_json_doc *doc, const loco_json_node *node);

#endif /* LOCO_BASE_JSON_H */
