// cmd_common.h: what the commands that read a checkpoint and write pictures share (commands.c,
// cmd_codes.c): a session opened from a checkpoint, and the grid of tiles of their PNGs.
#pragma once
#include <stdint.h>

#include "../io/checkpoint.h"
#include "../io/dataset.h"
#include "commands.h"
#include "session.h"

// commands.c: a session with the checkpoint's parameters (config: the stored one, then the
// overrides). With ds, split of its dataset is read into it; without, no image is read (the
// image shape comes from the config). Fills *meta with the checkpoint's attributes.
void open_from_checkpoint(Session *s, Dataset *ds, DatasetSplit split, const CliArgs *args, Dist *dist,
                          CheckpointMeta *meta);

// ---- image_grid.c: the tiles of a PNG --------------------------------------------------------
// blocks of `count` images each, stacked (reconstruct: the originals, then their reconstructions),
// each block `rows` rows of `cols` tiles, each tile drawn `scale` times larger.
typedef struct {
    int count, blocks, rows, cols, scale;
} TileGrid;

// From --count, --rows and --cols, before anything is read: --count, or rows x cols images when
// both are given, or default_count. A grid too small for --count, or --rows not a multiple of
// blocks, is a usage error (exit EXIT_USAGE) naming the numbers. what: the images, for messages.
TileGrid tile_grid_plan(const CliArgs *args, int blocks, int default_count, const char *what);
// Once the images are known: at most `available` of them; the columns and rows not given follow
// from the count, and the scale (--scale, else the smallest that makes tiles >= 64 pixels).
void tile_grid_fit(TileGrid *g, const CliArgs *args, int64_t available, int height, int width);
// The PNG writer reads [-0.5, 0.5]: n pixel values of the given data range brought there.
void images_to_centered(float *images, size_t n, DataRange range);
// block b's images are images[b] (count x channels x height x width floats each).
int tile_grid_write(const TileGrid *g, const char *path, const float *const *images, int channels, int height,
                    int width, char *err, size_t err_len);
