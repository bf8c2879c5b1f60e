// test_io_checkpoint.c: HDF5 checkpoints. Round trip (bit-exact values, moments, meta, config),
// the on-disk layout, a folder with keep/latest, the resume candidate order, a table of broken
// files that must be refused with a specific message, and failed saves that must leave an
// existing checkpoint untouched.
// With VQ_CKPT_SAMPLE_OUT=PATH it only writes a deterministic sample checkpoint to PATH (for
// tests/torch/test_checkpoint_h5py.py, which recomputes the values below).
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
#include <sys/wait.h>
#include <unistd.h>

#include "core/common.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "test_util.h"

typedef struct {
    ParamRegistry reg;
    float *values, *m, *v;
} Model;

// A few entries like the real model's: trainable and not interleaved, 1-D to 4-D, dotted keys.
// `hidden` changes the first two shapes (as model.num_hiddens would).
static void model_init(Model *md, int hidden) {
    ParamRegistry *r = &md->reg;
    param_registry_init(r);
    param_registry_add(r, "_encoder._conv_1.weight", 1, INIT_KAIMING_UNIFORM, 48, 4, (int[]){hidden, 3, 4, 4});
    param_registry_add(r, "_vq_vae._ema_cluster_size", 0, INIT_ONE, 0, 1, (int[]){16});
    param_registry_add(r, "_encoder._conv_1.bias", 1, INIT_BIAS_UNIFORM, 48, 1, (int[]){hidden});
    param_registry_add(r, "_vq_vae._ema_w", 0, INIT_CODEBOOK, 0, 2, (int[]){16, 8});
    param_registry_add(r, "_vq_vae._embedding.weight", 1, INIT_CODEBOOK, 0, 2, (int[]){16, 8});
    param_registry_add(r, "_decoder._residual_stack._layers.0._block.1.weight", 1, INIT_KAIMING_UNIFORM, 15, 3,
                       (int[]){2, 3, 5});
    param_registry_finalize(r);
    md->values = xcalloc(r->total_count, sizeof(float));
    md->m = xcalloc(r->trainable_count, sizeof(float));
    md->v = xcalloc(r->trainable_count, sizeof(float));
}

static void model_free(Model *md) {
    free(md->values);
    free(md->m);
    free(md->v);
}

static void model_fill_random(Model *md, uint64_t seed) {
    Rng rng = rng_stream(seed, RNG_PURPOSE_TEST, 0, 0);
    for (size_t i = 0; i < md->reg.total_count; i++) md->values[i] = rng_normal(&rng);
    for (size_t i = 0; i < md->reg.trainable_count; i++) {
        md->m[i] = 0.01f * rng_normal(&rng);
        md->v[i] = 1e-4f * rng_uniform(&rng);
    }
}

static void model_fill(Model *md, float x) {
    for (size_t i = 0; i < md->reg.total_count; i++) md->values[i] = x;
    for (size_t i = 0; i < md->reg.trainable_count; i++) md->m[i] = md->v[i] = x;
}

static int model_all_equal(const Model *md, float x) {
    for (size_t i = 0; i < md->reg.total_count; i++)
        if (md->values[i] != x) return 0;
    for (size_t i = 0; i < md->reg.trainable_count; i++)
        if (md->m[i] != x || md->v[i] != x) return 0;
    return 1;
}

static CheckpointState model_state(Model *md) { return (CheckpointState){&md->reg, md->values, md->m, md->v}; }

static CheckpointMeta test_meta(int64_t step) {
    CheckpointMeta m;
    memset(&m, 0, sizeof m);
    m.step = step;
    m.epoch = 3;
    m.epoch_offset = 640;
    m.samples_seen = 123456789012LL;          // > 2^32
    m.seed = 0xFEDCBA9876543210ULL;           // > INT64_MAX: must survive as uint64
    m.world_size = 4;
    copy_string(m.arch, sizeof m.arch, "resnet");
    copy_string(m.quantizer, sizeof m.quantizer, "ema");
    m.adam_step = step;
    m.lr = 3e-4f;
    m.beta1 = 0.9f;
    m.beta2 = 0.999f;
    m.eps = 1e-8f;
    m.weight_decay = 0.01f;
    return m;
}

static const char *k_config = "model:\n  arch: resnet\n  num_hiddens: 8\n# caf\xc3\xa9 (UTF-8)\ntrain:\n  lr: 0.0003\n";

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

// File offset of the (single) chunk of dataset `name`, or -1.
static long long chunk_address(const char *path, const char *name, long long *size_out) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    hsize_t origin[H5S_MAX_RANK] = {0};
    unsigned mask = 0;
    haddr_t addr = 0;
    hsize_t size = 0;
    herr_t rc = d >= 0 ? H5Dget_chunk_info_by_coord(d, origin, &mask, &addr, &size) : -1;
    if (d >= 0) H5Dclose(d);
    H5Fclose(f);
    *size_out = (long long)size;
    return rc < 0 || addr == HADDR_UNDEF ? -1 : (long long)addr;
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

// ---- sections ----

static void test_round_trip(TestCounts *c, const char *dir) {
    Model a, b;
    model_init(&a, 8);
    model_init(&b, 8);
    model_fill_random(&a, 1);
    CheckpointState sa = model_state(&a), sb = model_state(&b);
    CheckpointMeta meta = test_meta(1234), got;
    char path[512], tmp[520], err[1024] = "";
    snprintf(path, sizeof path, "%s/round.h5", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);

    int rc = checkpoint_save(path, &sa, &meta, k_config, err, sizeof err);
    EXPECT(c, rc == 0, "save failed: %s", err);
    EXPECT(c, file_exists(path) && !file_exists(tmp), "after save: file %d, tmp %d", file_exists(path),
           file_exists(tmp));

    char *config = NULL;
    memset(&got, 0xAB, sizeof got);
    rc = checkpoint_load(path, &sb, &got, &config, err, sizeof err);
    EXPECT(c, rc == 0, "load failed: %s", err);
    EXPECT(c, memcmp(a.values, b.values, a.reg.total_count * sizeof(float)) == 0, "values differ after round trip");
    EXPECT(c, memcmp(a.m, b.m, a.reg.trainable_count * sizeof(float)) == 0, "exp_avg differs after round trip");
    EXPECT(c, memcmp(a.v, b.v, a.reg.trainable_count * sizeof(float)) == 0, "exp_avg_sq differs after round trip");
    EXPECT(c, got.step == meta.step, "step %lld", (long long)got.step);
    EXPECT(c, got.epoch == meta.epoch, "epoch %lld", (long long)got.epoch);
    EXPECT(c, got.epoch_offset == meta.epoch_offset, "epoch_offset %lld", (long long)got.epoch_offset);
    EXPECT(c, got.samples_seen == meta.samples_seen, "samples_seen %lld", (long long)got.samples_seen);
    EXPECT(c, got.seed == meta.seed, "seed %llx", (unsigned long long)got.seed);
    EXPECT(c, got.world_size == meta.world_size, "world_size %d", got.world_size);
    EXPECT(c, strcmp(got.arch, meta.arch) == 0, "arch '%s'", got.arch);
    EXPECT(c, strcmp(got.quantizer, meta.quantizer) == 0, "quantizer '%s'", got.quantizer);
    EXPECT(c, got.adam_step == meta.adam_step, "adam_step %lld", (long long)got.adam_step);
    EXPECT(c, memcmp(&got.lr, &meta.lr, sizeof(float)) == 0, "lr %g", (double)got.lr);
    EXPECT(c, memcmp(&got.beta1, &meta.beta1, sizeof(float)) == 0, "beta1 %g", (double)got.beta1);
    EXPECT(c, memcmp(&got.beta2, &meta.beta2, sizeof(float)) == 0, "beta2 %g", (double)got.beta2);
    EXPECT(c, memcmp(&got.eps, &meta.eps, sizeof(float)) == 0, "eps %g", (double)got.eps);
    EXPECT(c, memcmp(&got.weight_decay, &meta.weight_decay, sizeof(float)) == 0, "weight_decay %g",
           (double)got.weight_decay);
    EXPECT(c, config && strcmp(config, k_config) == 0, "config text differs: '%s'", config ? config : "(null)");
    free(config);

    // read_meta: the same attributes without a registry.
    CheckpointMeta m2;
    memset(&m2, 0, sizeof m2);
    config = NULL;
    rc = checkpoint_read_meta(path, &m2, &config, err, sizeof err);
    EXPECT(c, rc == 0 && m2.step == meta.step && m2.seed == meta.seed && m2.samples_seen == meta.samples_seen &&
                  strcmp(m2.quantizer, "ema") == 0 && m2.lr == meta.lr,
           "read_meta rc %d step %lld: %s", rc, (long long)m2.step, err);
    EXPECT(c, config && strcmp(config, k_config) == 0, "read_meta config differs");
    free(config);

    // Moments are optional when the state has none; values still load.
    model_fill(&b, 0.0f);
    CheckpointState no_optim = {&b.reg, b.values, NULL, NULL};
    rc = checkpoint_load(path, &no_optim, NULL, NULL, err, sizeof err);
    EXPECT(c, rc == 0 && memcmp(a.values, b.values, a.reg.total_count * sizeof(float)) == 0,
           "load without moments: rc %d: %s", rc, err);

    // A checkpoint saved without moments cannot be resumed with them.
    char path2[512];
    snprintf(path2, sizeof path2, "%s/no_optim.h5", dir);
    CheckpointState a_no_optim = {&a.reg, a.values, NULL, NULL};
    rc = checkpoint_save(path2, &a_no_optim, &meta, k_config, err, sizeof err);
    EXPECT(c, rc == 0, "save without moments: %s", err);
    rc = checkpoint_load(path2, &sb, NULL, NULL, err, sizeof err);
    EXPECT(c, rc != 0 && strstr(err, "'/optim'") && strstr(err, "missing"), "load of moments-less file: rc %d: %s",
           rc, err);
    rc = checkpoint_load(path2, &no_optim, NULL, NULL, err, sizeof err);
    EXPECT(c, rc == 0, "moments-less file without moments: %s", err);

    // The layout, seen through raw HDF5: checksummed superblock, types, chunking, fletcher32.
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    EXPECT(c, f >= 0, "raw H5Fopen failed");
    if (f >= 0) {
        H5F_info2_t info;
        EXPECT(c, H5Fget_info2(f, &info) >= 0 && info.super.version >= 2, "superblock version %u (want >= 2)",
               info.super.version);
        hid_t attr = H5Aopen(f, "format", H5P_DEFAULT), at = H5Aget_type(attr);
        EXPECT(c, H5Tget_class(at) == H5T_STRING && H5Tis_variable_str(at) > 0 && H5Tget_cset(at) == H5T_CSET_UTF8,
               "format attribute is not a variable-length UTF-8 string");
        H5Tclose(at);
        H5Aclose(attr);
        attr = H5Aopen(f, "seed", H5P_DEFAULT);
        at = H5Aget_type(attr);
        EXPECT(c, H5Tequal(at, H5T_STD_U64LE) > 0, "seed is not uint64");
        H5Tclose(at);
        H5Aclose(attr);
        attr = H5Aopen(f, "step", H5P_DEFAULT);
        at = H5Aget_type(attr);
        EXPECT(c, H5Tequal(at, H5T_STD_I64LE) > 0, "step is not int64");
        H5Tclose(at);
        H5Aclose(attr);
        char *created = NULL;
        attr = H5Aopen(f, "created", H5P_DEFAULT);
        at = H5Aget_type(attr);
        H5Aread(attr, at, &created);
        EXPECT(c, created && strlen(created) == 20 && created[4] == '-' && created[10] == 'T' && created[19] == 'Z',
               "created '%s' is not ISO 8601 UTC", created ? created : "(null)");
        if (created) H5free_memory(created);
        H5Tclose(at);
        H5Aclose(attr);

        hid_t d = H5Dopen2(f, "/model/_encoder._conv_1.weight", H5P_DEFAULT);
        hid_t dt = H5Dget_type(d), ds = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
        hsize_t dims[4] = {0}, chunk[4] = {0};
        int nd = H5Sget_simple_extent_dims(ds, dims, NULL);
        EXPECT(c, H5Tequal(dt, H5T_IEEE_F32LE) > 0, "dataset type is not float32 LE");
        EXPECT(c, nd == 4 && dims[0] == 8 && dims[1] == 3 && dims[2] == 4 && dims[3] == 4, "shape rank %d", nd);
        EXPECT(c, H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 4, chunk) == 4 && chunk[0] == 8 &&
                      chunk[3] == 4, "not one chunk per dataset");
        int has_fletcher = 0;
        for (int i = 0; i < H5Pget_nfilters(dcpl); i++) {
            unsigned flags, cfg;
            size_t ne = 0;
            if (H5Pget_filter2(dcpl, (unsigned)i, &flags, &ne, NULL, 0, NULL, &cfg) == H5Z_FILTER_FLETCHER32)
                has_fletcher = 1;
        }
        EXPECT(c, has_fletcher, "no fletcher32 filter");
        H5Pclose(dcpl);
        H5Sclose(ds);
        H5Tclose(dt);
        H5Dclose(d);
        htri_t cs_exists = H5Lexists(f, "/model/_vq_vae._ema_cluster_size", H5P_DEFAULT) > 0;
        htri_t cs_moment = H5Lexists(f, "/optim/_vq_vae._ema_cluster_size", H5P_DEFAULT) > 0;
        htri_t w_moment = H5Lexists(f, "/optim/_vq_vae._embedding.weight", H5P_DEFAULT) > 0 &&
                          H5Lexists(f, "/optim/_vq_vae._embedding.weight/exp_avg_sq", H5P_DEFAULT) > 0;
        EXPECT(c, cs_exists && !cs_moment && w_moment, "moments layout: buffer %d, buffer moment %d, weight moment %d",
               (int)cs_exists, (int)cs_moment, (int)w_moment);
        H5Fclose(f);
    }

    // print_info: the tensors, their count and the config appear on stdout.
    char info_path[512];
    snprintf(info_path, sizeof info_path, "%s/info.txt", dir);
    fflush(stdout);
    int saved_stdout = dup(1), fd = open(info_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    close(fd);
    rc = checkpoint_print_info(path, err, sizeof err);
    fflush(stdout);
    dup2(saved_stdout, 1);
    close(saved_stdout);
    size_t info_len;
    char *info = (char *)read_bytes(info_path, &info_len);
    if (info) info[info_len] = '\0';
    char want_count[64];
    snprintf(want_count, sizeof want_count, "parameters: %zu floats in 6 tensors", a.reg.total_count);
    EXPECT(c, rc == 0 && info && strstr(info, "_encoder._conv_1.weight") && strstr(info, "[8, 3, 4, 4]") &&
                  strstr(info, want_count) && strstr(info, "seed             18364758544493064720") &&
                  strstr(info, k_config),
           "print_info rc %d output:\n%s", rc, info ? info : "(none)");
    free(info);

    model_free(&a);
    model_free(&b);
}

static void test_save_in_dir(TestCounts *c, const char *dir) {
    Model a;
    model_init(&a, 8);
    model_fill_random(&a, 2);
    CheckpointState s = model_state(&a);
    char run[512], out[600], err[1024] = "", names[1024], want[600];
    snprintf(run, sizeof run, "%s/runs/deep/run1", dir);   // mkdir -p
    for (int i = 1; i <= 4; i++) {
        CheckpointMeta meta = test_meta(100 * i);
        int rc = checkpoint_save_in_dir(run, &s, &meta, k_config, 2, out, sizeof out, err, sizeof err);
        EXPECT(c, rc == 0, "save_in_dir step %d: %s", 100 * i, err);
        snprintf(want, sizeof want, "%s/ckpt_%08d.h5", run, 100 * i);
        EXPECT(c, strcmp(out, want) == 0, "path_out '%s', want '%s'", out, want);
    }
    list_names(run, names, sizeof names);
    EXPECT(c, strcmp(names, "ckpt_00000300.h5 ckpt_00000400.h5 latest") == 0, "folder holds: %s", names);
    snprintf(want, sizeof want, "%s/latest", run);
    size_t len;
    char *latest = (char *)read_bytes(want, &len);
    EXPECT(c, latest && len == 17 && memcmp(latest, "ckpt_00000400.h5\n", 17) == 0, "latest is '%.*s'", (int)len,
           latest ? latest : "");
    free(latest);

    // keep = 0 keeps everything.
    char all[512];
    snprintf(all, sizeof all, "%s/keep_all", dir);
    for (int i = 1; i <= 3; i++) {
        CheckpointMeta meta = test_meta(i);
        checkpoint_save_in_dir(all, &s, &meta, k_config, 0, NULL, 0, err, sizeof err);
    }
    list_names(all, names, sizeof names);
    EXPECT(c, strcmp(names, "ckpt_00000001.h5 ckpt_00000002.h5 ckpt_00000003.h5 latest") == 0, "keep 0 folder: %s",
           names);

    // A folder that cannot be created (under a plain file).
    char plain[512], under[600];
    snprintf(plain, sizeof plain, "%s/plain_file", dir);
    write_bytes(plain, "x", 1);
    snprintf(under, sizeof under, "%s/sub", plain);
    CheckpointMeta meta = test_meta(1);
    int rc = checkpoint_save_in_dir(under, &s, &meta, k_config, 2, NULL, 0, err, sizeof err);
    EXPECT(c, rc != 0 && strstr(err, "cannot create checkpoint folder"), "save_in_dir under a file: rc %d: %s", rc,
           err);
    model_free(&a);
}

static void test_list(TestCounts *c, const char *dir) {
    Model a;
    model_init(&a, 8);
    model_fill_random(&a, 3);
    CheckpointState s = model_state(&a);
    char run[512], err[1024] = "", p[600], want[3][600];
    snprintf(run, sizeof run, "%s/list", dir);
    int steps[3] = {100, 300, 200};   // the last saved (200) is `latest` although 300 is newer
    for (int i = 0; i < 3; i++) {
        CheckpointMeta meta = test_meta(steps[i]);
        checkpoint_save_in_dir(run, &s, &meta, k_config, 0, NULL, 0, err, sizeof err);
    }
    // Files that are not checkpoints are never candidates.
    const char *noise[3] = {"ckpt_abc.h5", "ckpt_00000500.h5.tmp", "notes.txt"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", run, noise[i]);
        write_bytes(p, "x", 1);
    }
    char *paths[8] = {0};
    int n = checkpoint_list_in_dir(run, paths, 8);
    snprintf(want[0], sizeof want[0], "%s/ckpt_00000200.h5", run);
    snprintf(want[1], sizeof want[1], "%s/ckpt_00000300.h5", run);
    snprintf(want[2], sizeof want[2], "%s/ckpt_00000100.h5", run);
    EXPECT(c, n == 3 && strcmp(paths[0], want[0]) == 0 && strcmp(paths[1], want[1]) == 0 &&
                  strcmp(paths[2], want[2]) == 0,
           "list: %d: %s, %s, %s", n, n > 0 ? paths[0] : "", n > 1 ? paths[1] : "", n > 2 ? paths[2] : "");
    for (int i = 0; i < n; i++) free(paths[i]);

    n = checkpoint_list_in_dir(run, paths, 2);
    EXPECT(c, n == 2 && strcmp(paths[0], want[0]) == 0 && strcmp(paths[1], want[1]) == 0, "list max 2: %d", n);
    for (int i = 0; i < n; i++) free(paths[i]);

    // `latest` naming a file that is gone: by step only.
    snprintf(p, sizeof p, "%s/latest", run);
    write_bytes(p, "ckpt_00000999.h5\n", 17);
    n = checkpoint_list_in_dir(run, paths, 8);
    EXPECT(c, n == 3 && strcmp(paths[0], want[1]) == 0 && strcmp(paths[1], want[0]) == 0 &&
                  strcmp(paths[2], want[2]) == 0,
           "list with a stale latest: %d: %s", n, n > 0 ? paths[0] : "");
    for (int i = 0; i < n; i++) free(paths[i]);

    snprintf(p, sizeof p, "%s/no_such_folder", dir);
    n = checkpoint_list_in_dir(p, paths, 8);
    EXPECT(c, n == 0, "list of a missing folder gave %d", n);
    model_free(&a);
}

// ---- the table of broken checkpoints ----

typedef enum {
    BAD_TRUNC_HALF, BAD_TRUNC_100, BAD_EMPTY, BAD_FLIP_DATA, BAD_FLIP_SUPERBLOCK, BAD_SHAPE, BAD_MISSING,
    BAD_MISSING_MOMENT, BAD_EXTRA, BAD_EXTRA_OPTIM, BAD_FORMAT, BAD_NO_FORMAT, BAD_NEWER, BAD_NAN, BAD_NEG_MOMENT,
    BAD_FLOAT64, BAD_NO_CHECKSUM, BAD_NO_FILE, BAD_NOT_HDF5,
} BadKind;

typedef struct {
    BadKind kind;
    const char *name;
    const char *expect1, *expect2;   // both must appear in the error (expect2 may be NULL)
} BadCase;

static const BadCase k_bad[] = {
    {BAD_TRUNC_HALF, "truncated to half", "truncated or corrupt", "use an older checkpoint"},
    {BAD_TRUNC_100, "truncated to 100 bytes", "truncated or corrupt", NULL},
    {BAD_EMPTY, "empty file", "empty (0 bytes)", NULL},
    {BAD_FLIP_DATA, "flipped byte in a dataset", "checksum mismatch", "'/model/_vq_vae._ema_w'"},
    {BAD_FLIP_SUPERBLOCK, "flipped byte in the superblock", "truncated or corrupt", "checksum"},
    {BAD_SHAPE, "registry with another shape", "'/model/_encoder._conv_1.weight' has shape [8, 3, 4, 4], expected "
                                               "[6, 3, 4, 4]", "another model configuration"},
    {BAD_MISSING, "missing dataset", "'/model/_vq_vae._ema_w' is missing", NULL},
    {BAD_MISSING_MOMENT, "missing moment", "'/optim/_encoder._conv_1.bias/exp_avg_sq' is missing", NULL},
    {BAD_EXTRA, "extra dataset", "'/model/_extra.weight'", "strict"},
    {BAD_EXTRA_OPTIM, "moments for a buffer", "'/optim/_vq_vae._ema_w'", "does not have"},
    {BAD_FORMAT, "wrong format attribute", "not a vqvae_dist checkpoint (attribute 'format' is 'tensorflow', expected 'vqvae_dist')",
     NULL},
    {BAD_NO_FORMAT, "no format attribute", "not a vqvae_dist checkpoint (no 'format'", NULL},
    {BAD_NEWER, "newer version", "format version 2, written by vqvae_dist 9.9.9", "use vqvae_dist 9.9.9 or newer"},
    {BAD_NAN, "NaN in a weight", "'/model/_vq_vae._embedding.weight'", "non-finite value nan at flat index 5"},
    {BAD_NEG_MOMENT, "negative exp_avg_sq", "'/optim/_vq_vae._embedding.weight/exp_avg_sq'", "negative value"},
    {BAD_FLOAT64, "float64 dataset", "'/model/_encoder._conv_1.bias' in", "is not float32"},
    {BAD_NO_CHECKSUM, "dataset without fletcher32", "'/model/_encoder._conv_1.bias' in", "no fletcher32 checksum"},
    {BAD_NO_FILE, "path that does not exist", "No such file or directory", NULL},
    {BAD_NOT_HDF5, "not an HDF5 file", "is not an HDF5 file", NULL},
};

// Builds the broken file `bad` from the good checkpoint `good`; 0 on success.
static int make_bad(BadKind kind, const char *good, const char *bad, const Model *md, TestCounts *c) {
    if (kind == BAD_NO_FILE) return 0;
    if (kind == BAD_NOT_HDF5) {
        const char *text = "step: 1000\nthis is a YAML file, not a checkpoint\n";
        return write_bytes(bad, text, strlen(text));
    }
    if (copy_file(good, bad) != 0) return -1;
    long long size = file_size(bad);
    switch (kind) {
    case BAD_TRUNC_HALF: return truncate(bad, size / 2);
    case BAD_TRUNC_100: return truncate(bad, 100);
    case BAD_EMPTY: return truncate(bad, 0);
    case BAD_FLIP_DATA: {
        // Locate the chunk and make sure it really holds the values we wrote before flipping one.
        const ParamEntry *e = param_registry_find(&md->reg, "_vq_vae._ema_w");
        long long chunk_size = 0, addr = chunk_address(bad, "/model/_vq_vae._ema_w", &chunk_size);
        size_t len;
        unsigned char *bytes = read_bytes(bad, &len);
        int found = addr >= 0 && chunk_size == (long long)(e->count * sizeof(float) + 4) &&
                    (size_t)addr + e->count * sizeof(float) <= len &&
                    memcmp(bytes + addr, md->values + e->offset, e->count * sizeof(float)) == 0;
        free(bytes);
        EXPECT(c, found, "chunk of _ema_w not found where HDF5 says (addr %lld, size %lld)", addr, chunk_size);
        return found ? flip_byte_at(bad, addr + 37) : -1;
    }
    case BAD_FLIP_SUPERBLOCK: return flip_byte_at(bad, 20);   // v3 superblock: 48 bytes with a checksum
    case BAD_SHAPE: return 0;                                  // the load uses another registry
    case BAD_MISSING: return delete_link(bad, "/model/_vq_vae._ema_w");
    case BAD_MISSING_MOMENT: return delete_link(bad, "/optim/_encoder._conv_1.bias/exp_avg_sq");
    case BAD_EXTRA: return add_extra_dataset(bad, "/model/_extra.weight");
    case BAD_EXTRA_OPTIM: {
        hid_t f = open_rw(bad);
        hid_t g = f >= 0 ? H5Gcreate2(f, "/optim/_vq_vae._ema_w", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
        if (g >= 0) H5Gclose(g);
        if (f >= 0) H5Fclose(f);
        return g >= 0 ? 0 : -1;
    }
    case BAD_FORMAT: return set_attr_string(bad, "format", "tensorflow");
    case BAD_NO_FORMAT: {
        hid_t f = open_rw(bad);
        herr_t rc = f >= 0 ? H5Adelete(f, "format") : -1;
        if (f >= 0) H5Fclose(f);
        return rc < 0 ? -1 : 0;
    }
    case BAD_NEWER:
        return set_attr_i64(bad, "version", 2) || set_attr_string(bad, "program_version", "9.9.9") ? -1 : 0;
    case BAD_NAN: return poke_value(bad, "/model/_vq_vae._embedding.weight", 16 * 8, 5, NAN);
    case BAD_NEG_MOMENT: return poke_value(bad, "/optim/_vq_vae._embedding.weight/exp_avg_sq", 16 * 8, 3, -1e-6f);
    case BAD_FLOAT64: return replace_dataset(bad, "/model/_encoder._conv_1.bias", H5T_IEEE_F64LE, 1);
    case BAD_NO_CHECKSUM: return replace_dataset(bad, "/model/_encoder._conv_1.bias", H5T_IEEE_F32LE, 0);
    default: return -1;
    }
}

static void test_bad_files(TestCounts *c, const char *dir) {
    Model good, other, dst;
    model_init(&good, 8);
    model_init(&other, 6);
    model_init(&dst, 8);
    model_fill_random(&good, 4);
    CheckpointState sg = model_state(&good);
    CheckpointMeta meta = test_meta(500);
    char good_path[512], err[2048];
    snprintf(good_path, sizeof good_path, "%s/good.h5", dir);
    int rc = checkpoint_save(good_path, &sg, &meta, k_config, err, sizeof err);
    EXPECT(c, rc == 0, "save of the good file: %s", err);

    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++) {
        const BadCase *bc = &k_bad[i];
        char bad[600];
        snprintf(bad, sizeof bad, "%s/bad_%02zu.h5", dir, i);
        int made = make_bad(bc->kind, good_path, bad, &good, c);
        EXPECT(c, made == 0, "%s: could not build the broken file", bc->name);
        if (made != 0) continue;
        Model *target = bc->kind == BAD_SHAPE ? &other : &dst;
        model_fill(target, 7.0f);
        CheckpointState st = model_state(target);
        CheckpointMeta got;
        char *config = NULL;
        err[0] = '\0';
        IdMarks marks = id_marks();
        rc = checkpoint_load(bad, &st, &got, &config, err, sizeof err);
        long long leaked = leaked_ids(marks);
        printf("  %-32s -> %s\n", bc->name, err);
        int has1 = strstr(err, bc->expect1) != NULL, has2 = !bc->expect2 || strstr(err, bc->expect2) != NULL;
        EXPECT(c, rc == -1 && has1 && has2, "%s: rc %d, error '%s' should contain '%s'%s%s", bc->name, rc, err,
               bc->expect1, bc->expect2 ? " and " : "", bc->expect2 ? bc->expect2 : "");
        EXPECT(c, strstr(err, bad) != NULL, "%s: error does not name the file: %s", bc->name, err);
        EXPECT(c, config == NULL && model_all_equal(target, 7.0f), "%s: a failed load changed the state", bc->name);
        EXPECT(c, leaked == 0, "%s: %lld HDF5 handles left open", bc->name, leaked);
        free(config);
    }
    // read_meta and print_info refuse what they cannot read, too.
    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad_newer.h5", dir);
    make_bad(BAD_NEWER, good_path, bad, &good, c);
    CheckpointMeta m;
    rc = checkpoint_read_meta(bad, &m, NULL, err, sizeof err);
    EXPECT(c, rc == -1 && strstr(err, "format version 2"), "read_meta of a newer file: rc %d: %s", rc, err);
    snprintf(bad, sizeof bad, "%s/bad_flip_info.h5", dir);
    make_bad(BAD_FLIP_DATA, good_path, bad, &good, c);
    fflush(stdout);
    int saved_stdout = dup(1), null_fd = open("/dev/null", O_WRONLY);
    dup2(null_fd, 1);
    close(null_fd);
    rc = checkpoint_print_info(bad, err, sizeof err);
    fflush(stdout);
    dup2(saved_stdout, 1);
    close(saved_stdout);
    EXPECT(c, rc == -1 && strstr(err, "checksum mismatch"), "print_info of a corrupt file: rc %d: %s", rc, err);
    model_free(&good);
    model_free(&other);
    model_free(&dst);
}

// ---- failed saves leave an existing checkpoint alone ----

static void expect_untouched(TestCounts *c, const char *what, int rc, const char *err, const char *path,
                             const char *copy, IdMarks marks) {
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    printf("  %-32s -> %s\n", what, err);
    EXPECT(c, rc == -1 && err[0] != '\0', "%s: save should fail (rc %d)", what, rc);
    long long leaked = leaked_ids(marks);
    EXPECT(c, leaked == 0, "%s: %lld HDF5 handles left open", what, leaked);
    EXPECT(c, same_bytes(path, copy), "%s: the existing checkpoint changed", what);
    EXPECT(c, !file_exists(tmp), "%s: %s was left behind", what, tmp);
}

static void test_failed_saves(TestCounts *c, const char *dir) {
    Model a;
    model_init(&a, 8);
    model_fill_random(&a, 5);
    CheckpointState s = model_state(&a);
    CheckpointMeta meta = test_meta(700);
    char sub[512], path[600], copy[600], err[1024] = "";
    snprintf(sub, sizeof sub, "%s/failsave", dir);
    mkdir(sub, 0755);
    snprintf(path, sizeof path, "%s/ckpt.h5", sub);
    snprintf(copy, sizeof copy, "%s/ckpt_copy.bin", dir);
    int rc = checkpoint_save(path, &s, &meta, k_config, err, sizeof err);
    EXPECT(c, rc == 0, "first save: %s", err);
    copy_file(path, copy);

    // Fails after the tmp file exists: a key HDF5 cannot create ('/' needs a missing group).
    Model broken;
    model_init(&broken, 8);
    param_registry_add(&broken.reg, "no_such_group/weight", 1, INIT_ZERO, 0, 1, (int[]){3});
    param_registry_finalize(&broken.reg);
    free(broken.values);
    free(broken.m);
    free(broken.v);
    broken.values = xcalloc(broken.reg.total_count, sizeof(float));
    broken.m = xcalloc(broken.reg.trainable_count, sizeof(float));
    broken.v = xcalloc(broken.reg.trainable_count, sizeof(float));
    CheckpointState sb = model_state(&broken);
    err[0] = '\0';
    IdMarks marks = id_marks();
    rc = checkpoint_save(path, &sb, &meta, k_config, err, sizeof err);
    expect_untouched(c, "failure inside HDF5", rc, err, path, copy, marks);
    EXPECT(c, strstr(err, "H5Dcreate2(...) failed for '/model/no_such_group/weight'") && strstr(err, "checkpoint.c:"),
           "HDF5 failure message: %s", err);
    model_free(&broken);

    // Non-finite values are refused before anything is written.
    float saved = a.values[3];
    a.values[3] = INFINITY;
    err[0] = '\0';
    marks = id_marks();
    rc = checkpoint_save(path, &s, &meta, k_config, err, sizeof err);
    expect_untouched(c, "infinite value", rc, err, path, copy, marks);
    EXPECT(c, strstr(err, "not writing checkpoint") && strstr(err, "inf"), "non-finite save message: %s", err);
    a.values[3] = saved;

    // A path under a plain file.
    char under[700];
    snprintf(under, sizeof under, "%s/ckpt_copy.bin/ckpt.h5", dir);
    err[0] = '\0';
    marks = id_marks();
    rc = checkpoint_save(under, &s, &meta, k_config, err, sizeof err);
    printf("  %-32s -> %s\n", "path under a file", err);
    EXPECT(c, rc == -1 && strstr(err, "H5Fcreate") && strstr(err, under), "save under a file: rc %d: %s", rc, err);
    EXPECT(c, leaked_ids(marks) == 0, "save under a file: HDF5 handles left open");

    // A folder we may not write to. Root may write anywhere, so as root the save runs in a child
    // process that has dropped to user nobody (65534).
    chmod(sub, 0555);
    marks = id_marks();
    if (geteuid() != 0) {
        err[0] = '\0';
        rc = checkpoint_save(path, &s, &meta, k_config, err, sizeof err);
        expect_untouched(c, "read-only folder", rc, err, path, copy, marks);
    } else {
        chmod(dir, 0755);   // mkdtemp made it 0700: let nobody reach the folder
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
            err[0] = '\0';
            int child_rc = checkpoint_save(path, &s, &meta, k_config, err, sizeof err);
            printf("  %-32s -> %s\n", "read-only folder (as nobody)", err);
            fflush(stdout);
            _exit(child_rc == -1 && err[0] && leaked_ids(marks) == 0 ? 0 : 1);
        }
        int status = -1;
        waitpid(pid, &status, 0);
        char tmp[700];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        EXPECT(c, WIFEXITED(status) && WEXITSTATUS(status) == 0, "read-only folder: child status %d", status);
        EXPECT(c, same_bytes(path, copy) && !file_exists(tmp), "read-only folder: checkpoint changed or tmp left");
        chmod(dir, 0700);
    }
    chmod(sub, 0755);

    // And a save that works replaces it.
    meta.step = 701;
    rc = checkpoint_save(path, &s, &meta, k_config, err, sizeof err);
    EXPECT(c, rc == 0 && !same_bytes(path, copy), "save over an existing checkpoint: rc %d: %s", rc, err);
    model_free(&a);
}

// ---- the sample for tests/torch/test_checkpoint_h5py.py ----

// Exact in float32 and numpy: value = ((7 i + k) mod 251 - 125) / 64 for flat index i of the k-th
// registered entry; exp_avg = value / 2; exp_avg_sq = value^2.
static int write_sample(const char *path) {
    TestCounts c = {0, 0};
    Model md;
    model_init(&md, 8);
    for (int k = 0; k < md.reg.count; k++) {
        const ParamEntry *e = &md.reg.entries[k];
        for (size_t i = 0; i < e->count; i++) {
            float x = (float)((int)((7 * i + (size_t)k) % 251) - 125) / 64.0f;
            md.values[e->offset + i] = x;
            if (e->trainable) {
                md.m[e->offset + i] = x / 2.0f;
                md.v[e->offset + i] = x * x;
            }
        }
    }
    CheckpointState s = model_state(&md);
    CheckpointMeta meta = test_meta(4242);
    meta.epoch = 7;
    meta.epoch_offset = 96;
    meta.samples_seen = 5000000000LL;
    meta.seed = 18446744073709551557ULL;
    meta.world_size = 2;
    char err[1024] = "";
    int rc = checkpoint_save(path, &s, &meta, k_config, err, sizeof err);
    EXPECT(&c, rc == 0, "sample save failed: %s", err);
    if (rc == 0) printf("sample checkpoint written to %s\n", path);
    model_free(&md);
    return test_finish("test_io_checkpoint (sample)", &c);
}

int main(void) {
    const char *sample = getenv("VQ_CKPT_SAMPLE_OUT");
    if (sample && *sample) return write_sample(sample);

    TestCounts c = {0, 0};
    char dir[] = "/tmp/test_io_checkpoint.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip(&c, dir);
    test_save_in_dir(&c, dir);
    test_list(&c, dir);
    printf("broken checkpoints:\n");
    test_bad_files(&c, dir);
    printf("failed saves:\n");
    test_failed_saves(&c, dir);
    remove_tree(dir);
    return test_finish("test_io_checkpoint", &c);
}
