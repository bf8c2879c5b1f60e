// codes_file.c: see codes_file.h. Built in memory like a checkpoint (ckpt_image.c) and written with
// ckpt_write_file, so a full disk or a crash never leaves a half-written file under the final name.
#include "codes_file.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/common.h"
#include "ckpt_internal.h"

// Chunks of at most this many bytes (HDF5 needs chunks for gzip and fletcher32; whole images each).
enum { CODES_CHUNK_BYTES = 4 << 20, CODES_GZIP_LEVEL = 4, CODES_MAX_DIMS = 5 };

typedef struct {
    const char *name;
    hid_t file_type, mem_type;
    int ndim;
    hsize_t dims[CODES_MAX_DIMS];
    const void *data;
    int gzip;
} CodesArray;

// The smallest unsigned type that holds 0 .. K-1 (docs/CODES.md).
static hid_t code_type(int64_t k) {
    if (k <= 256) return H5T_STD_U8LE;
    if (k <= 65536) return H5T_STD_U16LE;
    return H5T_STD_U32LE;
}

static int write_array(hid_t f, const CodesArray *a, const CkptCtx *cx) {
    hsize_t chunk[CODES_MAX_DIMS], image_bytes = H5Tget_size(a->file_type);
    for (int i = 0; i < a->ndim; i++) chunk[i] = a->dims[i];
    for (int i = 1; i < a->ndim; i++) image_bytes *= a->dims[i];
    chunk[0] = image_bytes >= CODES_CHUNK_BYTES ? 1 : CODES_CHUNK_BYTES / image_bytes;
    if (chunk[0] > a->dims[0]) chunk[0] = a->dims[0];
    // no times: same codes, same bytes
    CkptDataset d = {a->name, a->name, a->file_type, a->mem_type, a->ndim, a->dims, chunk,
                     a->gzip ? CODES_GZIP_LEVEL : 0, 0, a->data};
    return ckpt_h5_dataset_write(f, &d, cx);
}

static int write_attrs(hid_t f, const CodesFile *cf, const CkptCtx *cx) {
    int64_t version = CODES_FORMAT_VERSION;
    int vq = cf->codes != NULL;
    if (ckpt_attr_write(f, "/", "format", CKPT_ATTR_TEXT, CODES_FORMAT_NAME, cx) != 0 ||
        ckpt_attr_write(f, "/", "version", CKPT_ATTR_I64, &version, cx) != 0 ||
        ckpt_attr_write(f, "/", "checkpoint", CKPT_ATTR_TEXT, cf->checkpoint, cx) != 0 ||
        ckpt_attr_write(f, "/", "step", CKPT_ATTR_I64, &cf->step, cx) != 0 ||
        ckpt_attr_write(f, "/", "config", CKPT_ATTR_TEXT, cf->config, cx) != 0 ||
        ckpt_attr_write(f, "/", "split", CKPT_ATTR_TEXT, cf->split, cx) != 0 ||
        ckpt_attr_write(f, "/", "model_type", CKPT_ATTR_TEXT, cf->model_type, cx) != 0 ||
        (vq && ckpt_attr_write(f, "/", "num_embeddings", CKPT_ATTR_I64, &cf->num_embeddings, cx) != 0) ||
        ckpt_attr_write(f, "/", "image_channels", CKPT_ATTR_INT, &cf->image_channels, cx) != 0 ||
        ckpt_attr_write(f, "/", "image_height", CKPT_ATTR_INT, &cf->image_height, cx) != 0 ||
        ckpt_attr_write(f, "/", "image_width", CKPT_ATTR_INT, &cf->image_width, cx) != 0)
        return -1;
    return 0;
}

// The file's arrays in the order of docs/CODES.md; returns how many.
static int list_arrays(const CodesFile *cf, CodesArray *out) {
    hsize_t n = (hsize_t)cf->count, h = (hsize_t)cf->height, w = (hsize_t)cf->width, g = (hsize_t)cf->groups;
    int count = 0;
    if (cf->codes)
        out[count++] = (CodesArray){"codes", code_type(cf->num_embeddings), H5T_NATIVE_INT32, 4, {n, h, w, g},
                                    cf->codes, 1};
    if (cf->latents)
        out[count++] = (CodesArray){"latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 5, {n, h, w, g, (hsize_t)cf->dim},
                                    cf->latents, 0};
    if (cf->mean)
        out[count++] = (CodesArray){"mean", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, {n, (hsize_t)cf->latent_size},
                                    cf->mean, 0};
    if (cf->logvar)
        out[count++] = (CodesArray){"logvar", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, {n, (hsize_t)cf->latent_size},
                                    cf->logvar, 0};
    if (cf->labels) out[count++] = (CodesArray){"labels", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, {n}, cf->labels, 1};
    return count;
}

static int check_codes(const CodesFile *cf, const CkptCtx *cx) {
    if (cf->count <= 0 || (cf->codes && (cf->height <= 0 || cf->width <= 0 || cf->groups <= 0)))
        return set_error(cx->err, cx->err_len, "internal: codes file '%s' of %lld images of %dx%dx%d codes", cx->path,
                         (long long)cf->count, cf->height, cf->width, cf->groups);
    if (!cf->codes) return 0;
    size_t n = (size_t)cf->count * (size_t)cf->height * (size_t)cf->width * (size_t)cf->groups;
    for (size_t i = 0; i < n; i++)
        if (cf->codes[i] < 0 || cf->codes[i] >= cf->num_embeddings)
            return set_error(cx->err, cx->err_len, "internal: code %d at %zu is outside 0..%lld, not written to '%s'",
                             (int)cf->codes[i], i, (long long)cf->num_embeddings - 1, cx->path);
    return 0;
}

int codes_file_write(const char *path, const CodesFile *cf, char *err, size_t err_len) {
    CkptCtx cx = {path, err, err_len};
    if (check_codes(cf, &cx) != 0) return -1;
    CkptQuiet quiet = ckpt_quiet_begin();
    CkptImage im;
    int rc = -1;
    hid_t f = ckpt_image_create(&im, &cx);
    if (f < 0) goto done;
    CodesArray arrays[5];
    int n = list_arrays(cf, arrays), failed = write_attrs(f, cf, &cx) != 0;
    for (int i = 0; i < n && !failed; i++) failed = write_array(f, &arrays[i], &cx) != 0;
    if (failed) {
        H5Fclose(f);
        if (im.closed) ckpt_image_free(&im);
        goto done;
    }
    if (ckpt_image_finish(f, &im, &cx) != 0) goto done;
    memset(im.mem, 0, CKPT_USERBLOCK);   // a plain HDF5 file: the user block holds no header, only zeros
    rc = ckpt_write_file(path, im.mem, im.len, err, err_len);
    ckpt_image_free(&im);
done:
    ckpt_quiet_end(quiet);
    return rc;
}

// ---- reading -------------------------------------------------------------------------------

// Opens path and checks it is a codes file of a version this program reads.
static hid_t open_codes(const CkptCtx *cx) {
    struct stat st;
    if (stat(cx->path, &st) != 0 || S_ISDIR(st.st_mode)) {
        set_error(cx->err, cx->err_len, "'%s': no such codes file; write one with `vqvae_dist encode --checkpoint "
                  "CKPT --out %s`", cx->path, cx->path);
        return H5I_INVALID_HID;
    }
    hid_t f = H5I_INVALID_HID;
    char *format = NULL;
    int64_t version = 0;
    if (H5Fis_hdf5(cx->path) <= 0 || (f = H5Fopen(cx->path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        set_error(cx->err, cx->err_len, "'%s' is not an HDF5 file; give a codes file written by `vqvae_dist encode`",
                  cx->path);
        return H5I_INVALID_HID;
    }
    int has_format = ckpt_attr_exists(f, "/", "format", cx);
    if (has_format <= 0 || ckpt_attr_read_string(f, "/", "format", &format, cx) != 0 ||
        strcmp(format, CODES_FORMAT_NAME) != 0) {
        int checkpoint = format && strcmp(format, CKPT_FORMAT_NAME) == 0;
        set_error(cx->err, cx->err_len, "'%s' is not a vqvae_dist codes file (format '%s')%s", cx->path,
                  format ? format : "none",
                  checkpoint ? ": that is a checkpoint; give it as --checkpoint and a codes file as --codes" : "");
        goto fail;
    }
    if (ckpt_attr_read(f, "/", "version", CKPT_ATTR_I64, &version, sizeof version, cx) != 0) goto fail;
    if (version != CODES_FORMAT_VERSION) {
        set_error(cx->err, cx->err_len, "codes file '%s' has format version %lld, this program reads version %d; "
                  "encode again with this program", cx->path, (long long)version, CODES_FORMAT_VERSION);
        goto fail;
    }
    free(format);
    return f;
fail:
    free(format);
    H5Fclose(f);
    return H5I_INVALID_HID;
}

static int read_attrs(hid_t f, CodesFile *cf, const CkptCtx *cx) {
    if (ckpt_attr_read_string(f, "/", "checkpoint", &cf->checkpoint, cx) != 0 ||
        ckpt_attr_read_string(f, "/", "config", &cf->config, cx) != 0 ||
        ckpt_attr_read_string(f, "/", "split", &cf->split, cx) != 0 ||
        ckpt_attr_read_string(f, "/", "model_type", &cf->model_type, cx) != 0 ||
        ckpt_attr_read(f, "/", "step", CKPT_ATTR_I64, &cf->step, sizeof cf->step, cx) != 0 ||
        ckpt_attr_read(f, "/", "image_channels", CKPT_ATTR_INT, &cf->image_channels, sizeof(int), cx) != 0 ||
        ckpt_attr_read(f, "/", "image_height", CKPT_ATTR_INT, &cf->image_height, sizeof(int), cx) != 0 ||
        ckpt_attr_read(f, "/", "image_width", CKPT_ATTR_INT, &cf->image_width, sizeof(int), cx) != 0)
        return -1;
    int has_k = ckpt_attr_exists(f, "/", "num_embeddings", cx);
    if (has_k < 0) return -1;
    if (has_k && ckpt_attr_read(f, "/", "num_embeddings", CKPT_ATTR_I64, &cf->num_embeddings, sizeof(int64_t), cx))
        return -1;
    return 0;
}

// The bytes of an array of dims in mem_type, or SIZE_MAX when that overflows or exceeds the
// machine's physical memory (the dims come from the file: H5Dread would write past a wrapped size).
static size_t array_bytes(hid_t mem_type, int ndim, const hsize_t *dims) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    double limit = pages > 0 && page > 0 ? (double)pages * (double)page : (double)SIZE_MAX;
    double bytes = (double)H5Tget_size(mem_type);
    for (int i = 0; i < ndim; i++) bytes *= (double)dims[i];
    return bytes > limit ? SIZE_MAX : (size_t)bytes;
}

// Whether the bytes a dataset stores can hold n bytes of values in mem_type. gzip expands by at
// most ~1032x, so a file declaring far more than that (chunks never written read as fill values)
// would make us allocate and fill gigabytes for a file of a few bytes. 64 MiB of slack for small
// files and the other filters.
static int fits_storage(hid_t dset, hid_t mem_type, size_t n) {
    hid_t file_type = H5Dget_type(dset);
    size_t file_size = file_type >= 0 ? H5Tget_size(file_type) : 0;
    if (file_type >= 0) H5Tclose(file_type);
    double widen = file_size ? (double)H5Tget_size(mem_type) / (double)file_size : 1.0;
    double most = (double)H5Dget_storage_size(dset) * 2048.0 * (widen > 1.0 ? widen : 1.0) + (double)(64 << 20);
    return (double)n <= most;
}

// Reads dataset name, which must have ndim dimensions (written to dims), into *out (malloc'd,
// elem bytes per value, converted to mem_type). A missing dataset leaves *out NULL.
static int read_array(hid_t f, const char *name, hid_t mem_type, int ndim, hsize_t *dims, void **out,
                      const CkptCtx *cx) {
    int rc = -1;
    hid_t dset = H5I_INVALID_HID, space = H5I_INVALID_HID;
    htri_t exists;
    *out = NULL;
    TRY_H5(cx, exists = H5Lexists(f, name, H5P_DEFAULT), name);
    if (!exists) return 0;
    TRY_H5(cx, dset = H5Dopen2(f, name, H5P_DEFAULT), name);
    TRY_H5(cx, space = H5Dget_space(dset), name);
    if (H5Sget_simple_extent_ndims(space) != ndim) {
        set_error(cx->err, cx->err_len, "'/%s' in codes file '%s' has %d dimensions, expected %d (docs/CODES.md)", name,
                  cx->path, H5Sget_simple_extent_ndims(space), ndim);
        goto cleanup;
    }
    TRY_H5(cx, H5Sget_simple_extent_dims(space, dims, NULL), name);
    for (int i = 0; i < ndim; i++)   // the struct holds them as int (an empty array may declare any)
        if (dims[i] > INT32_MAX) {
            set_error(cx->err, cx->err_len, "'/%s' in codes file '%s' has a dimension of %llu, more than %d; the "
                      "file is damaged: encode again", name, cx->path, (unsigned long long)dims[i], INT32_MAX);
            goto cleanup;
        }
    size_t n = array_bytes(mem_type, ndim, dims);
    if (n == SIZE_MAX) {   // a damaged or hostile file: its dims multiply past the machine's memory
        set_error(cx->err, cx->err_len, "'/%s' in codes file '%s' declares more values than this machine's memory "
                  "holds; the file is damaged: encode again", name, cx->path);
        goto cleanup;
    }
    if (!fits_storage(dset, mem_type, n)) {
        set_error(cx->err, cx->err_len, "'/%s' in codes file '%s' declares %.1f MiB of values but stores only %llu "
                  "bytes; the file is damaged: encode again", name, cx->path, (double)n / (1 << 20),
                  (unsigned long long)H5Dget_storage_size(dset));
        goto cleanup;
    }
    *out = malloc(n ? n : 1);
    if (!*out) {
        set_error(cx->err, cx->err_len, "'/%s' in codes file '%s' needs %.1f GiB, which could not be allocated", name,
                  cx->path, (double)n / (1 << 30));
        goto cleanup;
    }
    TRY_H5(cx, H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out), name);
    rc = 0;
cleanup:
    if (rc != 0) {
        free(*out);
        *out = NULL;
    }
    ckpt_h5_close(space);
    ckpt_h5_close(dset);
    return rc;
}

// A VAE's file: /mean [N, L] (what decode needs) and the labels.
static int read_vae_arrays(hid_t f, CodesFile *cf, const CkptCtx *cx) {
    hsize_t dims[2] = {0, 0}, label_dims[1] = {0};
    if (read_array(f, "mean", H5T_NATIVE_FLOAT, 2, dims, (void **)&cf->mean, cx) != 0 ||
        read_array(f, "labels", H5T_NATIVE_UINT8, 1, label_dims, (void **)&cf->labels, cx) != 0)
        return -1;
    if (!cf->mean)
        return set_error(cx->err, cx->err_len, "codes file '%s' (model_type vae) has no /mean; encode again with "
                         "`vqvae_dist encode`", cx->path);
    cf->count = (int64_t)dims[0];
    cf->latent_size = (int)dims[1];
    if (cf->labels && label_dims[0] != dims[0])
        return set_error(cx->err, cx->err_len, "codes file '%s' has %llu labels for %llu images", cx->path,
                         (unsigned long long)label_dims[0], (unsigned long long)dims[0]);
    return 0;
}

static int read_arrays(hid_t f, CodesFile *cf, const CkptCtx *cx) {
    if (strcmp(cf->model_type, "vae") == 0) return read_vae_arrays(f, cf, cx);
    hsize_t dims[4] = {0, 0, 0, 0}, label_dims[1] = {0};
    if (read_array(f, "codes", H5T_NATIVE_INT32, 4, dims, (void **)&cf->codes, cx) != 0 ||
        read_array(f, "labels", H5T_NATIVE_UINT8, 1, label_dims, (void **)&cf->labels, cx) != 0)
        return -1;
    if (!cf->codes)
        return set_error(cx->err, cx->err_len, "codes file '%s' has no /codes (model_type %s); decode needs a VQ-VAE's "
                         "codes", cx->path, cf->model_type);
    cf->count = (int64_t)dims[0];
    cf->height = (int)dims[1];
    cf->width = (int)dims[2];
    cf->groups = (int)dims[3];
    if (cf->labels && label_dims[0] != dims[0])
        return set_error(cx->err, cx->err_len, "codes file '%s' has %llu labels for %llu images", cx->path,
                         (unsigned long long)label_dims[0], (unsigned long long)dims[0]);
    return 0;
}

int codes_file_read(const char *path, CodesFile *out, char *err, size_t err_len) {
    memset(out, 0, sizeof *out);
    CkptCtx cx = {path, err, err_len};
    CkptQuiet quiet = ckpt_quiet_begin();
    hid_t f = open_codes(&cx);
    int rc = -1;
    if (f >= 0) {
        rc = read_attrs(f, out, &cx) == 0 && read_arrays(f, out, &cx) == 0 ? 0 : -1;
        H5Fclose(f);
    }
    ckpt_quiet_end(quiet);
    if (rc != 0) codes_file_free(out);
    return rc;
}

void codes_file_free(CodesFile *cf) {
    void *owned[] = {cf->checkpoint, cf->config, cf->split, cf->model_type, cf->codes,
                     cf->latents,    cf->mean,   cf->logvar, cf->labels};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) free(owned[i]);
    memset(cf, 0, sizeof *cf);
}
