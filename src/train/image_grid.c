// image_grid.c: the tiles of the PNGs of reconstruct and decode (see cmd_common.h).
#include <stdlib.h>

#include "../core/common.h"
#include "../io/image_png.h"
#include "cmd_common.h"

enum { GRID_DEFAULT_COLUMNS = 8, GRID_MIN_TILE_PIXELS = 64 };

static int ceil_div(int64_t a, int64_t b) { return (int)((a + b - 1) / b); }

TileGrid tile_grid_plan(const CliArgs *args, int blocks, int default_count, const char *what) {
    TileGrid g = {.blocks = blocks};
    if (args->rows && args->rows % blocks != 0)
        usage_error("--rows %d: the rows are shared by %d blocks (%s), so they must be a multiple of %d",
                    args->rows, blocks, what, blocks);
    int rows = args->rows / blocks;
    g.count = args->count ? args->count : args->rows && args->cols ? rows * args->cols : default_count;
    if (args->rows && args->cols && (int64_t)rows * args->cols < g.count)
        usage_error("--rows %d x --cols %d holds %d tiles, but %d %s need %lld: give more rows or columns, or a "
                    "smaller --count", args->rows, args->cols, args->rows * args->cols, g.count, what,
                    (long long)g.count * blocks);
    return g;
}

void tile_grid_fit(TileGrid *g, const CliArgs *args, int64_t available, int height, int width) {
    if (g->count > available) g->count = (int)available;
    int rows = args->rows / g->blocks;
    g->cols = args->cols ? args->cols
              : rows     ? ceil_div(g->count, rows)
                         : (g->count < GRID_DEFAULT_COLUMNS ? g->count : GRID_DEFAULT_COLUMNS);
    g->rows = rows ? rows : ceil_div(g->count, g->cols);
    int side = height > width ? height : width;
    g->scale = args->scale ? args->scale : side >= GRID_MIN_TILE_PIXELS ? 1 : ceil_div(GRID_MIN_TILE_PIXELS, side);
}

void images_to_centered(float *images, size_t n, DataRange range) {
    for (size_t i = 0; i < n && range != RANGE_CENTERED; i++)
        images[i] = range == RANGE_UNIT ? images[i] - 0.5f : images[i] * 0.5f;
}

int tile_grid_write(const TileGrid *g, const char *path, const float *const *images, int channels, int height,
                    int width, char *err, size_t err_len) {
    int per_block = g->rows * g->cols;
    const float **cells = xcalloc((size_t)g->blocks * per_block, sizeof *cells);   // NULL: an empty cell
    size_t image = (size_t)channels * height * width;
    for (int b = 0; b < g->blocks; b++)
        for (int i = 0; i < g->count; i++) cells[b * per_block + i] = images[b] + (size_t)i * image;
    PngGrid png = {.channels = channels, .height = height, .width = width, .rows = g->blocks * g->rows,
                   .columns = g->cols, .scale = g->scale};
    int rc = png_write_tiles(path, cells, &png, err, err_len);
    free(cells);
    return rc;
}
