// fuzz_dataset.c: the IDX (MNIST, Fashion-MNIST) and CIFAR-10 readers. The first input byte picks
// the reader (even: IDX, odd: CIFAR-10); for IDX the next two give where the image file ends and
// the label file begins. Whatever the bytes, a reader returns an error or a dataset whose shape
// and pixels agree with its claims.
#include "fuzz.h"
#include "io/dataset.h"

static void write_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

void fuzz_make_seeds(const char *dir) {
    // IDX: 2 images of 3x4 and their 2 labels.
    uint8_t idx[3 + 16 + 24 + 8 + 2];
    size_t images = 16 + 24;
    idx[0] = 0, idx[1] = (uint8_t)(images >> 8), idx[2] = (uint8_t)images;
    uint8_t *p = idx + 3;
    write_be32(p, 0x803), write_be32(p + 4, 2), write_be32(p + 8, 3), write_be32(p + 12, 4);
    for (int i = 0; i < 24; i++) p[16 + i] = (uint8_t)(i * 11);
    p += images;
    write_be32(p, 0x801), write_be32(p + 4, 2);
    p[8] = 3, p[9] = 7;
    fuzz_seed(dir, "idx", idx, sizeof idx);
    // CIFAR-10: 2 records (label byte, 3 x 32 x 32 pixels).
    enum { RECORD = 1 + 3 * 32 * 32 };
    static uint8_t cifar[1 + 2 * RECORD];
    cifar[0] = 1;
    for (size_t i = 1; i < sizeof cifar; i++) cifar[i] = (uint8_t)(i * 7);
    cifar[1] = 4, cifar[1 + RECORD] = 9;
    fuzz_seed(dir, "cifar", cifar, sizeof cifar);
}

static void check_dataset(const Dataset *ds, const char *what) {
    int ok = ds->count > 0 && ds->channels > 0 && ds->height > 0 && ds->width > 0 && ds->pixels &&
             ds->variance >= 0.0 && ds->mean >= -0.5 && ds->mean <= 0.5;
    if (!ok) {
        fprintf(stderr, "%s: a loaded dataset with an impossible shape or statistics: %lld x %d x %d x %d, mean %g, "
                "variance %g\n", what, (long long)ds->count, ds->channels, ds->height, ds->width, ds->mean,
                ds->variance);
        abort();
    }
    unsigned sum = 0;   // every pixel must be readable (ASan checks the bounds)
    size_t n = (size_t)ds->count * ds->channels * ds->height * ds->width;
    for (size_t i = 0; i < n; i++) sum += ds->pixels[i];
    for (int64_t i = 0; ds->labels && i < ds->count; i++) sum += ds->labels[i];
    if (sum == 0xFFFFFFFFu) fprintf(stderr, "(pixel sum %u)\n", sum);   // keeps the reads
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    Dataset ds;
    char err[2048];
    if (data[0] % 2 == 0) {
        if (size < 3) return 0;
        size_t split = (size_t)data[1] << 8 | data[2], rest = size - 3;
        if (split > rest) split = rest;
        const char *images = fuzz_scratch("images-idx3-ubyte");
        char labels[160];
        snprintf(labels, sizeof labels, "%s", fuzz_scratch("labels-idx1-ubyte"));
        fuzz_write(images, data + 3, split);
        fuzz_write(labels, data + 3 + split, rest - split);
        if (dataset_load_idx(images, labels, &ds, err, sizeof err) == 0) {
            check_dataset(&ds, "IDX");
            dataset_free(&ds);
        }
    } else {
        const char *path = fuzz_scratch("data_batch_1.bin");
        fuzz_write(path, data + 1, size - 1);
        const char *paths[1] = {path};
        if (dataset_load_cifar10(paths, 1, &ds, err, sizeof err) == 0) {
            check_dataset(&ds, "CIFAR-10");
            dataset_free(&ds);
        }
    }
    return 0;
}
