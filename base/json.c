/* base/json.c — JSON writer and reader (see json.h). */
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* =============================================================================================
 * Writer */

void loco_json_writer_init(loco_json_writer *w, FILE *out, bool pretty)
{
    memset(w, 0, sizeof *w);
    w->out = out;
    w->pretty = pretty;
}

static void writer_before_value(loco_json_writer *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->depth > 0 && w->has_item[w->depth]) {
        fputc(',', w->out);
    }
    if (w->pretty && w->depth > 0) {
        fprintf(w->out, "\n%*s", 2 * w->depth, "");
    }
    w->has_item[w->depth] = true;
}

static void writer_open(loco_json_writer *w, char c)
{
    writer_before_value(w);
    fputc(c, w->out);
    LOCO_ASSERT(w->depth + 1 < LOCO_JSON_MAX_DEPTH);
    w->depth++;
    w->has_item[w->depth] = false;
}

static void writer_close(loco_json_writer *w, char c)
{
    LOCO_ASSERT(w->depth > 0);
    bool had = w->has_item[w->depth];
    w->depth--;
    if (w->pretty && had) {
        fprintf(w->out, "\n%*s", 2 * w->depth, "");
    }
    fputc(c, w->out);
    if (0 == w->depth && w->pretty) {
        fputc('\n', w->out);
    }
}

void loco_json_begin_object(loco_json_writer *w) { writer_open(w, '{'); }
void loco_json_end_object(loco_json_writer *w) { writer_close(w, '}'); }
void loco_json_begin_array(loco_json_writer *w) { writer_open(w, '['); }
void loco_json_end_array(loco_json_writer *w) { writer_close(w, ']'); }

void loco_json_write_escaped(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (*p < 0x20) {
                fprintf(out, "\\u%04x", *p);
            } else {
                fputc(*p, out);
            }
        }
    }
    fputc('"', out);
}

void loco_json_key(loco_json_writer *w, const char *key)
{
    writer_before_value(w);
    loco_json_write_escaped(w->out, key);
    fputs(w->pretty ? ": " : ":", w->out);
    w->after_key = true;
}

void loco_json_string(loco_json_writer *w, const char *s)
{
    writer_before_value(w);
    loco_json_write_escaped(w->out, NULL == s ? "" : s);
}

void loco_json_number(loco_json_writer *w, double v)
{
    writer_before_value(w);
    if (!isfinite(v)) {
        fputs("null", w->out);
    } else if (v == (double)(int64_t)v && fabs(v) < 1e15) {
        fprintf(w->out, "%lld", (long long)v);
    } else {
        fprintf(w->out, "%.17g", v);
    }
}

void loco_json_int(loco_json_writer *w, int64_t v)
{
    writer_before_value(w);
    fprintf(w->out, "%lld", (long long)v);
}

void loco_json_uint(loco_json_writer *w, uint64_t v)
{
    writer_before_value(w);
    fprintf(w->out, "%llu", (unsigned long long)v);
}

void loco_json_bool(loco_json_writer *w, bool v)
{
    writer_before_value(w);
    fputs(v ? "true" : "false", w->out);
}

void loco_json_null(loco_json_writer *w)
{
    writer_before_value(w);
    fputs("null", w->out);
}

/* =============================================================================================
 * Reader: recursive descent with an explicit depth limit. Nodes go into a growing array; strings
 * are unescaped into a buffer as long as the input (unescaping never lengthens text), so string
 * pointers stay valid once parsing ends. */

typedef struct json_parser {
    const char *text;
    size_t len;
    size_t pos;
    loco_json_node *nodes;
    int count;
    int capacity;
    int max_nodes;
    int max_depth;
    char *strings;
    size_t strings_used;
    loco_error *err;
} json_parser;

static loco_status parse_fail(json_parser *p, const char *what)
{
    return loco_error_set(p->err, LOCO_ERR_FORMAT, "JSON: %s at byte %zu", what, p->pos);
}

static void skip_ws(json_parser *p)
{
    while (p->pos < p->len) {
        char c = p->text[p->pos];
        if (' ' != c && '\t' != c && '\n' != c && '\r' != c) {
            break;
        }
        p->pos++;
    }
}

static loco_status new_node(json_parser *p, loco_json_type type, int *index)
{
    if (p->count >= p->max_nodes) {
        return parse_fail(p, "too many values");
    }
    if (p->count == p->capacity) {
        int cap = p->capacity ? 2 * p->capacity : 64;
        if (cap > p->max_nodes) {
            cap = p->max_nodes;
        }
        loco_json_node *grown = realloc(p->nodes, (size_t)cap * sizeof *grown);
        if (NULL == grown) {
            return loco_error_set(p->err, LOCO_ERR_NOMEM, "JSON: out of memory");
        }
        p->nodes = grown;
        p->capacity = cap;
    }
    loco_json_node *n = &p->nodes[p->count];
    memset(n, 0, sizeof *n);
    n->type = type;
    n->next = -1;
    n->first_child = -1;
    *index = p->count++;
    return LOCO_OK;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static loco_status read_hex4(json_parser *p, unsigned *out)
{
    if (p->pos + 4 > p->len) {
        return parse_fail(p, "truncated \\u escape");
    }
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(p->text[p->pos + (size_t)i]);
        if (d < 0) {
            return parse_fail(p, "bad \\u escape");
        }
        v = v * 16 + (unsigned)d;
    }
    p->pos += 4;
    *out = v;
    return LOCO_OK;
}

/* Parse a string literal at p->pos (on the opening quote); store it unescaped. */
static loco_status parse_string(json_parser *p, const char **out, size_t *out_len)
{
    p->pos++; /* opening quote */
    char *dst = p->strings + p->strings_used;
    size_t n = 0;
    for (;;) {
        if (p->pos >= p->len) {
            return parse_fail(p, "unterminated string");
        }
        unsigned char c = (unsigned char)p->text[p->pos++];
        if ('"' == c) {
            break;
        }
        if (c < 0x20) {
            return parse_fail(p, "control character in string");
        }
        if ('\\' != c) {
            dst[n++] = (char)c;
            continue;
        }
        if (p->pos >= p->len) {
            return parse_fail(p, "unterminated escape");
        }
        char e = p->text[p->pos++];
        switch (e) {
        case '"': dst[n++] = '"'; break;
        case '\\': dst[n++] = '\\'; break;
        case '/': dst[n++] = '/'; break;
        case 'b': dst[n++] = '\b'; break;
        case 'f': dst[n++] = '\f'; break;
        case 'n': dst[n++] = '\n'; break;
        case 'r': dst[n++] = '\r'; break;
        case 't': dst[n++] = '\t'; break;
        case 'u': {
            unsigned cp;
            LOCO_TRY(read_hex4(p, &cp));
            if (cp >= 0xD800 && cp < 0xDC00) {
                unsigned lo;
                if (p->pos + 2 > p->len || '\\' != p->text[p->pos] || 'u' != p->text[p->pos + 1]) {
                    return parse_fail(p, "unpaired surrogate");
                }
                p->pos += 2;
                LOCO_TRY(read_hex4(p, &lo));
                if (lo < 0xDC00 || lo >= 0xE000) {
                    return parse_fail(p, "bad low surrogate");
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                return parse_fail(p, "unpaired surrogate");
            }
            if (0 == cp) {
                return parse_fail(p, "\\u0000 in string");
            }
            /* UTF-8 encode: at most 4 bytes, never more than the 6 or 12 input bytes consumed. */
            if (cp < 0x80) {
                dst[n++] = (char)cp;
            } else if (cp < 0x800) {
                dst[n++] = (char)(0xC0 | (cp >> 6));
                dst[n++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                dst[n++] = (char)(0xE0 | (cp >> 12));
                dst[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                dst[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                dst[n++] = (char)(0xF0 | (cp >> 18));
                dst[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                dst[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                dst[n++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: return parse_fail(p, "bad escape");
        }
    }
    dst[n] = '\0';
    p->strings_used += n + 1;
    *out = dst;
    *out_len = n;
    return LOCO_OK;
}

static loco_status parse_number(json_parser *p, loco_json_node *node)
{
    size_t start = p->pos;
    bool integer = true;
    if (p->pos < p->len && '-' == p->text[p->pos]) p->pos++;
    if (p->pos >= p->len) return parse_fail(p, "bad number");
    if ('0' == p->text[p->pos]) {
        p->pos++;
    } else if (p->text[p->pos] >= '1' && p->text[p->pos] <= '9') {
        while (p->pos < p->len && p->text[p->pos] >= '0' && p->text[p->pos] <= '9') p->pos++;
    } else {
        return parse_fail(p, "bad number");
    }
    if (p->pos < p->len && '.' == p->text[p->pos]) {
        integer = false;
        p->pos++;
        size_t digits = p->pos;
        while (p->pos < p->len && p->text[p->pos] >= '0' && p->text[p->pos] <= '9') p->pos++;
        if (p->pos == digits) return parse_fail(p, "bad fraction");
    }
    if (p->pos < p->len && ('e' == p->text[p->pos] || 'E' == p->text[p->pos])) {
        integer = false;
        p->pos++;
        if (p->pos < p->len && ('+' == p->text[p->pos] || '-' == p->text[p->pos])) p->pos++;
        size_t digits = p->pos;
        while (p->pos < p->len && p->text[p->pos] >= '0' && p->text[p->pos] <= '9') p->pos++;
        if (p->pos == digits) return parse_fail(p, "bad exponent");
    }
    char buf[64];
    size_t n = p->pos - start;
    if (n >= sizeof buf) {
        return parse_fail(p, "number too long");
    }
    memcpy(buf, p->text + start, n);
    buf[n] = '\0';
    node->number = strtod(buf, NULL);
    if (integer) {
        errno = 0;
        long long v = strtoll(buf, NULL, 10);
        if (0 == errno) {
            node->is_integer = true;
            node->integer = v;
        }
    }
    return LOCO_OK;
}

static bool match_word(json_parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->pos + n <= p->len && 0 == memcmp(p->text + p->pos, word, n)) {
        p->pos += n;
        return true;
    }
    return false;
}

static loco_status parse_value(json_parser *p, int depth, int *index);

static loco_status parse_container(json_parser *p, int depth, int index, bool object)
{
    char close = object ? '}' : ']';
    p->pos++; /* opening bracket */
    skip_ws(p);
    int last = -1;
    if (p->pos < p->len && close == p->text[p->pos]) {
        p->pos++;
        return LOCO_OK;
    }
    for (;;) {
        const char *key = NULL;
        size_t key_len = 0;
        skip_ws(p);
        if (object) {
            if (p->pos >= p->len || '"' != p->text[p->pos]) {
                return parse_fail(p, "expected a string key");
            }
            LOCO_TRY(parse_string(p, &key, &key_len));
            skip_ws(p);
            if (p->pos >= p->len || ':' != p->text[p->pos]) {
                return parse_fail(p, "expected ':'");
            }
            p->pos++;
        }
        int child;
        LOCO_TRY(parse_value(p, depth + 1, &child));
        p->nodes[child].key = key;
        if (last < 0) {
            p->nodes[index].first_child = child;
        } else {
            p->nodes[last].next = child;
        }
        last = child;
        p->nodes[index].count++;
        skip_ws(p);
        if (p->pos >= p->len) {
            return parse_fail(p, "unterminated container");
        }
        char c = p->text[p->pos++];
        if (close == c) {
            return LOCO_OK;
        }
        if (',' != c) {
            p->pos--;
            return parse_fail(p, object ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
}

static loco_status parse_value(json_parser *p, int depth, int *index)
{
    if (depth > p->max_depth) {
        return parse_fail(p, "nesting too deep");
    }
    skip_ws(p);
    if (p->pos >= p->len) {
        return parse_fail(p, "unexpected end of input");
    }
    char c = p->text[p->pos];
    switch (c) {
    case '{':
    case '[':
        LOCO_TRY(new_node(p, '{' == c ? LOCO_JSON_OBJECT : LOCO_JSON_ARRAY, index));
        return parse_container(p, depth, *index, '{' == c);
    case '"': {
        LOCO_TRY(new_node(p, LOCO_JSON_STRING, index));
        const char *s;
        size_t n;
        LOCO_TRY(parse_string(p, &s, &n));
        p->nodes[*index].str = s;
        p->nodes[*index].str_len = n;
        return LOCO_OK;
    }
    case 't':
    case 'f':
        LOCO_TRY(new_node(p, LOCO_JSON_BOOL, index));
        if (match_word(p, "true")) {
            p->nodes[*index].boolean = true;
            return LOCO_OK;
        }
        if (match_word(p, "false")) {
            return LOCO_OK;
        }
        return parse_fail(p, "bad literal");
    case 'n':
        LOCO_TRY(new_node(p, LOCO_JSON_NULL, index));
        return match_word(p, "null") ? LOCO_OK : parse_fail(p, "bad literal");
    default:
        LOCO_TRY(new_node(p, LOCO_JSON_NUMBER, index));
        return parse_number(p, &p->nodes[*index]);
    }
}

loco_status loco_json_parse(loco_json_doc *doc, const char *text, size_t len,
                            const loco_json_limits *limits, loco_error *err)
{
    memset(doc, 0, sizeof *doc);
    json_parser p = {0};
    p.text = text;
    p.len = len;
    p.max_depth = (NULL != limits && limits->max_depth > 0) ? limits->max_depth : 64;
    p.max_nodes = (NULL != limits && limits->max_nodes > 0) ? limits->max_nodes : (1 << 20);
    p.err = err;
    p.strings = malloc(len + 1);
    if (NULL == p.strings) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "JSON: out of memory");
    }
    int root;
    loco_status st = parse_value(&p, 0, &root);
    if (LOCO_OK == st) {
        skip_ws(&p);
        if (p.pos != p.len) {
            st = parse_fail(&p, "trailing characters");
        }
    }
    if (LOCO_OK != st) {
        free(p.nodes);
        free(p.strings);
        return st;
    }
    doc->nodes = p.nodes;
    doc->count = p.count;
    doc->strings = p.strings;
    return LOCO_OK;
}

void loco_json_free(loco_json_doc *doc)
{
    free(doc->nodes);
    free(doc->strings);
    memset(doc, 0, sizeof *doc);
}

const loco_json_node *loco_json_get(const loco_json_doc *doc, const loco_json_node *obj,
                                    const char *key)
{
    if (NULL == obj || LOCO_JSON_OBJECT != obj->type) {
        return NULL;
    }
    for (int i = obj->first_child; i >= 0; i = doc->nodes[i].next) {
        if (0 == strcmp(doc->nodes[i].key, key)) {
            return &doc->nodes[i];
        }
    }
    return NULL;
}

const loco_json_node *loco_json_child(const loco_json_doc *doc, const loco_json_node *node)
{
    if (NULL == node || node->first_child < 0) {
        return NULL;
    }
    return &doc->nodes[node->first_child];
}

const loco_json_node *loco_json_next(const loco_json_doc *doc, const loco_json_node *node)
{
    if (NULL == node || node->next < 0) {
        return NULL;
    }
    return &doc->nodes[node->next];
}
