// dataset.h: image datasets held in host memory as uint8 (4x smaller than float; converted per
// batch). Formats: CIFAR-10 binary (data_batch_1..5.bin, test_batch.bin), IDX (MNIST,
// Fashion-MNIST; plain or .gz), and a synthetic smooth-image generator for tests and benchmarks.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct {
    int64_t count;
    int channels, height, width;
    uint8_t *pixels;     // count x C x H x W, CHW per image, values 0..255
    uint8_t *labels;     // count labels, or NULL
    double mean;         // of the scaled values (x / 255 - 0.5) over the whole set
    double variance;     // of the scaled values; the loss divides the MSE by the training set's
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

// out[i] = pixels of image indices[i] scaled to [-0.5, 0.5], NCHW float.
void dataset_fill_batch(const Dataset *ds, const int64_t *indices, int n, float *out);
void dataset_free(Dataset *ds);
