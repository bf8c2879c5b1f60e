// dataset_internal.h: what the dataset files share (dataset.c: the choice of loader and the
// batches; dataset_idx.c, dataset_cifar.c, dataset_synthetic.c: one format each). Not part of the
// interface: the rest of the program includes dataset.h only.
#pragma once
#include "dataset.h"

enum {
    DATASET_PATH_MAX = 4096,
    SYNTHETIC_MAX_CHANNELS = 16,
};

// Mean and variance of x / 255 - 0.5 over all of ds's pixels (ds->mean, ds->variance).
void dataset_compute_stats(Dataset *ds);
int dataset_file_exists(const char *path);   // a regular file
// 0 when dir is a directory; else -1 with err naming data.path, the dataset and the fix.
int dataset_check_directory(const char *dir, const char *dataset, const char *fix, char *err, size_t err_len);

// dir's <prefix>-images-idx3-ubyte and <prefix>-labels-idx1-ubyte (each .gz or plain).
int dataset_load_idx_dir(const char *dir, const char *prefix, const char *fix, Dataset *out, char *err,
                         size_t err_len);
// CIFAR-10's five training batches or its test batch from data.path dir.
int dataset_load_cifar10_dir(const char *dir, DatasetSplit split, Dataset *out, char *err, size_t err_len);
// Images first_index .. first_index + count - 1 of the synthetic stream of seed.
void dataset_synthetic_range(uint64_t seed, uint64_t first_index, int64_t count, int channels, int size,
                             Dataset *out);
