// dataset_fixture.h: shared by the dataset tests (test_io_dataset*.c, test_io_png.c): writers of
// IDX, CIFAR-10 and gzip files, a config for a dataset, naive statistics, folder removal.
#pragma once
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "core/common.h"
#include "io/dataset.h"
#include "test_util.h"

// Each test file uses some of these.
#pragma GCC diagnostic ignored "-Wunused-function"

static int write_bytes(const char *path, const void *data, size_t n, int gzip) {
    if (gzip) {
        gzFile f = gzopen(path, "wb");
        if (!f) return -1;
        int ok = n == 0 || gzwrite(f, data, (unsigned)n) == (int)n;
        return gzclose(f) == Z_OK && ok ? 0 : -1;
    }
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t wrote = fwrite(data, 1, n, f);
    return fclose(f) == 0 && wrote == n ? 0 : -1;
}

static uint8_t *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = xmalloc(*n + 1);
    if (fread(data, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return data;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

// An IDX file: magic, ndims big-endian dimensions, then data_len bytes of pattern(seed).
static uint8_t pattern_byte(size_t i, uint32_t seed) { return (uint8_t)(((uint32_t)i * 2654435761u + seed) >> 13); }

static int write_idx(const char *path, int gzip, uint32_t magic, int ndims, const uint32_t *dims, size_t data_len,
                     uint32_t seed) {
    size_t header = 4 + 4 * (size_t)ndims, n = header + data_len;
    uint8_t *buf = xmalloc(n);
    put_be32(buf, magic);
    for (int d = 0; d < ndims; d++) put_be32(buf + 4 + 4 * d, dims[d]);
    for (size_t i = 0; i < data_len; i++) buf[header + i] = pattern_byte(i, seed);
    int rc = write_bytes(path, buf, n, gzip);
    free(buf);
    return rc;
}

// A CIFAR-10 binary file of `records` records, labels (r * 3 + seed) % 10, pixels pattern(seed).
static int write_cifar(const char *path, int records, uint32_t seed, size_t extra_bytes) {
    size_t n = (size_t)records * 3073 + extra_bytes;
    uint8_t *buf = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++) buf[i] = pattern_byte(i, seed);
    for (int r = 0; r < records; r++) buf[(size_t)r * 3073] = (uint8_t)((r * 3 + seed) % 10);
    int rc = write_bytes(path, buf, n, 0);
    free(buf);
    return rc;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void config_for(Config *cfg, const char *dataset, const char *path) {
    memset(cfg, 0, sizeof *cfg);
    copy_string(cfg->dataset, sizeof cfg->dataset, dataset);
    copy_string(cfg->data_path, sizeof cfg->data_path, path);
    cfg->seed = 1234;
    cfg->synthetic_count = 512;
    cfg->synthetic_channels = 3;
    cfg->synthetic_size = 32;
}

// Naive double-precision mean and variance of x / 255 - 0.5.
static void naive_stats(const Dataset *ds, double *mean, double *var) {
    size_t n = (size_t)ds->count * ds->channels * ds->height * ds->width;
    double s = 0.0, s2 = 0.0;
    for (size_t i = 0; i < n; i++) s += ds->pixels[i] / 255.0 - 0.5;
    *mean = s / (double)n;
    for (size_t i = 0; i < n; i++) {
        double d = ds->pixels[i] / 255.0 - 0.5 - *mean;
        s2 += d * d;
    }
    *var = s2 / (double)n;
}

// A fresh folder for a test's files (mkdtemp of template, which ends in XXXXXX); exits on failure.
static void make_test_dir(char *template_path) {
    if (!mkdtemp(template_path)) {
        perror("mkdtemp");
        exit(1);
    }
}

// Remove the folder and everything in it.
static void remove_test_dir(const char *dir) { nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }
