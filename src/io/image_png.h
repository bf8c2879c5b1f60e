// png.h: write a grid of images as one PNG (libpng), e.g. originals next to reconstructions.
#pragma once
#include <stddef.h>

// A grid of rows x columns cells, each a tile of channels x height x width pixels drawn scale
// times larger (every pixel a scale x scale block: integer nearest-neighbour), with a 2-pixel gray
// border around and between tiles.
typedef struct {
    int channels, height, width;   // of one image; channels 1 (written as gray) or 3 (RGB)
    int rows, columns;
    int scale;                     // >= 1
} PngGrid;

// tiles: rows x columns pointers, row-major, each to one image (CHW floats in [-0.5, 0.5], clamped)
// or NULL for an empty cell. Written to path.tmp, then renamed to path. Returns 0, or -1 with err.
int png_write_tiles(const char *path, const float *const *tiles, const PngGrid *grid, char *err, size_t err_len);

// images: count x channels x height x width floats (NCHW), laid out row-major in `columns` columns
// at scale 1 (png_write_tiles with count cells filled in order).
int png_write_grid(const char *path, const float *images, int count, int channels, int height, int width,
                   int columns, char *err, size_t err_len);
