// dataset.c: see dataset.h. The choice of loader for data.dataset (one file per format:
// dataset_idx.c, dataset_cifar.c, dataset_synthetic.c), the statistics and the batches. Loaders
// return -1 with a message that names the file, what was expected, what was found and what to do;
// they never exit. Images stay uint8 in memory and are scaled to float per batch.
#include "dataset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/common.h"
#include "dataset_internal.h"

// Synthetic test images come from an index range far from the training images', so the two
// sets never share an image whatever data.synthetic_count is.
static const uint64_t SYNTHETIC_TEST_FIRST_INDEX = (uint64_t)1 << 40;

static const char FASHION_MNIST_FIX[] =
    "install it with `apt-get install dataset-fashion-mnist` (it puts the files in "
    "/usr/share/datasets/fashion-mnist) or set data.path to a folder holding train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz";
static const char MNIST_FIX[] =
    "Debian has no MNIST package (its dataset-fashion-mnist is data.dataset=fashion_mnist): download the four "
    "MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz) into /usr/share/datasets/mnist (where data.path=auto looks) or into a folder you "
    "name with data.path";

// ---- statistics ----------------------------------------------------------------------------

// A byte's value in double, for the statistics. centered keeps the exact expression it always had
// (the resnet's stored variances stay bit-identical).
static double range_value(DataRange range, int v) {
    if (range == RANGE_UNIT) return (double)v / 255.0;
    if (range == RANGE_SYMMETRIC) return (double)v / 255.0 * 2.0 - 1.0;
    return (double)v / 255.0 - 0.5;
}

// Mean and variance of the scaled pixels over all pixels, from a histogram of the 256 byte values:
// exact counts, then 256 terms in double, so the result does not depend on summation order.
void dataset_compute_stats(Dataset *ds) {
    int64_t hist[256] = {0};
    size_t n = (size_t)ds->count * (size_t)ds->channels * (size_t)ds->height * (size_t)ds->width;
    for (size_t i = 0; i < n; i++) hist[ds->pixels[i]]++;
    double total = (double)n, mean = 0.0, var = 0.0;
    for (int v = 0; v < 256; v++) mean += (double)hist[v] * range_value(ds->range, v);
    mean /= total;
    for (int v = 0; v < 256; v++) {
        double d = range_value(ds->range, v) - mean;
        var += (double)hist[v] * d * d;
    }
    ds->mean = mean;
    ds->variance = var / total;  // population variance, like np.var in the reference notebook
}

DataRange dataset_range_of(const Config *cfg) {
    const char *r = cfg->data_range;
    if (strcmp(r, "auto") == 0)
        return strcmp(cfg->arch, "small") == 0 ? RANGE_UNIT : strcmp(cfg->arch, "groupnorm") == 0 ? RANGE_SYMMETRIC
                                                                                                  : RANGE_CENTERED;
    return strcmp(r, "unit") == 0 ? RANGE_UNIT : strcmp(r, "symmetric") == 0 ? RANGE_SYMMETRIC : RANGE_CENTERED;
}

const char *dataset_range_name(DataRange range) {
    return range == RANGE_UNIT ? "unit" : range == RANGE_SYMMETRIC ? "symmetric" : "centered";
}

void dataset_set_range(Dataset *ds, DataRange range) {
    ds->range = range;
    dataset_compute_stats(ds);
}

// ---- dataset_load --------------------------------------------------------------------------

int dataset_check_directory(const char *dir, const char *dataset, const char *fix, char *err, size_t err_len) {
    struct stat st;
    if (stat(dir, &st) != 0)
        return set_error(err, err_len, "data.path '%s' for data.dataset %s: %s; %s", dir, dataset, strerror(errno),
                         fix);
    if (!S_ISDIR(st.st_mode))
        return set_error(err, err_len, "data.path '%s' for data.dataset %s is not a directory; %s", dir, dataset,
                         fix);
    return 0;
}

int dataset_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int load_split_centered(const Config *cfg, DatasetSplit split, Dataset *out, char *err, size_t err_len) {
    memset(out, 0, sizeof *out);
    const char *name = cfg->dataset, *dir = config_data_path(cfg);
    if (strcmp(name, "synthetic") == 0) {
        int count = cfg->synthetic_count, channels = cfg->synthetic_channels, size = cfg->synthetic_size;
        if (count <= 0 || channels <= 0 || channels > SYNTHETIC_MAX_CHANNELS || size <= 0)
            return set_error(err, err_len, "synthetic dataset: data.synthetic_count=%d, data.channels=%d, "
                             "data.image_size=%d; expected a count > 0, 1..%d channels and a size > 0", count,
                             channels, size, SYNTHETIC_MAX_CHANNELS);
        if (split == SPLIT_TRAIN) dataset_synthetic_range(cfg->seed, 0, count, channels, size, out);
        else dataset_synthetic_range(cfg->seed, SYNTHETIC_TEST_FIRST_INDEX, count / 8 > 64 ? count / 8 : 64,
                                     channels, size, out);
        return 0;
    }
    if (strcmp(name, "fashion_mnist") == 0 || strcmp(name, "mnist") == 0) {
        const char *fix = strcmp(name, "mnist") == 0 ? MNIST_FIX : FASHION_MNIST_FIX;
        if (dataset_check_directory(dir, name, fix, err, err_len) != 0) return -1;
        return dataset_load_idx_dir(dir, split == SPLIT_TRAIN ? "train" : "t10k", fix, out, err, err_len);
    }
    if (strcmp(name, "cifar10") == 0) return dataset_load_cifar10_dir(dir, split, out, err, err_len);
    return set_error(err, err_len, "data.dataset '%s' is not one of fashion_mnist, mnist, cifar10, synthetic", name);
}

int dataset_load_split(const Config *cfg, DatasetSplit split, Dataset *out, char *err, size_t err_len) {
    if (load_split_centered(cfg, split, out, err, err_len) != 0) return -1;
    DataRange range = dataset_range_of(cfg);
    if (range != RANGE_CENTERED) dataset_set_range(out, range);
    return 0;
}

int dataset_load(const Config *cfg, Dataset *train, Dataset *test, char *err, size_t err_len) {
    memset(test, 0, sizeof *test);
    if (dataset_load_split(cfg, SPLIT_TRAIN, train, err, err_len) != 0) return -1;
    if (dataset_load_split(cfg, SPLIT_TEST, test, err, err_len) != 0) {
        dataset_free(train);
        return -1;
    }
    if (train->channels != test->channels || train->height != test->height || train->width != test->width) {
        set_error(err, err_len, "the training images (%s: %dx%dx%d) and the test images (%s: %dx%dx%d) differ in "
                  "shape; expected both sets of one dataset", train->source, train->channels, train->height,
                  train->width, test->source, test->channels, test->height, test->width);
        dataset_free(train);
        dataset_free(test);
        return -1;
    }
    return 0;
}

void dataset_shape(const Config *cfg, int *channels, int *height, int *width) {
    if (strcmp(cfg->dataset, "synthetic") == 0) {
        *channels = cfg->synthetic_channels;
        *height = *width = cfg->synthetic_size;
    } else if (strcmp(cfg->dataset, "cifar10") == 0) {
        *channels = 3;
        *height = *width = 32;
    } else {   // the IDX sets
        *channels = 1;
        *height = *width = 28;
    }
}

void dataset_fill_batch(const Dataset *ds, const int64_t *indices, int n, float *out) {
    // Same float ops as torchvision's ToTensor (x / 255) then Normalize(0.5, 1) (x - 0.5), or
    // Normalize(0.5, 0.5) ((x - 0.5) / 0.5), or ToTensor alone.
    float scale[256];
    for (int v = 0; v < 256; v++) {
        float x = (float)v / 255.0f;
        scale[v] = ds->range == RANGE_UNIT ? x : ds->range == RANGE_SYMMETRIC ? (x - 0.5f) / 0.5f : x - 0.5f;
    }
    size_t image = (size_t)ds->channels * ds->height * ds->width;
    for (int i = 0; i < n; i++) {
        CHECK(indices[i] >= 0 && indices[i] < ds->count, "image index %lld outside the dataset of %lld images",
              (long long)indices[i], (long long)ds->count);
        const uint8_t *src = ds->pixels + (size_t)indices[i] * image;
        float *dst = out + (size_t)i * image;
        for (size_t j = 0; j < image; j++) dst[j] = scale[src[j]];
    }
}

void dataset_free(Dataset *ds) {
    free(ds->pixels);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}
