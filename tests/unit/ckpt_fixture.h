// ckpt_fixture.h: shared by the checkpoint tests (test_io_checkpoint*.c): a small sample model as
// named tensors, metadata, and helpers to inspect and break files with raw HDF5.
#pragma once
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/common.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "test_util.h"

// Each test file uses some of these.
#pragma GCC diagnostic ignored "-Wunused-function"

// ---- the sample model ----

typedef struct {
    const char *key;
    int trainable;
    int ndim;
    int64_t shape[CKPT_MAX_DIMS];
} SampleEntry;

enum { SAMPLE_ENTRIES = 6 };

// values[offset[k] ...] of entry k (registration order); m, v: the moments of trainable entries.
typedef struct {
    SampleEntry e[SAMPLE_ENTRIES];
    size_t offset[SAMPLE_ENTRIES], moment_offset[SAMPLE_ENTRIES], size[SAMPLE_ENTRIES];
    size_t total, trainable;
    float *values, *m, *v;
    CkptTensor t[3 * SAMPLE_ENTRIES];
    int nt;       // all tensors: model/<key> for every entry, then optim/<key>/exp_avg(_sq)
    int nmodel;   // the first nmodel of them are model/<key>
} Model;

// Entries like the real model's: trainable and not interleaved, 1-D to 4-D, dotted keys.
// `hidden` changes the first and third shapes (as model.num_hiddens would).
static void model_init(Model *md, int hidden) {
    const SampleEntry entries[SAMPLE_ENTRIES] = {
        {"_encoder._conv_1.weight", 1, 4, {hidden, 3, 4, 4}},
        {"_vq_vae._ema_cluster_size", 0, 1, {16}},
        {"_encoder._conv_1.bias", 1, 1, {hidden}},
        {"_vq_vae._ema_w", 0, 2, {16, 8}},
        {"_vq_vae._embedding.weight", 1, 2, {16, 8}},
        {"_decoder._residual_stack._layers.0._block.1.weight", 1, 3, {2, 3, 5}},
    };
    memset(md, 0, sizeof *md);
    for (int k = 0; k < SAMPLE_ENTRIES; k++) {
        md->e[k] = entries[k];
        size_t n = 1;
        for (int d = 0; d < entries[k].ndim; d++) n *= (size_t)entries[k].shape[d];
        md->size[k] = n;
        md->offset[k] = md->total;
        md->total += n;
        md->moment_offset[k] = md->trainable;
        if (entries[k].trainable) md->trainable += n;
    }
    md->values = xcalloc(md->total, sizeof(float));
    md->m = xcalloc(md->trainable, sizeof(float));
    md->v = xcalloc(md->trainable, sizeof(float));
    for (int k = 0; k < SAMPLE_ENTRIES; k++) {
        CkptTensor *t = &md->t[md->nt++];
        snprintf(t->name, sizeof t->name, "model/%s", md->e[k].key);
        t->ndim = md->e[k].ndim;
        memcpy(t->shape, md->e[k].shape, sizeof t->shape);
        t->data = md->values + md->offset[k];
    }
    md->nmodel = md->nt;
    for (int k = 0; k < SAMPLE_ENTRIES; k++) {
        if (!md->e[k].trainable) continue;
        for (int which = 0; which < 2; which++) {
            CkptTensor *t = &md->t[md->nt++];
            *t = md->t[k];
            snprintf(t->name, sizeof t->name, "optim/%s/%s", md->e[k].key, which ? "exp_avg_sq" : "exp_avg");
            t->data = (which ? md->v : md->m) + md->moment_offset[k];
            t->non_negative = which;
        }
    }
}

static void model_free(Model *md) {
    free(md->values);
    free(md->m);
    free(md->v);
}

static int model_find(const Model *md, const char *key) {
    for (int k = 0; k < SAMPLE_ENTRIES; k++)
        if (strcmp(md->e[k].key, key) == 0) return k;
    return -1;
}

static void model_fill_random(Model *md, uint64_t seed) {
    Rng rng = rng_stream(seed, RNG_PURPOSE_TEST, 0, 0);
    for (size_t i = 0; i < md->total; i++) md->values[i] = rng_normal(&rng);
    for (size_t i = 0; i < md->trainable; i++) {
        md->m[i] = 0.01f * rng_normal(&rng);
        md->v[i] = 1e-4f * rng_uniform(&rng);
    }
}

static void model_fill(Model *md, float x) {
    for (size_t i = 0; i < md->total; i++) md->values[i] = x;
    for (size_t i = 0; i < md->trainable; i++) md->m[i] = md->v[i] = x;
}

static int model_all_equal(const Model *md, float x) {
    for (size_t i = 0; i < md->total; i++)
        if (md->values[i] != x) return 0;
    for (size_t i = 0; i < md->trainable; i++)
        if (md->m[i] != x || md->v[i] != x) return 0;
    return 1;
}

// Save all of md's tensors (model and moments).
static int model_save(const char *path, const Model *md, const CheckpointMeta *meta, char *err, size_t err_len);
// Load all of md's tensors (with /optim).
static int model_load(const char *path, Model *md, CheckpointMeta *meta, char **config, char *err, size_t err_len) {
    return checkpoint_load(path, md->t, md->nt, CKPT_LOAD_OPTIM, meta, config, err, err_len);
}

static CheckpointMeta test_meta(int64_t step) {
    CheckpointMeta m;
    checkpoint_meta_init(&m);
    m.step = step;
    m.epoch = 3;
    m.epoch_offset = 640;
    m.samples_seen = 123456789012LL;          // > 2^32
    m.seed = 0xFEDCBA9876543210ULL;           // > INT64_MAX: must survive as uint64
    m.world_size = 4;
    copy_string(m.arch, sizeof m.arch, "resnet");
    copy_string(m.quantizer, sizeof m.quantizer, "ema");
    m.data_variance = 0.0631;
    m.image_channels = 3;
    m.image_height = 32;
    m.image_width = 28;
    m.adam_step = step;
    m.lr = 3e-4f;
    m.beta1 = 0.9f;
    m.beta2 = 0.999f;
    m.eps = 1e-8f;
    m.weight_decay = 0.01f;
    return m;
}

static const char *k_config = "model:\n  arch: resnet\n  num_hiddens: 8\n# caf\xc3\xa9 (UTF-8)\ntrain:\n  lr: 0.0003\n";

static int model_save(const char *path, const Model *md, const CheckpointMeta *meta, char *err, size_t err_len) {
    return checkpoint_save(path, md->t, md->nt, meta, k_config, err, err_len);
}

// Runs fn with stdout redirected to the file out (so a test can read what it printed).
static int capture_stdout(const char *out, int (*fn)(const char *, char *, size_t), const char *arg, char *err,
                          size_t err_len) {
    fflush(stdout);
    int saved = dup(1), fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    close(fd);
    int rc = fn(arg, err, err_len);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    return rc;
}

// ---- small file helpers ----

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static unsigned char *read_bytes(const char *path, size_t *len) {
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = xmalloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, f);
    fclose(f);
    return buf;
}

static int write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, len, f);
    return fclose(f) == 0 && w == len ? 0 : -1;
}

static int copy_file(const char *src, const char *dst) {
    size_t len;
    unsigned char *buf = read_bytes(src, &len);
    if (!buf) return -1;
    int rc = write_bytes(dst, buf, len);
    free(buf);
    return rc;
}

static int same_bytes(const char *a, const char *b) {
    size_t la, lb;
    unsigned char *x = read_bytes(a, &la), *y = read_bytes(b, &lb);
    int same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

static void remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        chmod(path, 0755);
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char sub[4096];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            remove_tree(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

// Names in dir, sorted, joined by spaces.
static void list_names(const char *dir, char *out, size_t len) {
    char names[32][64];
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL && n < 32) {
        if (e->d_name[0] == '.') continue;
        copy_string(names[n++], 64, e->d_name);
    }
    if (d) closedir(d);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[j], names[i]) < 0) {
                char t[64];
                memcpy(t, names[i], 64);
                memcpy(names[i], names[j], 64);
                memcpy(names[j], t, 64);
            }
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i) strncat(out, " ", len - strlen(out) - 1);
        strncat(out, names[i], len - strlen(out) - 1);
    }
}

// ---- editing a saved file with raw HDF5 (to build broken checkpoints) ----

static hid_t open_rw(const char *path) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
}

static int set_attr_string(const char *path, const char *name, const char *value) {
    hid_t f = open_rw(path);
    if (f < 0) return -1;
    hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    H5Adelete(f, name);
    hid_t a = H5Acreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a >= 0 ? H5Awrite(a, type, &value) : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
    H5Fclose(f);
    return rc < 0 ? -1 : 0;
}

static int set_attr_i64(const char *path, const char *name, int64_t value) {
    hid_t f = open_rw(path);
    if (f < 0) return -1;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    herr_t rc = a >= 0 ? H5Awrite(a, H5T_NATIVE_INT64, &value) : -1;
    if (a >= 0) H5Aclose(a);
    H5Fclose(f);
    return rc < 0 ? -1 : 0;
}

static int delete_link(const char *path, const char *name) {
    hid_t f = open_rw(path);
    if (f < 0) return -1;
    herr_t rc = H5Ldelete(f, name, H5P_DEFAULT);
    H5Fclose(f);
    return rc < 0 ? -1 : 0;
}

// Overwrites element `index` of an existing dataset (its checksum is recomputed, so only the
// value check can catch it).
static int poke_value(const char *path, const char *name, size_t count, size_t index, float x) {
    hid_t f = open_rw(path);
    if (f < 0) return -1;
    float *buf = xmalloc(count * sizeof(float));
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    herr_t rc = d >= 0 ? H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : -1;
    if (rc >= 0) {
        buf[index] = x;
        rc = H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    }
    if (d >= 0) H5Dclose(d);
    H5Fclose(f);
    free(buf);
    return rc < 0 ? -1 : 0;
}

// Replaces dataset `name` by one of the same shape with file type `type`, chunked with fletcher32
// or contiguous without.
static int replace_dataset(const char *path, const char *name, hid_t type, int fletcher) {
    hid_t f = open_rw(path);
    if (f < 0) return -1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t space = d >= 0 ? H5Dget_space(d) : -1;
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : 0;
    int ndim = space >= 0 ? H5Sget_simple_extent_ndims(space) : 0;
    double *buf = xcalloc((size_t)(n > 0 ? n : 1), sizeof(double));
    herr_t rc = d >= 0 ? H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : -1;
    if (d >= 0) H5Dclose(d);
    if (rc >= 0) rc = H5Ldelete(f, name, H5P_DEFAULT);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (fletcher) {
        hsize_t dims[8];
        H5Sget_simple_extent_dims(space, dims, NULL);
        H5Pset_chunk(dcpl, ndim, dims);
        H5Pset_fletcher32(dcpl);
    }
    hid_t nd = rc >= 0 ? H5Dcreate2(f, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
    rc = nd >= 0 ? H5Dwrite(nd, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : -1;
    if (nd >= 0) H5Dclose(nd);
    H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    H5Fclose(f);
    free(buf);
    return rc < 0 ? -1 : 0;
}

static int add_extra_dataset(const char *path, const char *name) {
    hid_t f = open_rw(path);
    if (f < 0) return -1;
    hsize_t dims[1] = {4};
    float data[4] = {1, 2, 3, 4};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(f, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = d >= 0 ? H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) : -1;
    if (d >= 0) H5Dclose(d);
    H5Sclose(space);
    H5Fclose(f);
    return rc < 0 ? -1 : 0;
}

// File offset of the (single) chunk of dataset `name`, or -1. HDF5 counts addresses from the
// end of the user block.
static long long chunk_address(const char *path, const char *name, long long *size_out) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    hid_t fcpl = H5Fget_create_plist(f);
    hsize_t userblock = 0;
    H5Pget_userblock(fcpl, &userblock);
    H5Pclose(fcpl);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    hsize_t origin[H5S_MAX_RANK] = {0};
    unsigned mask = 0;
    haddr_t addr = 0;
    hsize_t size = 0;
    herr_t rc = d >= 0 ? H5Dget_chunk_info_by_coord(d, origin, &mask, &addr, &size) : -1;
    if (d >= 0) H5Dclose(d);
    H5Fclose(f);
    *size_out = (long long)size;
    return rc < 0 || addr == HADDR_UNDEF ? -1 : (long long)(addr + userblock);
}

// The checksum header as docs/CHECKPOINT.md describes it, written from scratch: the first 512
// bytes are "vqvae_dist checkpoint\ncrc32 <8 hex>\nbytes <length>\n" and NULs; the CRC-32
// (zlib's) covers the bytes after them.
static int reseal(const char *path) {
    size_t len;
    unsigned char *buf = read_bytes(path, &len);
    if (!buf || len < 512) {
        free(buf);
        return -1;
    }
    uLong crc = crc32_z(crc32_z(0, Z_NULL, 0), buf + 512, len - 512);
    memset(buf, 0, 512);
    snprintf((char *)buf, 512, "vqvae_dist checkpoint\ncrc32 %08lx\nbytes %zu\n", crc, len);
    int rc = write_bytes(path, buf, len);
    free(buf);
    return rc;
}

// A file as from before checksums: no header (the user block all zero).
static int unseal(const char *path) {
    size_t len;
    unsigned char *buf = read_bytes(path, &len);
    int rc = -1;
    if (buf && len >= 512) {
        memset(buf, 0, 512);
        rc = write_bytes(path, buf, len);
    }
    free(buf);
    return rc;
}

static int flip_byte_at(const char *path, long long offset) {
    size_t len;
    unsigned char *buf = read_bytes(path, &len);
    if (!buf || offset < 0 || (size_t)offset >= len) {
        free(buf);
        return -1;
    }
    buf[offset] ^= 0x10;
    int rc = write_bytes(path, buf, len);
    free(buf);
    return rc;
}

// Leaked HDF5 handles. Open files, groups, datasets and attributes are counted by HDF5. Property
// lists, dataspaces and datatypes are not, but each kind is numbered consecutively: any id between
// two probe handles (taken before and after an operation) that is still valid was leaked.
typedef struct {
    hid_t plist, space, type;
} IdMarks;

static IdMarks id_marks(void) {
    IdMarks m = {H5Pcreate(H5P_DATASET_XFER), H5Screate(H5S_SCALAR), H5Tcopy(H5T_NATIVE_FLOAT)};
    H5Pclose(m.plist);
    H5Sclose(m.space);
    H5Tclose(m.type);
    return m;
}

static long long leaked_ids(IdMarks before) {
    IdMarks after = id_marks();
    long long n = (long long)H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
    for (hid_t id = before.plist + 1; id < after.plist; id++) n += H5Iis_valid(id) > 0;
    for (hid_t id = before.space + 1; id < after.space; id++) n += H5Iis_valid(id) > 0;
    for (hid_t id = before.type + 1; id < after.type; id++) n += H5Iis_valid(id) > 0;
    return n;
}

