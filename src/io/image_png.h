// png.h: write a grid of images as one PNG (libpng), e.g. originals next to reconstructions.
#pragma once
#include <stddef.h>

// images: count x channels x height x width floats (NCHW) in [-0.5, 0.5], clamped; channels 1
// (written as gray) or 3 (RGB). Laid out row-major in `columns` columns with a 2-pixel gray border
// around and between images. Written to path.tmp, then renamed to path. Returns 0, or -1 with err.
int png_write_grid(const char *path, const float *images, int count, int channels, int height, int width,
                   int columns, char *err, size_t err_len);
