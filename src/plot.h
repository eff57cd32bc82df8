/* src/plot.h — line plots rendered to PNG without external libraries (for `loco report`).
 *
 * A plot is a set of (x, y) series drawn as coloured lines with axes, "nice" tick labels, a
 * title and a legend, in a built-in 5x7 bitmap font (lowercase is drawn in capitals). The x axis
 * may be logarithmic (bytes sent spans orders of magnitude). Non-finite points, and x <= 0 on a
 * log axis, are skipped. The PNG is 8-bit RGB, deflated with zlib, written atomically.
 */
#ifndef LOCO_SRC_PLOT_H
#define LOCO_SRC_PLOT_H

#include "base/base.h"

#include <stdbool.h>

typedef struct loco_plot_series {
    const char *label;
    const double *x; /* (n) */
    const double *y; /* (n) */
    int n;
} loco_plot_series;

typedef struct loco_plot {
    const char *title;
    const char *x_label;
    const char *y_label;
    bool log_x;
    const loco_plot_series *series;
    int n_series;
} loco_plot;

/* Render `plot` into a width x height PNG at path. Fails with LOCO_ERR_INVALID_ARG when no
 * series has a drawable point. */
loco_status loco_plot_png(const loco_plot *plot, const char *path, int width, int height,
                          loco_error *err);

/* Encode an RGB image (3 bytes per pixel, rows top to bottom) as PNG at path. */
loco_status loco_png_write(const char *path, const uint8_t *rgb, int width, int height,
                           loco_error *err);

#endif /* LOCO_SRC_PLOT_H */
