// png.c: see png.h.
#include "image_png.h"

#include <errno.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"

enum {
    GRID_BORDER = 2,
    GRID_BORDER_VALUE = 128,    // mid gray: visible next to both black and white images
    GRID_MAX_SIDE = 1000000,    // libpng's default limit on width and height
};

// libpng reports errors through this callback and then must not return: we keep its message
// and longjmp back to the setjmp in write_rows.
typedef struct {
    char message[256];
} PngErrorSink;

static void on_png_error(png_structp png, png_const_charp message) {
    PngErrorSink *sink = png_get_error_ptr(png);
    copy_string(sink->message, sizeof sink->message, message);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;  // warnings (e.g. about ancillary chunks) do not concern a freshly written grid
}

// Only the libpng calls live in this function, so that no local changes between setjmp and a
// longjmp (which would leave it indeterminate). Returns 0, or -1 with sink->message set.
static int write_rows(FILE *f, png_bytep *rows, int width, int height, int color_type, PngErrorSink *sink) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, sink, on_png_error, on_png_warning);
    if (!png) {
        copy_string(sink->message, sizeof sink->message, "png_create_write_struct failed (out of memory)");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        copy_string(sink->message, sizeof sink->message, "png_create_info_struct failed (out of memory)");
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

// Fills pixels (stride bytes a row) with the grid: border gray, then every tile, each source pixel
// drawn as a scale x scale block.
static void draw_tiles(uint8_t *pixels, size_t stride, const float *const *tiles, const PngGrid *g) {
    int channels = g->channels, tile_w = g->width * g->scale, tile_h = g->height * g->scale;
    size_t plane = (size_t)g->height * (size_t)g->width;
    for (int i = 0; i < g->rows * g->columns; i++) {
        const float *image = tiles[i];
        if (!image) continue;   // an empty cell stays border gray
        size_t x0 = GRID_BORDER + (size_t)(i % g->columns) * (tile_w + GRID_BORDER);
        size_t y0 = GRID_BORDER + (size_t)(i / g->columns) * (tile_h + GRID_BORDER);
        for (int y = 0; y < tile_h; y++) {
            uint8_t *row = pixels + (y0 + (size_t)y) * stride;
            for (int x = 0; x < tile_w; x++) {
                size_t src = (size_t)(y / g->scale) * g->width + (size_t)(x / g->scale);
                for (int c = 0; c < channels; c++) {
                    float v = image[(size_t)c * plane + src] + 0.5f;
                    if (!(v >= 0.0f)) v = 0.0f;  // also maps NaN to black
                    if (v > 1.0f) v = 1.0f;
                    row[(x0 + (size_t)x) * channels + c] = (uint8_t)(v * 255.0f + 0.5f);
                }
            }
        }
    }
}

int png_write_grid(const char *path, const float *images, int count, int channels, int height, int width,
                   int columns, char *err, size_t err_len) {
    if (count <= 0 || height <= 0 || width <= 0 || columns <= 0)
        return set_error(err, err_len, "cannot write PNG '%s': %d images of %dx%d in %d columns; expected positive "
                         "numbers", path, count, height, width, columns);
    PngGrid g = {.channels = channels, .height = height, .width = width, .scale = 1,
                 .columns = count < columns ? count : columns, .rows = (count + columns - 1) / columns};
    const float **cells = calloc((size_t)g.rows * g.columns, sizeof *cells);   // a short last row: empty cells
    if (!cells) return set_error(err, err_len, "cannot write PNG '%s': out of memory", path);
    size_t image = (size_t)channels * height * width;
    for (int i = 0; i < count; i++) cells[i] = images + (size_t)i * image;
    int rc = png_write_tiles(path, cells, &g, err, err_len);
    free(cells);
    return rc;
}

int png_write_tiles(const char *path, const float *const *tiles, const PngGrid *g, char *err, size_t err_len) {
    if (g->rows <= 0 || g->columns <= 0 || g->height <= 0 || g->width <= 0 || g->scale <= 0)
        return set_error(err, err_len, "cannot write PNG '%s': %dx%d tiles of %dx%d pixels at scale %d; expected "
                         "positive numbers", path, g->rows, g->columns, g->height, g->width, g->scale);
    if (g->channels != 1 && g->channels != 3)
        return set_error(err, err_len, "cannot write PNG '%s': images have %d channels, expected 1 (gray) or 3 "
                         "(RGB)", path, g->channels);
    int channels = g->channels;
    int64_t grid_w = (int64_t)g->columns * ((int64_t)g->width * g->scale + GRID_BORDER) + GRID_BORDER;
    int64_t grid_h = (int64_t)g->rows * ((int64_t)g->height * g->scale + GRID_BORDER) + GRID_BORDER;
    if (grid_w > GRID_MAX_SIDE || grid_h > GRID_MAX_SIDE)
        return set_error(err, err_len, "cannot write PNG '%s': the grid would be %lldx%lld pixels, more than %d "
                         "on a side; write fewer images, fewer columns or a smaller --scale", path,
                         (long long)grid_w, (long long)grid_h, GRID_MAX_SIDE);

    // The whole grid in memory, interleaved as PNG wants (RGBRGB... per row).
    size_t stride = (size_t)grid_w * (size_t)channels;
    uint8_t *pixels = malloc(stride * (size_t)grid_h);
    png_bytep *rows = malloc((size_t)grid_h * sizeof(png_bytep));
    if (!pixels || !rows) {
        free(pixels);
        free(rows);
        return set_error(err, err_len, "cannot write PNG '%s': out of memory for a %lldx%lld grid", path,
                         (long long)grid_w, (long long)grid_h);
    }
    memset(pixels, GRID_BORDER_VALUE, stride * (size_t)grid_h);
    for (int64_t y = 0; y < grid_h; y++) rows[y] = pixels + (size_t)y * stride;
    draw_tiles(pixels, stride, tiles, g);

    // path.tmp then rename: a reader never sees a half-written file under the final name.
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        free(pixels);
        free(rows);
        return set_error(err, err_len, "cannot write PNG: the path '%s' is too long", path);
    }
    int result = -1;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        set_error(err, err_len, "cannot create '%s': %s; check that its directory exists and is writable", tmp,
                  strerror(errno));
    } else {
        PngErrorSink sink = {{0}};
        int color_type = channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB;
        int wrote = write_rows(f, rows, (int)grid_w, (int)grid_h, color_type, &sink);
        int closed = fclose(f);
        if (wrote != 0)
            set_error(err, err_len, "cannot write PNG '%s': libpng: %s", tmp, sink.message);
        else if (closed != 0)
            set_error(err, err_len, "cannot write PNG '%s': %s (disk full?)", tmp, strerror(errno));
        else if (rename(tmp, path) != 0)
            set_error(err, err_len, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        else
            result = 0;
        if (result != 0) remove(tmp);
    }
    free(pixels);
    free(rows);
    return result;
}
