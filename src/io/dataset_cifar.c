// dataset_cifar.c: the CIFAR-10 binary reader (data_batch_1..5.bin, test_batch.bin: records of a
// label byte and the R, G, B planes of 32x32). Errors as dataset.h says.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/common.h"
#include "dataset_internal.h"

enum {
    CIFAR_SIDE = 32,
    CIFAR_PIXELS = 3 * CIFAR_SIDE * CIFAR_SIDE,
    CIFAR_RECORD = 1 + CIFAR_PIXELS,  // label byte, then R, G, B planes of 32x32
    CIFAR_CLASSES = 10,
};

static const char CIFAR10_FIX[] =
    "download the binary version of CIFAR-10 (cifar-10-binary.tar.gz from "
    "https://www.cs.toronto.edu/~kriz/cifar.html; Debian has no package for it), extract it and set data.path to "
    "its cifar-10-batches-bin folder";

// The records of each file from its size, so that a bad file is reported before gigabytes are
// read. Returns their total, or -1 with err naming the file.
static int64_t cifar_record_counts(const char *const *paths, int path_count, int64_t *records, char *err,
                                   size_t err_len) {
    int64_t total = 0;
    for (int i = 0; i < path_count; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0) {
            set_error(err, err_len, "cannot open CIFAR-10 file '%s': %s; %s", paths[i], strerror(errno), CIFAR10_FIX);
            return -1;
        }
        if (!S_ISREG(st.st_mode)) {
            set_error(err, err_len, "CIFAR-10 file '%s' is not a regular file; %s", paths[i], CIFAR10_FIX);
            return -1;
        }
        int64_t size = (int64_t)st.st_size;
        if (size == 0) {
            set_error(err, err_len, "'%s' is empty (0 bytes), expected whole %d-byte CIFAR-10 records; the file is "
                      "truncated (download the 'binary version' again)", paths[i], CIFAR_RECORD);
            return -1;
        }
        if (size % CIFAR_RECORD != 0) {
            set_error(err, err_len, "'%s' is %lld bytes, not a multiple of the %d-byte CIFAR-10 record; "
                      "the file is truncated or not CIFAR-10 binary (download the 'binary version')", paths[i],
                      (long long)size, CIFAR_RECORD);
            return -1;
        }
        records[i] = size / CIFAR_RECORD;
        total += records[i];
    }
    return total;
}

// Read the records of one file into out's images first_image onward, checking each label.
static int cifar_read_file(const char *path, int64_t records, int64_t first_image, Dataset *out, char *err,
                           size_t err_len) {
    int64_t image = first_image;
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_error(err, err_len, "cannot open CIFAR-10 file '%s': %s", path, strerror(errno));
        return -1;
    }
    for (int64_t k = 0; k < records; k++, image++) {
        uint8_t record[CIFAR_RECORD];
        if (fread(record, 1, sizeof record, f) != sizeof record) {
            if (ferror(f))
                set_error(err, err_len, "cannot read CIFAR-10 file '%s': %s", path, strerror(errno));
            else
                set_error(err, err_len, "CIFAR-10 file '%s' became shorter while being read: expected %lld "
                          "records, found %lld", path, (long long)records, (long long)k);
            fclose(f);
            return -1;
        }
        if (record[0] >= CIFAR_CLASSES) {
            set_error(err, err_len, "'%s': record %lld has label %d, expected 0..%d: this is not CIFAR-10 binary "
                      "(CIFAR-100 records are 3074 bytes with two label bytes)", path, (long long)k,
                      record[0], CIFAR_CLASSES - 1);
            fclose(f);
            return -1;
        }
        out->labels[image] = record[0];
        memcpy(out->pixels + (size_t)image * CIFAR_PIXELS, record + 1, CIFAR_PIXELS);
    }
    fclose(f);
    return 0;
}

int dataset_load_cifar10(const char *const *paths, int path_count, Dataset *out, char *err, size_t err_len) {
    memset(out, 0, sizeof *out);
    if (path_count <= 0) return set_error(err, err_len, "no CIFAR-10 files given; %s", CIFAR10_FIX);
    int64_t *records = xmalloc((size_t)path_count * sizeof(int64_t));
    int64_t total = cifar_record_counts(paths, path_count, records, err, err_len);
    if (total < 0) goto fail;
    out->count = total;
    out->channels = 3;
    out->height = CIFAR_SIDE;
    out->width = CIFAR_SIDE;
    out->pixels = malloc((size_t)total * CIFAR_PIXELS);
    out->labels = malloc((size_t)total);
    if (!out->pixels || !out->labels) {
        set_error(err, err_len, "cannot allocate %lld bytes for %lld CIFAR-10 images",
                  (long long)total * CIFAR_PIXELS, (long long)total);
        goto fail;
    }
    int64_t image = 0;
    for (int i = 0; i < path_count; i++) {
        if (cifar_read_file(paths[i], records[i], image, out, err, err_len) != 0) goto fail;
        image += records[i];
    }
    free(records);
    dataset_compute_stats(out);
    if (path_count == 1)
        copy_string(out->source, sizeof out->source, paths[0]);
    else
        snprintf(out->source, sizeof out->source, "%s .. %s (%d files)", paths[0], paths[path_count - 1],
                 path_count);
    return 0;

fail:
    free(records);
    dataset_free(out);
    return -1;
}

// CIFAR-10's five training batches or its test batch, after checking that data.path is a directory.
int dataset_load_cifar10_dir(const char *dir, DatasetSplit split, Dataset *out, char *err, size_t err_len) {
    if (dataset_check_directory(dir, "cifar10", CIFAR10_FIX, err, err_len) != 0) return -1;
    char paths[6][DATASET_PATH_MAX];
    for (int i = 0; i < 5; i++) snprintf(paths[i], DATASET_PATH_MAX, "%s/data_batch_%d.bin", dir, i + 1);
    snprintf(paths[5], DATASET_PATH_MAX, "%s/test_batch.bin", dir);
    int first = split == SPLIT_TRAIN ? 0 : 5, count = split == SPLIT_TRAIN ? 5 : 1;
    for (int i = first; i < first + count; i++) {
        if (dataset_file_exists(paths[i])) continue;
        // The tarball extracts into cifar-10-batches-bin/: point at it when data.path is its parent.
        char nested[DATASET_PATH_MAX];
        snprintf(nested, sizeof nested, "%s/cifar-10-batches-bin/data_batch_1.bin", dir);
        if (dataset_file_exists(nested))
            return set_error(err, err_len, "data.path '%s' has no %s but holds cifar-10-batches-bin/: set "
                             "data.path=%s/cifar-10-batches-bin", dir, paths[i] + strlen(dir) + 1, dir);
        return set_error(err, err_len, "CIFAR-10 file '%s' does not exist; %s", paths[i], CIFAR10_FIX);
    }
    const char *split_paths[5];
    for (int i = 0; i < count; i++) split_paths[i] = paths[first + i];
    return dataset_load_cifar10(split_paths, count, out, err, err_len);
}
