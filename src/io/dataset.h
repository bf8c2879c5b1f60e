// dataset.h: image datasets held in host memory as uint8 (4x smaller than float; converted per
// batch). Formats: CIFAR-10 binary (data_batch_1..5.bin, test_batch.bin), IDX (MNIST,
// Fashion-MNIST; plain or .gz), and a synthetic smooth-image generator for tests and benchmarks.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "config.h"

// data.range: what a pixel byte v becomes. centered: v / 255 - 0.5 (the resnet notebook's);
// unit: v / 255 (ToTensor; the small nets with a Sigmoid output); symmetric: v / 255 * 2 - 1
// (Normalize(0.5, 0.5); the groupnorm arch).
typedef enum { RANGE_CENTERED = 0, RANGE_UNIT = 1, RANGE_SYMMETRIC = 2 } DataRange;

typedef struct {
    int64_t count;
    int channels, height, width;
    uint8_t *pixels;     // count x C x H x W, CHW per image, values 0..255
    uint8_t *labels;     // count labels, or NULL
    DataRange range;     // how bytes become floats (dataset_load_split sets it from data.range)
    double mean;         // of the scaled values (in range) over the whole set
    double variance;     // of the scaled values; the resnet's loss divides the MSE by the training set's
    char source[CONFIG_STRING_MAX];  // what it was read from, for messages and logs
} Dataset;

typedef enum { SPLIT_TRAIN = 0, SPLIT_TEST = 1 } DatasetSplit;

// Load one set named by cfg (data.dataset, data.path, data.* for synthetic); errors as dataset_load.
int dataset_load_split(const Config *cfg, DatasetSplit split, Dataset *out, char *err, size_t err_len);
// The image shape data.dataset gives, without reading any file (fixed by the file formats;
// data.channels and data.image_size for synthetic data).
void dataset_shape(const Config *cfg, int *channels, int *height, int *width);

// Load the training and test sets named by cfg (data.dataset, data.path, data.* for synthetic).
// Returns 0, or -1 with err naming the file and what was expected/found (e.g. wrong magic,
// truncated, wrong record size) and how to fix it (e.g. `apt-get install dataset-fashion-mnist`).
int dataset_load(const Config *cfg, Dataset *train, Dataset *test, char *err, size_t err_len);

// Individual loaders (used by dataset_load and by tests).
int dataset_load_idx(const char *images_path, const char *labels_path, Dataset *out, char *err, size_t err_len);
int dataset_load_cifar10(const char *const *paths, int path_count, Dataset *out, char *err, size_t err_len);
// Deterministic smooth random images (sums of a few random Gaussian blobs and gradients), a pure
// function of (seed, index): any rank can make any image.
void dataset_make_synthetic(uint64_t seed, int64_t count, int channels, int size, Dataset *out);

// data.range resolved: auto is centered for resnet, unit for small, symmetric for groupnorm.
DataRange dataset_range_of(const Config *cfg);
const char *dataset_range_name(DataRange range);
// Switch ds to range and recompute its mean and variance in it.
void dataset_set_range(Dataset *ds, DataRange range);

// out[i] = pixels of image indices[i] scaled per ds->range, NCHW float.
void dataset_fill_batch(const Dataset *ds, const int64_t *indices, int n, float *out);
void dataset_free(Dataset *ds);
