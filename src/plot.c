/* src/plot.c — PNG line plots (see plot.h). */
#include "src/plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* =============================================================================================
 * PNG encoding: signature, IHDR, one IDAT (zlib stream of rows, each with filter byte 0), IEND. */

static void put_u32_be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int write_chunk(FILE *fp, const char type[4], const uint8_t *data, uint32_t len)
{
    uint8_t head[8];
    put_u32_be(head, len);
    memcpy(head + 4, type, 4);
    uLong crc = crc32(0L, (const Bytef *)type, 4);
    if (len > 0) {
        crc = crc32(crc, data, len);
    }
    uint8_t tail[4];
    put_u32_be(tail, (uint32_t)crc);
    return 1 == fwrite(head, 8, 1, fp) && (0 == len || 1 == fwrite(data, len, 1, fp)) &&
           1 == fwrite(tail, 4, 1, fp);
}

loco_status loco_png_write(const char *path, const uint8_t *rgb, int width, int height,
                           loco_error *err)
{
    size_t row = (size_t)width * 3 + 1;
    size_t raw_len = row * (size_t)height;
    uint8_t *raw = malloc(raw_len);
    uLongf packed_len = compressBound((uLong)raw_len);
    uint8_t *packed = malloc(packed_len);
    if (NULL == raw || NULL == packed) {
        free(raw);
        free(packed);
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory writing %s", path);
    }
    for (int y = 0; y < height; y++) {
        raw[(size_t)y * row] = 0; /* filter: none */
        memcpy(raw + (size_t)y * row + 1, rgb + (size_t)y * width * 3, (size_t)width * 3);
    }
    int zst = compress2(packed, &packed_len, raw, (uLong)raw_len, 9);
    free(raw);
    if (Z_OK != zst) {
        free(packed);
        return loco_error_set(err, LOCO_ERR_INTERNAL, "zlib failed compressing %s", path);
    }
    loco_atomic_file af;
    loco_status st = loco_atomic_open(&af, path, err);
    if (LOCO_OK == st) {
        static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
        uint8_t ihdr[13];
        put_u32_be(ihdr, (uint32_t)width);
        put_u32_be(ihdr + 4, (uint32_t)height);
        ihdr[8] = 8;  /* bit depth */
        ihdr[9] = 2;  /* colour type: RGB */
        ihdr[10] = 0; /* deflate */
        ihdr[11] = 0; /* adaptive filtering */
        ihdr[12] = 0; /* no interlace */
        int ok = 1 == fwrite(signature, 8, 1, af.fp) && write_chunk(af.fp, "IHDR", ihdr, 13) &&
                 write_chunk(af.fp, "IDAT", packed, (uint32_t)packed_len) &&
                 write_chunk(af.fp, "IEND", NULL, 0);
        st = ok ? loco_atomic_commit(&af, err)
                : loco_error_set(err, LOCO_ERR_IO, "cannot write %s", path);
        if (!ok) {
            loco_atomic_abort(&af);
        }
    }
    free(packed);
    return st;
}

/* =============================================================================================
 * Canvas and font */

typedef struct canvas {
    uint8_t *rgb;
    int width, height;
} canvas;

typedef struct colour {
    uint8_t r, g, b;
} colour;

static void put_pixel(canvas *c, int x, int y, colour col)
{
    if (x < 0 || y < 0 || x >= c->width || y >= c->height) {
        return;
    }
    uint8_t *p = c->rgb + ((size_t)y * c->width + x) * 3;
    p[0] = col.r;
    p[1] = col.g;
    p[2] = col.b;
}

static void fill_rect(canvas *c, int x0, int y0, int x1, int y1, colour col)
{
    for (int y = y0; y <= y1; y++) {
        for (int x = x0; x <= x1; x++) {
            put_pixel(c, x, y, col);
        }
    }
}

/* A line `thickness` pixels wide (Bresenham with a square brush). */
static void draw_line(canvas *c, int x0, int y0, int x1, int y1, int thickness, colour col)
{
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    int dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int e = dx + dy;
    int lo = -(thickness - 1) / 2, hi = thickness / 2;
    for (;;) {
        fill_rect(c, x0 + lo, y0 + lo, x0 + hi, y0 + hi, col);
        if (x0 == x1 && y0 == y1) {
            break;
        }
        int e2 = 2 * e;
        if (e2 >= dy) {
            e += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            e += dx;
            y0 += sy;
        }
    }
}

/* 5x7 glyphs, row by row, '#' = ink. Lowercase letters are drawn with the capitals. */
typedef struct glyph {
    char ch;
    const char *rows[7];
} glyph;

static const glyph g_font[] = {
    {'0', {" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "}},
    {'1', {"  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "}},
    {'2', {" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"}},
    {'3', {" ### ", "#   #", "    #", "  ## ", "    #", "#   #", " ### "}},
    {'4', {"   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "}},
    {'5', {"#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "}},
    {'6', {"  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "}},
    {'7', {"#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "}},
    {'8', {" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "}},
    {'9', {" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "}},
    {'A', {" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"}},
    {'B', {"#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "}},
    {'C', {" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "}},
    {'D', {"#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### "}},
    {'E', {"#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"}},
    {'F', {"#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "}},
    {'G', {" ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####"}},
    {'H', {"#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"}},
    {'I', {" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "}},
    {'J', {"  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "}},
    {'K', {"#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"}},
    {'L', {"#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"}},
    {'M', {"#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"}},
    {'N', {"#   #", "#   #", "##  #", "# # #", "#  ##", "#   #", "#   #"}},
    {'O', {" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "}},
    {'P', {"#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "}},
    {'Q', {" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"}},
    {'R', {"#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"}},
    {'S', {" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "}},
    {'T', {"#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "}},
    {'U', {"#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "}},
    {'V', {"#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "}},
    {'W', {"#   #", "#   #", "#   #", "# # #", "# # #", "# # #", " # # "}},
    {'X', {"#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"}},
    {'Y', {"#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "}},
    {'Z', {"#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"}},
    {'.', {"     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "}},
    {',', {"     ", "     ", "     ", "     ", " ##  ", "  #  ", " #   "}},
    {'-', {"     ", "     ", "     ", "#####", "     ", "     ", "     "}},
    {'+', {"     ", "  #  ", "  #  ", "#####", "  #  ", "  #  ", "     "}},
    {'(', {"   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # "}},
    {')', {" #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   "}},
    {'/', {"     ", "    #", "   # ", "  #  ", " #   ", "#    ", "     "}},
    {':', {"     ", " ##  ", " ##  ", "     ", " ##  ", " ##  ", "     "}},
    {'%', {"##   ", "##  #", "   # ", "  #  ", " #   ", "#  ##", "   ##"}},
    {'_', {"     ", "     ", "     ", "     ", "     ", "     ", "#####"}},
    {'=', {"     ", "     ", "#####", "     ", "#####", "     ", "     "}},
    {'x', {"     ", "     ", "#   #", " # # ", "  #  ", " # # ", "#   #"}},
    {'[', {" ### ", " #   ", " #   ", " #   ", " #   ", " #   ", " ### "}},
    {']', {" ### ", "   # ", "   # ", "   # ", "   # ", "   # ", " ### "}},
    {'@', {" ### ", "#   #", "# ###", "# # #", "# ###", "#    ", " ####"}},
    {'#', {" # # ", " # # ", "#####", " # # ", "#####", " # # ", " # # "}},
    {'*', {"     ", "# # #", " ### ", "#####", " ### ", "# # #", "     "}},
    {'\'', {"  #  ", "  #  ", "     ", "     ", "     ", "     ", "     "}},
    {'>', {"#    ", " #   ", "  #  ", "   # ", "  #  ", " #   ", "#    "}},
    {'<', {"    #", "   # ", "  #  ", " #   ", "  #  ", "   # ", "    #"}},
};

static const glyph *find_glyph(char ch)
{
    /* 'x' has its own lowercase glyph (for "2x"); other lowercase letters use capitals. */
    if (ch >= 'a' && ch <= 'z' && 'x' != ch) {
        ch = (char)(ch - 'a' + 'A');
    }
    for (size_t i = 0; i < sizeof g_font / sizeof g_font[0]; i++) {
        if (g_font[i].ch == ch) {
            return &g_font[i];
        }
    }
    return NULL; /* space and unknown characters draw nothing */
}

/* Text at (x, y) = top-left, each font pixel `scale` screen pixels. Returns the width drawn. */
static int draw_text(canvas *c, int x, int y, const char *text, int scale, colour col)
{
    int start = x;
    for (const char *p = text; *p; p++) {
        const glyph *g = find_glyph(*p);
        for (int row = 0; NULL != g && row < 7; row++) {
            for (int colm = 0; colm < 5; colm++) {
                if ('#' == g->rows[row][colm]) {
                    fill_rect(c, x + colm * scale, y + row * scale, x + colm * scale + scale - 1,
                              y + row * scale + scale - 1, col);
                }
            }
        }
        x += 6 * scale;
    }
    return x - start;
}

static int text_width(const char *text, int scale) { return (int)strlen(text) * 6 * scale; }

/* =============================================================================================
 * Axes */

/* A "nice" tick step (1, 2 or 5 times a power of ten) giving about `target` ticks. */
static double nice_step(double span, int target)
{
    double raw = span / target;
    double mag = pow(10.0, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1 : (f < 3.5 ? 2 : (f < 7.5 ? 5 : 10))) * mag;
}

static void format_tick(double v, double step, char *out, size_t cap)
{
    double a = fabs(v);
    if (0 == v) {
        snprintf(out, cap, "0");
    } else if (a >= 1e9) {
        snprintf(out, cap, "%gG", v / 1e9);
    } else if (a >= 1e6) {
        snprintf(out, cap, "%gM", v / 1e6);
    } else if (a >= 1e4) {
        snprintf(out, cap, "%gK", v / 1e3);
    } else {
        int decimals = step >= 1 ? 0 : (int)ceil(-log10(step));
        snprintf(out, cap, "%.*f", decimals, v);
    }
}

/* Tableau 10, then darker and lighter variants: 16 series stay distinguishable (a comparison
 * of every strategy has 13). */
static const colour g_palette[] = {
    {31, 119, 180}, {214, 39, 40},  {44, 160, 44},   {255, 127, 14}, {148, 103, 189},
    {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207},
    {0, 0, 0},      {120, 0, 60},   {0, 90, 50},     {250, 200, 0},  {0, 40, 140},
    {170, 255, 120}};

loco_status loco_plot_png(const loco_plot *plot, const char *path, int width, int height,
                          loco_error *err)
{
    /* Data ranges over drawable points. */
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int s = 0; s < plot->n_series; s++) {
        const loco_plot_series *se = &plot->series[s];
        for (int i = 0; i < se->n; i++) {
            double x = se->x[i], y = se->y[i];
            if (!isfinite(x) || !isfinite(y) || (plot->log_x && x <= 0)) {
                continue;
            }
            double xv = plot->log_x ? log10(x) : x;
            xmin = fmin(xmin, xv);
            xmax = fmax(xmax, xv);
            ymin = fmin(ymin, y);
            ymax = fmax(ymax, y);
        }
    }
    if (!isfinite(xmin) || !isfinite(ymin)) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG, "%s: nothing to plot", path);
    }
    if (xmax - xmin < 1e-12) {
        xmin -= 0.5;
        xmax += 0.5;
    }
    if (ymax - ymin < 1e-12) {
        ymin -= 0.5;
        ymax += 0.5;
    }
    double ypad = 0.05 * (ymax - ymin);
    ymin -= ypad;
    ymax += ypad;

    canvas c = {calloc((size_t)width * height * 3, 1), width, height};
    if (NULL == c.rgb) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory plotting %s", path);
    }
    const colour white = {255, 255, 255}, black = {0, 0, 0}, grid = {225, 225, 225};
    fill_rect(&c, 0, 0, width - 1, height - 1, white);
    const int left = 80, right = width - 20, top = 50, bottom = height - 60;

    /* y ticks and grid */
    double ystep = nice_step(ymax - ymin, 6);
    for (double t = ceil(ymin / ystep) * ystep; t <= ymax + 1e-9 * ystep; t += ystep) {
        int py = bottom - (int)lround((t - ymin) / (ymax - ymin) * (bottom - top));
        draw_line(&c, left, py, right, py, 1, grid);
        char label[32];
        format_tick(t, ystep, label, sizeof label);
        draw_text(&c, left - 8 - text_width(label, 1), py - 3, label, 1, black);
    }
    /* x ticks and grid: decades on a log axis */
    if (plot->log_x) {
        for (double d = ceil(xmin); d <= xmax + 1e-9; d += 1) {
            int px = left + (int)lround((d - xmin) / (xmax - xmin) * (right - left));
            draw_line(&c, px, top, px, bottom, 1, grid);
            char label[32];
            format_tick(pow(10, d), 1, label, sizeof label);
            draw_text(&c, px - text_width(label, 1) / 2, bottom + 8, label, 1, black);
        }
    } else {
        double xstep = nice_step(xmax - xmin, 6);
        for (double t = ceil(xmin / xstep) * xstep; t <= xmax + 1e-9 * xstep; t += xstep) {
            int px = left + (int)lround((t - xmin) / (xmax - xmin) * (right - left));
            draw_line(&c, px, top, px, bottom, 1, grid);
            char label[32];
            format_tick(t, xstep, label, sizeof label);
            draw_text(&c, px - text_width(label, 1) / 2, bottom + 8, label, 1, black);
        }
    }
    draw_line(&c, left, bottom, right, bottom, 1, black);
    draw_line(&c, left, top, left, bottom, 1, black);
    if (NULL != plot->title) {
        draw_text(&c, (width - text_width(plot->title, 2)) / 2, 12, plot->title, 2, black);
    }
    if (NULL != plot->x_label) {
        draw_text(&c, (left + right - text_width(plot->x_label, 1)) / 2, bottom + 28,
                  plot->x_label, 1, black);
    }
    if (NULL != plot->y_label) {
        draw_text(&c, 8, top - 16, plot->y_label, 1, black);
    }
    /* series */
    for (int s = 0; s < plot->n_series; s++) {
        const loco_plot_series *se = &plot->series[s];
        colour col = g_palette[s % (int)(sizeof g_palette / sizeof g_palette[0])];
        int have_prev = 0, px_prev = 0, py_prev = 0;
        for (int i = 0; i < se->n; i++) {
            double x = se->x[i], y = se->y[i];
            if (!isfinite(x) || !isfinite(y) || (plot->log_x && x <= 0)) {
                continue;
            }
            double xv = plot->log_x ? log10(x) : x;
            int px = left + (int)lround((xv - xmin) / (xmax - xmin) * (right - left));
            int py = bottom - (int)lround((y - ymin) / (ymax - ymin) * (bottom - top));
            if (have_prev) {
                draw_line(&c, px_prev, py_prev, px, py, 2, col);
            }
            fill_rect(&c, px - 2, py - 2, px + 2, py + 2, col);
            have_prev = 1;
            px_prev = px;
            py_prev = py;
        }
    }
    /* legend, top right */
    int lw = 0;
    for (int s = 0; s < plot->n_series; s++) {
        int w = text_width(NULL != plot->series[s].label ? plot->series[s].label : "", 1);
        lw = w > lw ? w : lw;
    }
    int lx = right - lw - 40, ly = top + 8;
    fill_rect(&c, lx - 6, ly - 6, right - 4, ly + 12 * plot->n_series + 2, white);
    for (int s = 0; s < plot->n_series; s++) {
        colour col = g_palette[s % (int)(sizeof g_palette / sizeof g_palette[0])];
        fill_rect(&c, lx, ly + 12 * s + 2, lx + 20, ly + 12 * s + 4, col);
        draw_text(&c, lx + 28, ly + 12 * s, NULL != plot->series[s].label ? plot->series[s].label
                                                                          : "",
                  1, black);
    }
    loco_status st = loco_png_write(path, c.rgb, width, height, err);
    free(c.rgb);
    return st;
}
