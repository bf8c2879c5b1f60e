// test_io_png.c: png_write_tiles (src/io/image_png.c) read back with libpng: the grid's size for a
// scale, every source pixel drawn as a scale x scale block at its tile's place, an empty (NULL)
// cell left border gray, and a grid too large for PNG refused with the numbers.
#include <png.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../src/core/common.h"
#include "../../src/io/image_png.h"
#include "test_util.h"

enum { H = 3, W = 2, SCALE = 3, BORDER = 2, GRAY = 128 };

static uint8_t byte_of(float v) {
    v += 0.5f;
    v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    return (uint8_t)(v * 255.0f + 0.5f);
}

int main(void) {
    TestCounts c = {0, 0};
    char dir[] = "/tmp/test_io_png.XXXXXX", path[256], err[512] = "";
    CHECK(mkdtemp(dir), "mkdtemp");
    snprintf(path, sizeof path, "%s/tiles.png", dir);
    // three gray images in a 2 x 2 grid, cell 2 (row 1, column 0) empty
    float images[3][H * W];
    for (int i = 0; i < 3; i++)
        for (int p = 0; p < H * W; p++) images[i][p] = (float)(i * H * W + p) / (3.0f * H * W) - 0.5f;
    const float *tiles[4] = {images[0], images[1], NULL, images[2]};
    PngGrid g = {.channels = 1, .height = H, .width = W, .rows = 2, .columns = 2, .scale = SCALE};
    int rc = png_write_tiles(path, tiles, &g, err, sizeof err);
    EXPECT(&c, rc == 0, "png_write_tiles: %s", err);

    int tile_w = W * SCALE, tile_h = H * SCALE;
    unsigned want_w = 2 * (tile_w + BORDER) + BORDER, want_h = 2 * (tile_h + BORDER) + BORDER;
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (png_image_begin_read_from_file(&im, path)) {
        im.format = PNG_FORMAT_GRAY;
        uint8_t *px = xmalloc(PNG_IMAGE_SIZE(im));
        EXPECT(&c, im.width == want_w && im.height == want_h, "grid %ux%u, expected %ux%u", im.width, im.height,
               want_w, want_h);
        if (png_image_finish_read(&im, NULL, px, 0, NULL) && im.width == want_w && im.height == want_h) {
            int wrong = 0;
            for (int cell = 0; cell < 4; cell++) {
                int x0 = BORDER + (cell % 2) * (tile_w + BORDER), y0 = BORDER + (cell / 2) * (tile_h + BORDER);
                for (int y = 0; y < tile_h; y++)
                    for (int x = 0; x < tile_w; x++) {
                        uint8_t want = tiles[cell] ? byte_of(tiles[cell][(y / SCALE) * W + x / SCALE]) : GRAY;
                        wrong += px[(size_t)(y0 + y) * want_w + (size_t)(x0 + x)] != want;
                    }
            }
            EXPECT(&c, wrong == 0, "%d tile pixels are not their source pixel's block (or gray for the empty cell)",
                   wrong);
            EXPECT(&c, px[0] == GRAY && px[(size_t)(BORDER + tile_h) * want_w + BORDER] == GRAY,
                   "border pixels %d, %d, expected %d", px[0], px[(size_t)(BORDER + tile_h) * want_w + BORDER], GRAY);
        } else {
            EXPECT(&c, 0, "libpng could not read '%s' back: %s", path, im.message);
        }
        free(px);
    } else {
        EXPECT(&c, 0, "libpng could not read '%s': %s", path, im.message);
    }
    unlink(path);

    PngGrid huge = g;
    huge.scale = 1 << 20;
    rc = png_write_tiles(path, tiles, &huge, err, sizeof err);
    EXPECT(&c, rc == -1 && strstr(err, "more than 1000000 on a side") && strstr(err, "--scale"),
           "a grid too large: rc %d, err %s", rc, err);
    EXPECT(&c, access(path, F_OK) != 0, "a refused grid left '%s'", path);
    PngGrid zero = g;
    zero.scale = 0;
    rc = png_write_tiles(path, tiles, &zero, err, sizeof err);
    EXPECT(&c, rc == -1 && strstr(err, "scale 0"), "scale 0: rc %d, err %s", rc, err);
    rmdir(dir);
    return test_finish("test_io_png", &c);
}
