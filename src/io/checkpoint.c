// checkpoint.c: see checkpoint.h; the format is described in docs/CHECKPOINT.md.
//
// Every HDF5 call goes through TRY_H5, which turns a failure into an error message (call, object,
// file, source line, and HDF5's own innermost reason) and jumps to the function's cleanup label,
// where every handle opened so far is closed. Loading never exits: a bad file is an error the
// caller can recover from (`--resume auto` then tries the previous checkpoint).
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/common.h"

#define CKPT_FORMAT_NAME "vqvae_dist"
#ifndef VQ_VERSION
#define VQ_VERSION "unknown"
#endif

// One chunk holds a whole dataset (one checksum, one read) unless it is larger than this; then
// the outer dimensions are split. HDF5's hard limit is 4 GiB per chunk.
enum { CKPT_CHUNK_MAX_BYTES = 16 << 20 };
enum { CKPT_PATH_MAX = PATH_MAX + 16 };   // room for ".tmp"

// ---- HDF5 error handling -------------------------------------------------------------------

// HDF5 prints its whole error stack to stderr by default. We silence that while we work and put
// the innermost reason into our own message instead; the caller's handler is restored afterwards.
typedef struct {
    H5E_auto2_t func;
    void *data;
} H5Quiet;

static H5Quiet h5_quiet_begin(void) {
    H5Quiet q = {NULL, NULL};
    H5Eget_auto2(H5E_DEFAULT, &q.func, &q.data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return q;
}

static void h5_quiet_end(H5Quiet q) { H5Eset_auto2(H5E_DEFAULT, q.func, q.data); }

typedef struct {
    char *buf;
    size_t len;
} H5ErrText;

static herr_t h5_innermost_cb(unsigned n, const H5E_error2_t *e, void *data) {
    H5ErrText *t = data;
    if (n == 0 && e->desc) copy_string(t->buf, t->len, e->desc);   // n == 0: where it was detected
    return 0;
}

// HDF5's description of the innermost error on the current stack ("" when there is none).
static void h5_innermost(char *buf, size_t len) {
    buf[0] = '\0';
    H5ErrText t = {buf, len};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_innermost_cb, &t);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

// expr is the stringified call, e.g. "d = H5Dopen2(g, key, H5P_DEFAULT)": report just "H5Dopen2".
static void h5_fail(char *err, size_t err_len, const char *expr, const char *object, const char *path,
                    const char *src, int line) {
    char fn[48] = "";
    const char *s = strstr(expr, "H5");
    if (s) {
        size_t n = 0;
        while (n + 1 < sizeof fn && (s[n] == '_' || (s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'z') ||
                                     (s[n] >= 'A' && s[n] <= 'Z')))
            n++;
        memcpy(fn, s, n);
        fn[n] = '\0';
    } else {
        copy_string(fn, sizeof fn, expr);
    }
    char inner[256];
    h5_innermost(inner, sizeof inner);
    set_error(err, err_len, "%s(...) failed for '%s' in %s at %s:%d%s%s", fn, object, path, base_name(src), line,
              inner[0] ? ": " : "", inner);
}

// Expects `path`, `err`, `err_len` and a `cleanup:` label in the enclosing function. Works for
// calls returning herr_t, htri_t or hid_t (all negative on failure).
#define TRY_H5(expr, object)                                                        \
    do {                                                                            \
        if ((expr) < 0) {                                                           \
            h5_fail(err, err_len, #expr, (object), path, __FILE__, __LINE__);       \
            goto cleanup;                                                           \
        }                                                                           \
    } while (0)

// Close any kind of handle; negative ids (never opened) are skipped, so cleanup can close all.
static void h5_close(hid_t id) {
    if (id < 0) return;
    switch (H5Iget_type(id)) {
    case H5I_FILE: H5Fclose(id); break;
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    default: break;
    }
}

static void format_shape(char *buf, size_t len, int ndim, const hsize_t *dims) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%llu", i ? ", " : "[", (unsigned long long)dims[i]);
    if (used < len) snprintf(buf + used, len - used, ndim ? "]" : "[]");
}

// Index of the first non-finite value, or -1.
static int64_t first_non_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return (int64_t)i;
    return -1;
}

// ---- attributes ----------------------------------------------------------------------------

static int write_attr(hid_t loc, const char *loc_name, const char *name, hid_t file_type, hid_t mem_type,
                      const void *value, const char *path, char *err, size_t err_len) {
    int rc = -1;
    hid_t space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
    TRY_H5(space = H5Screate(H5S_SCALAR), loc_name);
    TRY_H5(attr = H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT), loc_name);
    TRY_H5(H5Awrite(attr, mem_type, value), loc_name);
    rc = 0;
cleanup:
    h5_close(attr);
    h5_close(space);
    return rc;
}

static int write_attr_i64(hid_t loc, const char *loc_name, const char *name, int64_t v, const char *path, char *err,
                          size_t err_len) {
    return write_attr(loc, loc_name, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, path, err, err_len);
}

static int write_attr_u64(hid_t loc, const char *loc_name, const char *name, uint64_t v, const char *path, char *err,
                          size_t err_len) {
    return write_attr(loc, loc_name, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v, path, err, err_len);
}

static int write_attr_f32(hid_t loc, const char *loc_name, const char *name, float v, const char *path, char *err,
                          size_t err_len) {
    return write_attr(loc, loc_name, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &v, path, err, err_len);
}

// Variable-length UTF-8: h5py 3 reads it as str (fixed-length strings come back as bytes).
static int write_attr_str(hid_t loc, const char *loc_name, const char *name, const char *v, const char *path,
                          char *err, size_t err_len) {
    int rc = -1;
    hid_t type = H5I_INVALID_HID;
    TRY_H5(type = H5Tcopy(H5T_C_S1), loc_name);
    TRY_H5(H5Tset_size(type, H5T_VARIABLE), loc_name);
    TRY_H5(H5Tset_cset(type, H5T_CSET_UTF8), loc_name);
    rc = write_attr(loc, loc_name, name, type, type, &v, path, err, err_len);
cleanup:
    h5_close(type);
    return rc;
}

// Opens attribute `name` on loc after checking it exists and holds exactly one value.
static hid_t open_attr(hid_t loc, const char *loc_name, const char *name, const char *path, char *err,
                       size_t err_len) {
    hid_t attr = H5I_INVALID_HID, space = H5I_INVALID_HID;
    htri_t exists;
    hssize_t npoints;
    TRY_H5(exists = H5Aexists(loc, name), loc_name);
    if (!exists) {
        set_error(err, err_len, "attribute '%s' is missing on '%s' in %s: the file is not a complete vqvae_dist "
                  "checkpoint", name, loc_name, path);
        goto cleanup;
    }
    TRY_H5(attr = H5Aopen(loc, name, H5P_DEFAULT), loc_name);
    TRY_H5(space = H5Aget_space(attr), loc_name);
    TRY_H5(npoints = H5Sget_simple_extent_npoints(space), loc_name);
    if (npoints != 1) {
        set_error(err, err_len, "attribute '%s' on '%s' in %s holds %lld values, expected one", name, loc_name, path,
                  (long long)npoints);
        goto cleanup;
    }
    h5_close(space);
    return attr;
cleanup:
    h5_close(space);
    h5_close(attr);
    return H5I_INVALID_HID;
}

// Reads a numeric attribute, converting to mem_type; integer fields must be stored as integers.
static int read_attr_num(hid_t loc, const char *loc_name, const char *name, hid_t mem_type, int want_integer,
                         void *out, const char *path, char *err, size_t err_len) {
    int rc = -1;
    hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID;
    if ((attr = open_attr(loc, loc_name, name, path, err, err_len)) < 0) goto cleanup;
    TRY_H5(type = H5Aget_type(attr), loc_name);
    H5T_class_t cls = H5Tget_class(type);
    if (!(cls == H5T_INTEGER || (!want_integer && cls == H5T_FLOAT))) {
        set_error(err, err_len, "attribute '%s' on '%s' in %s is not %s", name, loc_name, path,
                  want_integer ? "an integer" : "a number");
        goto cleanup;
    }
    TRY_H5(H5Aread(attr, mem_type, out), loc_name);
    rc = 0;
cleanup:
    h5_close(type);
    h5_close(attr);
    return rc;
}

// Reads a string attribute (variable- or fixed-length, ASCII or UTF-8) into a malloc'd string.
static int read_attr_str(hid_t loc, const char *loc_name, const char *name, char **out, const char *path, char *err,
                         size_t err_len) {
    int rc = -1;
    hid_t attr = H5I_INVALID_HID, ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID;
    char *vlen = NULL;
    *out = NULL;
    if ((attr = open_attr(loc, loc_name, name, path, err, err_len)) < 0) goto cleanup;
    TRY_H5(ftype = H5Aget_type(attr), loc_name);
    if (H5Tget_class(ftype) != H5T_STRING) {
        set_error(err, err_len, "attribute '%s' on '%s' in %s is not a string", name, loc_name, path);
        goto cleanup;
    }
    htri_t is_vlen;
    H5T_cset_t cset;
    TRY_H5(is_vlen = H5Tis_variable_str(ftype), loc_name);
    TRY_H5(cset = H5Tget_cset(ftype), loc_name);
    TRY_H5(mtype = H5Tcopy(H5T_C_S1), loc_name);
    TRY_H5(H5Tset_cset(mtype, cset), loc_name);   // same character set: no conversion needed
    if (is_vlen) {
        TRY_H5(H5Tset_size(mtype, H5T_VARIABLE), loc_name);
        TRY_H5(H5Aread(attr, mtype, &vlen), loc_name);
        *out = xstrdup(vlen ? vlen : "");
    } else {
        size_t n = H5Tget_size(ftype);
        TRY_H5(H5Tset_size(mtype, n + 1), loc_name);
        TRY_H5(H5Tset_strpad(mtype, H5T_STR_NULLTERM), loc_name);
        *out = xcalloc(n + 2, 1);
        TRY_H5(H5Aread(attr, mtype, *out), loc_name);
    }
    rc = 0;
cleanup:
    if (vlen) H5free_memory(vlen);
    if (rc != 0) {
        free(*out);
        *out = NULL;
    }
    h5_close(mtype);
    h5_close(ftype);
    h5_close(attr);
    return rc;
}

static int read_attr_name(hid_t loc, const char *name, char *dst, size_t dst_len, const char *path, char *err,
                          size_t err_len) {
    char *s = NULL;
    if (read_attr_str(loc, "/", name, &s, path, err, err_len) != 0) return -1;
    int rc = 0;
    if (copy_string(dst, dst_len, s) != 0)
        rc = set_error(err, err_len, "attribute '%s' on '/' in %s is too long ('%s', at most %zu characters)", name,
                       path, s, dst_len - 1);
    free(s);
    return rc;
}

// ---- files and folders ---------------------------------------------------------------------

static void dir_of(const char *path, char *dir, size_t len) {
    copy_string(dir, len, path);
    char *slash = strrchr(dir, '/');
    if (!slash) copy_string(dir, len, ".");
    else if (slash == dir) dir[1] = '\0';   // "/file"
    else *slash = '\0';
}

static int fsync_path(const char *path, int is_dir, char *err, size_t err_len) {
    int fd = open(path, is_dir ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
    if (fd < 0) return set_error(err, err_len, "cannot open '%s' to fsync it: %s", path, strerror(errno));
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    // Some file systems cannot fsync a folder (EINVAL); the rename is then as durable as it gets.
    if (rc != 0 && !(is_dir && saved == EINVAL))
        return set_error(err, err_len, "fsync of '%s' failed: %s", path, strerror(saved));
    return 0;
}

// tmp is complete and closed: make it durable, move it over path, make the rename durable.
static int commit_tmp(const char *tmp, const char *path, char *err, size_t err_len) {
    if (fsync_path(tmp, 0, err, err_len) != 0) return -1;
    if (rename(tmp, path) != 0)
        return set_error(err, err_len, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    char dir[CKPT_PATH_MAX];
    dir_of(path, dir, sizeof dir);
    return fsync_path(dir, 1, err, err_len);
}

static int write_text_atomic(const char *path, const char *text, char *err, size_t err_len) {
    char tmp[CKPT_PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return set_error(err, err_len, "path too long: '%s'", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return set_error(err, err_len, "cannot create '%s': %s", tmp, strerror(errno));
    size_t len = strlen(text), done = 0;
    while (done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            set_error(err, err_len, "cannot write '%s': %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            return -1;
        }
        done += (size_t)w;
    }
    if (close(fd) != 0) {
        set_error(err, err_len, "cannot write '%s': %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (commit_tmp(tmp, path, err, err_len) != 0) {
        unlink(tmp);   // gone already if the rename happened
        return -1;
    }
    return 0;
}

// ---- save ----------------------------------------------------------------------------------

// Chunk = whole dataset, split along the outer dimensions only when it exceeds the cap.
static void chunk_dims(int ndim, const hsize_t *dims, hsize_t *chunk) {
    hsize_t bytes = sizeof(float);
    for (int i = 0; i < ndim; i++) {
        chunk[i] = dims[i];
        bytes *= dims[i];
    }
    for (int d = 0; d < ndim && bytes > CKPT_CHUNK_MAX_BYTES; d++) {
        hsize_t inner = bytes / chunk[d];   // bytes of one slice along d
        chunk[d] = inner >= CKPT_CHUNK_MAX_BYTES ? 1 : CKPT_CHUNK_MAX_BYTES / inner;
        bytes = inner * chunk[d];
    }
}

static int write_dataset(hid_t loc, const char *name, const char *full_name, const ParamEntry *e, const float *data,
                         const char *path, char *err, size_t err_len) {
    int rc = -1;
    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    hsize_t dims[PARAM_MAX_DIMS], chunk[PARAM_MAX_DIMS];
    for (int i = 0; i < e->ndim; i++) dims[i] = (hsize_t)e->shape[i];
    chunk_dims(e->ndim, dims, chunk);
    TRY_H5(space = H5Screate_simple(e->ndim, dims, NULL), full_name);
    TRY_H5(dcpl = H5Pcreate(H5P_DATASET_CREATE), full_name);
    TRY_H5(H5Pset_chunk(dcpl, e->ndim, chunk), full_name);
    TRY_H5(H5Pset_fletcher32(dcpl), full_name);
    TRY_H5(dset = H5Dcreate2(loc, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), full_name);
    TRY_H5(H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), full_name);
    rc = 0;
cleanup:
    h5_close(dset);
    h5_close(dcpl);
    h5_close(space);
    return rc;
}

static void iso8601_now(char *buf, size_t len) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

// Everything into an already created file f. Handles opened here are closed here.
static int write_contents(hid_t f, const CheckpointState *state, const CheckpointMeta *meta, const char *config_yaml,
                          const char *path, char *err, size_t err_len) {
    const ParamRegistry *reg = state->registry;
    int rc = -1;
    hid_t gcpl = H5I_INVALID_HID, model = H5I_INVALID_HID, optim = H5I_INVALID_HID, g = H5I_INVALID_HID;
    char arch[sizeof meta->arch + 1] = "", quantizer[sizeof meta->quantizer + 1] = "", created[32];
    memcpy(arch, meta->arch, sizeof meta->arch);   // the extra byte keeps them terminated
    memcpy(quantizer, meta->quantizer, sizeof meta->quantizer);
    iso8601_now(created, sizeof created);

    if (write_attr_str(f, "/", "format", CKPT_FORMAT_NAME, path, err, err_len) ||
        write_attr_i64(f, "/", "version", CHECKPOINT_FORMAT_VERSION, path, err, err_len) ||
        write_attr_i64(f, "/", "step", meta->step, path, err, err_len) ||
        write_attr_i64(f, "/", "epoch", meta->epoch, path, err, err_len) ||
        write_attr_i64(f, "/", "epoch_offset", meta->epoch_offset, path, err, err_len) ||
        write_attr_i64(f, "/", "samples_seen", meta->samples_seen, path, err, err_len) ||
        write_attr_u64(f, "/", "seed", meta->seed, path, err, err_len) ||
        write_attr_i64(f, "/", "world_size", meta->world_size, path, err, err_len) ||
        write_attr_str(f, "/", "arch", arch, path, err, err_len) ||
        write_attr_str(f, "/", "quantizer", quantizer, path, err, err_len) ||
        write_attr_str(f, "/", "created", created, path, err, err_len) ||
        write_attr_str(f, "/", "program_version", VQ_VERSION, path, err, err_len) ||
        write_attr_str(f, "/", "config", config_yaml ? config_yaml : "", path, err, err_len))
        goto cleanup;

    // Track creation order so tools can list tensors in registration (state_dict) order.
    TRY_H5(gcpl = H5Pcreate(H5P_GROUP_CREATE), "/model");
    TRY_H5(H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED), "/model");
    TRY_H5(model = H5Gcreate2(f, "model", H5P_DEFAULT, gcpl, H5P_DEFAULT), "/model");
    char full[PARAM_KEY_MAX + 32];
    for (int i = 0; i < reg->count; i++) {
        const ParamEntry *e = &reg->entries[i];
        snprintf(full, sizeof full, "/model/%s", e->key);
        if (write_dataset(model, e->key, full, e, state->values + e->offset, path, err, err_len) != 0) goto cleanup;
    }

    if (state->exp_avg && state->exp_avg_sq) {
        TRY_H5(optim = H5Gcreate2(f, "optim", H5P_DEFAULT, gcpl, H5P_DEFAULT), "/optim");
        if (write_attr_i64(optim, "/optim", "step", meta->adam_step, path, err, err_len) ||
            write_attr_f32(optim, "/optim", "lr", meta->lr, path, err, err_len) ||
            write_attr_f32(optim, "/optim", "beta1", meta->beta1, path, err, err_len) ||
            write_attr_f32(optim, "/optim", "beta2", meta->beta2, path, err, err_len) ||
            write_attr_f32(optim, "/optim", "eps", meta->eps, path, err, err_len) ||
            write_attr_f32(optim, "/optim", "weight_decay", meta->weight_decay, path, err, err_len))
            goto cleanup;
        for (int i = 0; i < reg->count; i++) {
            const ParamEntry *e = &reg->entries[i];
            if (!e->trainable) continue;
            snprintf(full, sizeof full, "/optim/%s", e->key);
            TRY_H5(g = H5Gcreate2(optim, e->key, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), full);
            snprintf(full, sizeof full, "/optim/%s/exp_avg", e->key);
            if (write_dataset(g, "exp_avg", full, e, state->exp_avg + e->offset, path, err, err_len) != 0) goto cleanup;
            snprintf(full, sizeof full, "/optim/%s/exp_avg_sq", e->key);
            if (write_dataset(g, "exp_avg_sq", full, e, state->exp_avg_sq + e->offset, path, err, err_len) != 0)
                goto cleanup;
            h5_close(g);
            g = H5I_INVALID_HID;
        }
    }
    rc = 0;
cleanup:
    h5_close(g);
    h5_close(optim);
    h5_close(model);
    h5_close(gcpl);
    return rc;
}

int checkpoint_save(const char *path, const CheckpointState *state, const CheckpointMeta *meta,
                    const char *config_yaml, char *err, size_t err_len) {
    const ParamRegistry *reg = state->registry;
    // A checkpoint with NaN/Inf would become `latest` and push the good ones out of `keep`: refuse.
    for (int i = 0; i < reg->count; i++) {
        const ParamEntry *e = &reg->entries[i];
        const float *arrays[3] = {state->values, e->trainable ? state->exp_avg : NULL,
                                  e->trainable ? state->exp_avg_sq : NULL};
        static const char *const what[3] = {"value", "Adam exp_avg", "Adam exp_avg_sq"};
        for (int a = 0; a < 3; a++) {
            if (!arrays[a]) continue;
            int64_t bad = first_non_finite(arrays[a] + e->offset, e->count);
            if (bad >= 0)
                return set_error(err, err_len, "not writing checkpoint %s: %s of '%s' is %g at index %lld; the "
                                 "training state has diverged", path, what[a], e->key,
                                 (double)arrays[a][e->offset + (size_t)bad], (long long)bad);
        }
    }
    char tmp[CKPT_PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return set_error(err, err_len, "checkpoint path too long: '%s'", path);

    H5Quiet quiet = h5_quiet_begin();
    int rc = -1;
    hid_t fapl = H5I_INVALID_HID, f = H5I_INVALID_HID;
    TRY_H5(fapl = H5Pcreate(H5P_FILE_ACCESS), "/");
    // v1.10 object headers and superblock carry checksums; h5py >= 2.7 (HDF5 1.10) reads them.
    TRY_H5(H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110), "/");
    TRY_H5(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), "/");   // close really closes
    TRY_H5(f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl), "/");
    if (write_contents(f, state, meta, config_yaml, path, err, err_len) != 0) goto cleanup;
    hid_t closing = f;
    f = H5I_INVALID_HID;
    TRY_H5(H5Fclose(closing), "/");   // flushes everything; a full disk shows up here
    if (commit_tmp(tmp, path, err, err_len) != 0) goto cleanup;
    rc = 0;
cleanup:
    h5_close(f);
    h5_close(fapl);
    h5_quiet_end(quiet);
    if (rc != 0) unlink(tmp);   // an existing checkpoint at path was never touched
    return rc;
}

// ---- load ----------------------------------------------------------------------------------

// Opens path read-only after checking it is a vqvae_dist checkpoint of a version we can read.
static hid_t open_checkpoint(const char *path, char *err, size_t err_len) {
    hid_t fapl = H5I_INVALID_HID, f = H5I_INVALID_HID;
    char *format = NULL, *written_by = NULL;
    // Plain open first: "No such file" or "Permission denied" say more than HDF5's stack does.
    struct stat st;
    int fd = open(path, O_RDONLY);
    if (fd < 0 || fstat(fd, &st) != 0) {
        set_error(err, err_len, "cannot open checkpoint '%s': %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return H5I_INVALID_HID;
    }
    close(fd);
    if (S_ISDIR(st.st_mode)) {
        set_error(err, err_len, "checkpoint '%s' is a folder; give a checkpoint file, or the folder with "
                  "--resume auto", path);
        return H5I_INVALID_HID;
    }
    if (st.st_size == 0) {
        set_error(err, err_len, "checkpoint '%s' is empty (0 bytes): the file is truncated; use an older checkpoint "
                  "(--resume auto falls back automatically)", path);
        return H5I_INVALID_HID;
    }
    htri_t is_hdf5 = H5Fis_hdf5(path);
    if (is_hdf5 == 0) {
        set_error(err, err_len, "'%s' is not an HDF5 file (no HDF5 signature), so not a vqvae_dist checkpoint", path);
        return H5I_INVALID_HID;
    }
    TRY_H5(fapl = H5Pcreate(H5P_FILE_ACCESS), "/");
    TRY_H5(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), "/");
    if ((f = H5Fopen(path, H5F_ACC_RDONLY, fapl)) < 0) {
        char inner[256];
        h5_innermost(inner, sizeof inner);
        if (strstr(inner, "unable to lock"))   // H5FD_sec2: "unable to lock file, errno = 11, ..."
            set_error(err, err_len, "cannot open checkpoint '%s' (HDF5: %s): another process has it open for writing, "
                      "or this file system has no file locks (then set HDF5_USE_FILE_LOCKING=FALSE)", path, inner);
        else
            set_error(err, err_len, "cannot open checkpoint '%s' (HDF5: %s): the file is truncated or corrupt; use an "
                      "older checkpoint (--resume auto falls back automatically)", path,
                      inner[0] ? inner : "unknown error");
        goto cleanup;
    }
    htri_t has_format;
    TRY_H5(has_format = H5Aexists(f, "format"), "/");
    if (!has_format) {
        set_error(err, err_len, "'%s' is an HDF5 file but not a vqvae_dist checkpoint (no 'format' attribute on '/')",
                  path);
        goto cleanup;
    }
    if (read_attr_str(f, "/", "format", &format, path, err, err_len) != 0) goto cleanup;
    if (strcmp(format, CKPT_FORMAT_NAME) != 0) {
        set_error(err, err_len, "'%s' is not a vqvae_dist checkpoint (attribute 'format' is '%s', expected '%s')", path,
                  format, CKPT_FORMAT_NAME);
        goto cleanup;
    }
    int64_t version = 0;
    if (read_attr_num(f, "/", "version", H5T_NATIVE_INT64, 1, &version, path, err, err_len) != 0) goto cleanup;
    if (version != CHECKPOINT_FORMAT_VERSION) {
        if (read_attr_str(f, "/", "program_version", &written_by, path, err, err_len) != 0) written_by = NULL;
        if (version > CHECKPOINT_FORMAT_VERSION)
            set_error(err, err_len, "checkpoint '%s' has format version %lld, written by vqvae_dist %s; this program "
                      "(vqvae_dist %s) reads version %d only: use vqvae_dist %s or newer", path, (long long)version,
                      written_by ? written_by : "(unknown)", VQ_VERSION, CHECKPOINT_FORMAT_VERSION,
                      written_by ? written_by : "(a newer release)");
        else
            set_error(err, err_len, "checkpoint '%s' has invalid format version %lld (this program reads version %d)",
                      path, (long long)version, CHECKPOINT_FORMAT_VERSION);
        goto cleanup;
    }
    free(format);
    h5_close(fapl);
    return f;
cleanup:
    free(format);
    free(written_by);
    h5_close(f);
    h5_close(fapl);
    return H5I_INVALID_HID;
}

static int read_meta_attrs(hid_t f, CheckpointMeta *meta, char **config_out, const char *path, char *err,
                           size_t err_len) {
    int rc = -1;
    hid_t optim = H5I_INVALID_HID;
    int64_t world = 0;
    memset(meta, 0, sizeof *meta);
    *config_out = NULL;
    if (read_attr_num(f, "/", "step", H5T_NATIVE_INT64, 1, &meta->step, path, err, err_len) ||
        read_attr_num(f, "/", "epoch", H5T_NATIVE_INT64, 1, &meta->epoch, path, err, err_len) ||
        read_attr_num(f, "/", "epoch_offset", H5T_NATIVE_INT64, 1, &meta->epoch_offset, path, err, err_len) ||
        read_attr_num(f, "/", "samples_seen", H5T_NATIVE_INT64, 1, &meta->samples_seen, path, err, err_len) ||
        read_attr_num(f, "/", "seed", H5T_NATIVE_UINT64, 1, &meta->seed, path, err, err_len) ||
        read_attr_num(f, "/", "world_size", H5T_NATIVE_INT64, 1, &world, path, err, err_len) ||
        read_attr_name(f, "arch", meta->arch, sizeof meta->arch, path, err, err_len) ||
        read_attr_name(f, "quantizer", meta->quantizer, sizeof meta->quantizer, path, err, err_len) ||
        read_attr_str(f, "/", "config", config_out, path, err, err_len))
        goto cleanup;
    if (world < 1 || world > INT32_MAX || meta->step < 0 || meta->epoch < 0 || meta->epoch_offset < 0 ||
        meta->samples_seen < 0) {
        set_error(err, err_len, "checkpoint '%s' has invalid progress attributes (step %lld, epoch %lld, epoch_offset "
                  "%lld, samples_seen %lld, world_size %lld): the file is corrupt", path, (long long)meta->step,
                  (long long)meta->epoch, (long long)meta->epoch_offset, (long long)meta->samples_seen,
                  (long long)world);
        goto cleanup;
    }
    meta->world_size = (int)world;
    htri_t has_optim;
    TRY_H5(has_optim = H5Lexists(f, "optim", H5P_DEFAULT), "/optim");
    if (has_optim) {
        TRY_H5(optim = H5Gopen2(f, "optim", H5P_DEFAULT), "/optim");
        if (read_attr_num(optim, "/optim", "step", H5T_NATIVE_INT64, 1, &meta->adam_step, path, err, err_len) ||
            read_attr_num(optim, "/optim", "lr", H5T_NATIVE_FLOAT, 0, &meta->lr, path, err, err_len) ||
            read_attr_num(optim, "/optim", "beta1", H5T_NATIVE_FLOAT, 0, &meta->beta1, path, err, err_len) ||
            read_attr_num(optim, "/optim", "beta2", H5T_NATIVE_FLOAT, 0, &meta->beta2, path, err, err_len) ||
            read_attr_num(optim, "/optim", "eps", H5T_NATIVE_FLOAT, 0, &meta->eps, path, err, err_len) ||
            read_attr_num(optim, "/optim", "weight_decay", H5T_NATIVE_FLOAT, 0, &meta->weight_decay, path, err,
                          err_len))
            goto cleanup;
    }
    rc = 0;
cleanup:
    h5_close(optim);
    if (rc != 0) {
        free(*config_out);
        *config_out = NULL;
    }
    return rc;
}

int checkpoint_read_meta(const char *path, CheckpointMeta *meta, char **config_yaml_out, char *err, size_t err_len) {
    H5Quiet quiet = h5_quiet_begin();
    CheckpointMeta m;
    char *config = NULL;
    int rc = -1;
    if (config_yaml_out) *config_yaml_out = NULL;
    hid_t f = open_checkpoint(path, err, err_len);
    if (f >= 0 && read_meta_attrs(f, &m, &config, path, err, err_len) == 0) {
        if (meta) *meta = m;
        if (config_yaml_out) *config_yaml_out = config;
        else free(config);
        rc = 0;
    }
    h5_close(f);
    h5_quiet_end(quiet);
    return rc;
}

// Reads dataset `name` of loc into out: it must exist, be float32 with exactly e's shape, carry
// the fletcher32 filter (so the read verifies the checksum), and hold only finite numbers.
static int read_dataset(hid_t loc, const char *name, const char *full_name, const ParamEntry *e, float *out,
                        int non_negative, const char *path, char *err, size_t err_len) {
    int rc = -1;
    hid_t dset = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID,
          dxpl = H5I_INVALID_HID;
    htri_t exists;
    TRY_H5(exists = H5Lexists(loc, name, H5P_DEFAULT), full_name);
    if (!exists) {
        set_error(err, err_len, "'%s' is missing from %s: the checkpoint was written for another model "
                  "(model.arch / quantizer.type differ), or is incomplete", full_name, path);
        goto cleanup;
    }
    TRY_H5(dset = H5Dopen2(loc, name, H5P_DEFAULT), full_name);
    TRY_H5(type = H5Dget_type(dset), full_name);
    if (H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != sizeof(float)) {
        set_error(err, err_len, "'%s' in %s is not float32 (HDF5 class %d, %zu bytes); store it as float32 (in h5py: "
                  "data.astype(numpy.float32))", full_name, path, (int)H5Tget_class(type), H5Tget_size(type));
        goto cleanup;
    }
    TRY_H5(space = H5Dget_space(dset), full_name);
    int ndim;
    hsize_t dims[H5S_MAX_RANK], want[PARAM_MAX_DIMS];
    TRY_H5(ndim = H5Sget_simple_extent_dims(space, dims, NULL), full_name);
    int same = ndim == e->ndim;
    for (int i = 0; i < e->ndim; i++) {
        want[i] = (hsize_t)e->shape[i];
        if (same && dims[i] != want[i]) same = 0;
    }
    if (!same) {
        char got_s[128], want_s[128];
        format_shape(got_s, sizeof got_s, ndim, dims);
        format_shape(want_s, sizeof want_s, e->ndim, want);
        set_error(err, err_len, "'%s' has shape %s, expected %s for this config in %s; the checkpoint was written for "
                  "another model configuration (model.* or quantizer.num_embeddings; `vqvae_dist info` shows its "
                  "config)", full_name, got_s, want_s, path);
        goto cleanup;
    }
    TRY_H5(dcpl = H5Dget_create_plist(dset), full_name);
    int nfilters, has_fletcher = 0;
    TRY_H5(nfilters = H5Pget_nfilters(dcpl), full_name);
    for (int i = 0; i < nfilters; i++) {
        unsigned flags, config;
        size_t nelem = 0;
        if (H5Pget_filter2(dcpl, (unsigned)i, &flags, &nelem, NULL, 0, NULL, &config) == H5Z_FILTER_FLETCHER32)
            has_fletcher = 1;
    }
    if (!has_fletcher) {
        set_error(err, err_len, "'%s' in %s has no fletcher32 checksum, so it cannot be verified; write it chunked "
                  "with the checksum (in h5py: create_dataset(..., fletcher32=True))", full_name, path);
        goto cleanup;
    }
    TRY_H5(dxpl = H5Pcreate(H5P_DATASET_XFER), full_name);
    TRY_H5(H5Pset_edc_check(dxpl, H5Z_ENABLE_EDC), full_name);   // the default, but this is the point
    if (H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, dxpl, out) < 0) {
        char inner[256];
        h5_innermost(inner, sizeof inner);
        set_error(err, err_len, "checksum mismatch or unreadable data in dataset '%s' of %s (HDF5: %s): the file is "
                  "corrupt; use an older checkpoint (--resume auto falls back automatically)", full_name, path,
                  inner[0] ? inner : "read failed");
        goto cleanup;
    }
    for (size_t i = 0; i < e->count; i++) {
        if (!isfinite(out[i]) || (non_negative && out[i] < 0.0f)) {
            set_error(err, err_len, "'%s' in %s holds %s value %g at flat index %zu: the training state had diverged "
                      "(or the file is corrupt); use an older checkpoint (--resume auto falls back automatically)",
                      full_name, path, isfinite(out[i]) ? "a negative" : "a non-finite", (double)out[i], i);
            goto cleanup;
        }
    }
    rc = 0;
cleanup:
    h5_close(dxpl);
    h5_close(dcpl);
    h5_close(space);
    h5_close(type);
    h5_close(dset);
    return rc;
}

// What may appear as a member of a group (strict loading, like load_state_dict(strict=True)).
typedef enum { MEMBERS_MODEL, MEMBERS_OPTIM, MEMBERS_MOMENTS } MemberKind;

// (The registry is searched here rather than with param_registry_find, which lives in vq_model:
// vq_io must link without the layer above it.)
static int member_known(const ParamRegistry *reg, MemberKind kind, const char *name) {
    if (kind == MEMBERS_MOMENTS) return strcmp(name, "exp_avg") == 0 || strcmp(name, "exp_avg_sq") == 0;
    for (int i = 0; i < reg->count; i++)
        if (strcmp(reg->entries[i].key, name) == 0) return kind == MEMBERS_MODEL || reg->entries[i].trainable;
    return 0;
}

// Error naming (up to a few of) the members of g that the model does not know.
static int check_members(hid_t g, const char *g_name, const ParamRegistry *reg, MemberKind kind, const char *path,
                         char *err, size_t err_len) {
    int rc = -1;
    H5G_info_t info;
    char names[512] = "";
    size_t used = 0;
    int unknown = 0;
    TRY_H5(H5Gget_info(g, &info), g_name);
    for (hsize_t i = 0; i < info.nlinks; i++) {
        char name[PARAM_KEY_MAX + 8];
        ssize_t n;
        TRY_H5(n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT), g_name);
        if ((size_t)n < sizeof name && member_known(reg, kind, name)) continue;
        if (unknown++ < 4 && used < sizeof names)
            used += (size_t)snprintf(names + used, sizeof names - used, "%s'%s/%s%s'", unknown > 1 ? ", " : "",
                                     g_name, name, (size_t)n >= sizeof name ? "..." : "");
    }
    if (unknown) {
        set_error(err, err_len, "%s has %d entr%s in %s that this model does not have: %s%s; the checkpoint was "
                  "written for another model configuration (loading is strict, like load_state_dict(strict=True))",
                  path, unknown, unknown == 1 ? "y" : "ies", g_name, names, unknown > 4 ? ", ..." : "");
        goto cleanup;
    }
    rc = 0;
cleanup:
    return rc;
}

int checkpoint_load(const char *path, CheckpointState *state, CheckpointMeta *meta, char **config_yaml_out,
                    char *err, size_t err_len) {
    const ParamRegistry *reg = state->registry;
    if (config_yaml_out) *config_yaml_out = NULL;
    // Read into scratch buffers and copy on success, so a failed load leaves state untouched.
    int with_optim = state->exp_avg != NULL && state->exp_avg_sq != NULL;
    float *values = xmalloc(reg->total_count * sizeof(float));
    float *m = with_optim ? xmalloc(reg->trainable_count * sizeof(float)) : NULL;
    float *v = with_optim ? xmalloc(reg->trainable_count * sizeof(float)) : NULL;
    char *config = NULL;
    CheckpointMeta mt;
    H5Quiet quiet = h5_quiet_begin();
    int rc = -1;
    hid_t f = H5I_INVALID_HID, model = H5I_INVALID_HID, optim = H5I_INVALID_HID, g = H5I_INVALID_HID;
    htri_t exists;
    char full[PARAM_KEY_MAX + 32];

    if ((f = open_checkpoint(path, err, err_len)) < 0) goto cleanup;
    if (read_meta_attrs(f, &mt, &config, path, err, err_len) != 0) goto cleanup;

    TRY_H5(exists = H5Lexists(f, "model", H5P_DEFAULT), "/model");
    if (!exists) {
        set_error(err, err_len, "'/model' is missing from %s: the file is not a complete vqvae_dist checkpoint", path);
        goto cleanup;
    }
    TRY_H5(model = H5Gopen2(f, "model", H5P_DEFAULT), "/model");
    for (int i = 0; i < reg->count; i++) {
        const ParamEntry *e = &reg->entries[i];
        snprintf(full, sizeof full, "/model/%s", e->key);
        if (read_dataset(model, e->key, full, e, values + e->offset, 0, path, err, err_len) != 0) goto cleanup;
    }
    if (check_members(model, "/model", reg, MEMBERS_MODEL, path, err, err_len) != 0) goto cleanup;

    if (with_optim) {
        TRY_H5(exists = H5Lexists(f, "optim", H5P_DEFAULT), "/optim");
        if (!exists) {
            set_error(err, err_len, "'/optim' (the Adam state) is missing from %s; it cannot be resumed from, only "
                      "evaluated", path);
            goto cleanup;
        }
        TRY_H5(optim = H5Gopen2(f, "optim", H5P_DEFAULT), "/optim");
        for (int i = 0; i < reg->count; i++) {
            const ParamEntry *e = &reg->entries[i];
            if (!e->trainable) continue;
            snprintf(full, sizeof full, "/optim/%s", e->key);
            TRY_H5(exists = H5Lexists(optim, e->key, H5P_DEFAULT), full);
            if (!exists) {
                set_error(err, err_len, "'%s' is missing from %s: the checkpoint was written for another model, or is "
                          "incomplete", full, path);
                goto cleanup;
            }
            TRY_H5(g = H5Gopen2(optim, e->key, H5P_DEFAULT), full);
            if (check_members(g, full, reg, MEMBERS_MOMENTS, path, err, err_len) != 0) goto cleanup;
            snprintf(full, sizeof full, "/optim/%s/exp_avg", e->key);
            if (read_dataset(g, "exp_avg", full, e, m + e->offset, 0, path, err, err_len) != 0) goto cleanup;
            snprintf(full, sizeof full, "/optim/%s/exp_avg_sq", e->key);
            if (read_dataset(g, "exp_avg_sq", full, e, v + e->offset, 1, path, err, err_len) != 0) goto cleanup;
            h5_close(g);
            g = H5I_INVALID_HID;
        }
        if (check_members(optim, "/optim", reg, MEMBERS_OPTIM, path, err, err_len) != 0) goto cleanup;
    }

    memcpy(state->values, values, reg->total_count * sizeof(float));
    if (with_optim) {
        memcpy(state->exp_avg, m, reg->trainable_count * sizeof(float));
        memcpy(state->exp_avg_sq, v, reg->trainable_count * sizeof(float));
    }
    if (meta) *meta = mt;
    if (config_yaml_out) {
        *config_yaml_out = config;
        config = NULL;
    }
    rc = 0;
cleanup:
    h5_close(g);
    h5_close(optim);
    h5_close(model);
    h5_close(f);
    h5_quiet_end(quiet);
    free(config);
    free(values);
    free(m);
    free(v);
    return rc;
}

// ---- a folder of checkpoints ---------------------------------------------------------------

typedef struct {
    long long step;
    char *name;
} CkptFile;

// "ckpt_<digits>.h5" -> step, else -1.
static long long parse_ckpt_name(const char *name) {
    if (strncmp(name, "ckpt_", 5) != 0) return -1;
    const char *p = name + 5;
    long long step = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        if (step > (LLONG_MAX - 9) / 10) return -1;
        step = step * 10 + (*p++ - '0');
        digits++;
    }
    return digits > 0 && strcmp(p, ".h5") == 0 ? step : -1;
}

static int ckpt_newest_first(const void *a, const void *b) {
    const CkptFile *x = a, *y = b;
    if (x->step != y->step) return x->step > y->step ? -1 : 1;
    return -strcmp(x->name, y->name);
}

// The ckpt_*.h5 files of dir, newest step first; *count_out of them (caller frees names and array).
static CkptFile *scan_dir(const char *dir, int *count_out) {
    *count_out = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    int count = 0, cap = 16;
    CkptFile *files = xmalloc((size_t)cap * sizeof *files);
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        long long step = parse_ckpt_name(ent->d_name);
        if (step < 0) continue;
        if (count == cap) {
            cap *= 2;
            CkptFile *grown = realloc(files, (size_t)cap * sizeof *files);
            if (!grown) fatal("out of host memory listing '%s'", dir);
            files = grown;
        }
        files[count].step = step;
        files[count].name = xstrdup(ent->d_name);
        count++;
    }
    closedir(d);
    qsort(files, (size_t)count, sizeof *files, ckpt_newest_first);
    *count_out = count;
    return files;
}

static void free_scan(CkptFile *files, int count) {
    for (int i = 0; i < count; i++) free(files[i].name);
    free(files);
}

int checkpoint_save_in_dir(const char *dir, const CheckpointState *state, const CheckpointMeta *meta,
                           const char *config_yaml, int keep, char *path_out, size_t path_len, char *err,
                           size_t err_len) {
    if (meta->step < 0) return set_error(err, err_len, "cannot save a checkpoint for step %lld", (long long)meta->step);
    char why[CKPT_PATH_MAX + 128];
    if (make_dirs(dir, why, sizeof why) != 0)
        return set_error(err, err_len, "cannot create checkpoint folder (checkpoint.dir): %s", why);
    char name[64], path[CKPT_PATH_MAX], latest[CKPT_PATH_MAX], line[80];
    snprintf(name, sizeof name, "ckpt_%08lld.h5", (long long)meta->step);
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path ||
        snprintf(latest, sizeof latest, "%s/latest", dir) >= (int)sizeof latest)
        return set_error(err, err_len, "checkpoint folder path too long: '%s'", dir);
    if (checkpoint_save(path, state, meta, config_yaml, err, err_len) != 0) return -1;
    snprintf(line, sizeof line, "%s\n", name);
    if (write_text_atomic(latest, line, err, err_len) != 0) return -1;
    if (path_out && copy_string(path_out, path_len, path) != 0)
        return set_error(err, err_len, "checkpoint path '%s' does not fit the caller's buffer", path);

    // Keep the newest `keep` (keep < 1: all), counting the one just written, which is never deleted.
    if (keep >= 1) {
        int count;
        CkptFile *files = scan_dir(dir, &count);
        int kept = 1;
        for (int i = 0; i < count; i++) {
            if (strcmp(files[i].name, name) == 0) continue;
            if (kept < keep) {
                kept++;
                continue;
            }
            char old[CKPT_PATH_MAX];
            snprintf(old, sizeof old, "%s/%s", dir, files[i].name);
            if (unlink(old) != 0) log_warn("cannot delete old checkpoint '%s': %s", old, strerror(errno));
        }
        free_scan(files, count);
    }
    return 0;
}

int checkpoint_list_in_dir(const char *dir, char **paths, int max_paths) {
    int n = 0;
    char first[256] = "", path[CKPT_PATH_MAX], latest[CKPT_PATH_MAX], err[256];
    if (max_paths <= 0) return 0;
    snprintf(latest, sizeof latest, "%s/latest", dir);
    char *text = read_text_file(latest, NULL, err, sizeof err);
    if (text) {
        size_t len = strlen(text);
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ')) text[--len] = '\0';
        struct stat st;
        // Only a plain name inside dir: `latest` is ours, but never follow it elsewhere.
        if (len > 0 && len < sizeof first && !strchr(text, '/') && strcmp(text, ".") != 0 && strcmp(text, "..") != 0 &&
            snprintf(path, sizeof path, "%s/%s", dir, text) < (int)sizeof path && stat(path, &st) == 0 &&
            S_ISREG(st.st_mode)) {
            copy_string(first, sizeof first, text);
            paths[n++] = xstrdup(path);
        }
        free(text);
    }
    int count;
    CkptFile *files = scan_dir(dir, &count);
    for (int i = 0; i < count && n < max_paths; i++) {
        if (strcmp(files[i].name, first) == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        paths[n++] = xstrdup(path);
    }
    free_scan(files, count);
    return n;
}

// ---- info ----------------------------------------------------------------------------------

// One line per /model dataset: shape, count, min, max, L2 norm.
static int print_tensors(hid_t f, const char *path, char *err, size_t err_len) {
    int rc = -1;
    hid_t model = H5I_INVALID_HID, gcpl = H5I_INVALID_HID, dset = H5I_INVALID_HID, space = H5I_INVALID_HID;
    float *buf = NULL;
    H5G_info_t info;
    unsigned order_flags = 0;
    int64_t total = 0;
    htri_t exists;
    TRY_H5(exists = H5Lexists(f, "model", H5P_DEFAULT), "/model");
    if (!exists) {
        set_error(err, err_len, "'/model' is missing from %s", path);
        goto cleanup;
    }
    TRY_H5(model = H5Gopen2(f, "model", H5P_DEFAULT), "/model");
    TRY_H5(gcpl = H5Gget_create_plist(model), "/model");
    TRY_H5(H5Pget_link_creation_order(gcpl, &order_flags), "/model");
    // Registration (state_dict) order when the file recorded it, else by name.
    H5_index_t index = (order_flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
    TRY_H5(H5Gget_info(model, &info), "/model");
    printf("%-56s %-18s %10s %12s %12s %12s\n", "tensor (/model)", "shape", "count", "min", "max", "L2 norm");
    for (hsize_t i = 0; i < info.nlinks; i++) {
        char name[256], full[300], shape_s[128];
        TRY_H5(H5Lget_name_by_idx(model, ".", index, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT), "/model");
        snprintf(full, sizeof full, "/model/%s", name);
        TRY_H5(dset = H5Dopen2(model, name, H5P_DEFAULT), full);
        TRY_H5(space = H5Dget_space(dset), full);
        hsize_t dims[H5S_MAX_RANK];
        int ndim;
        hssize_t n;
        TRY_H5(ndim = H5Sget_simple_extent_dims(space, dims, NULL), full);
        TRY_H5(n = H5Sget_simple_extent_npoints(space), full);
        free(buf);
        buf = xmalloc((size_t)n * sizeof(float));
        if (H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            char inner[256];
            h5_innermost(inner, sizeof inner);
            set_error(err, err_len, "checksum mismatch or unreadable data in dataset '%s' of %s (HDF5: %s): the file "
                      "is corrupt", full, path, inner[0] ? inner : "read failed");
            goto cleanup;
        }
        double lo = INFINITY, hi = -INFINITY, sq = 0.0;
        for (hssize_t j = 0; j < n; j++) {
            double x = buf[j];
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
            sq += x * x;
        }
        format_shape(shape_s, sizeof shape_s, ndim, dims);
        printf("%-56s %-18s %10lld %12.5g %12.5g %12.5g\n", name, shape_s, (long long)n, lo, hi, sqrt(sq));
        total += n;
        h5_close(space);
        h5_close(dset);
        space = dset = H5I_INVALID_HID;
    }
    printf("parameters: %lld floats in %llu tensors\n", (long long)total, (unsigned long long)info.nlinks);
    rc = 0;
cleanup:
    free(buf);
    h5_close(space);
    h5_close(dset);
    h5_close(gcpl);
    h5_close(model);
    return rc;
}

int checkpoint_print_info(const char *path, char *err, size_t err_len) {
    H5Quiet quiet = h5_quiet_begin();
    int rc = -1;
    CheckpointMeta m;
    char *config = NULL, *created = NULL, *program = NULL;
    hid_t f = H5I_INVALID_HID;
    htri_t has_optim;
    if ((f = open_checkpoint(path, err, err_len)) < 0) goto cleanup;
    if (read_meta_attrs(f, &m, &config, path, err, err_len) != 0) goto cleanup;
    if (read_attr_str(f, "/", "created", &created, path, err, err_len) != 0) goto cleanup;
    if (read_attr_str(f, "/", "program_version", &program, path, err, err_len) != 0) goto cleanup;
    TRY_H5(has_optim = H5Lexists(f, "optim", H5P_DEFAULT), "/optim");
    printf("checkpoint       %s\n", path);
    printf("format           %s version %d\n", CKPT_FORMAT_NAME, CHECKPOINT_FORMAT_VERSION);
    printf("step             %lld\n", (long long)m.step);
    printf("epoch            %lld (offset %lld)\n", (long long)m.epoch, (long long)m.epoch_offset);
    printf("samples_seen     %lld\n", (long long)m.samples_seen);
    printf("seed             %" PRIu64 "\n", m.seed);
    printf("world_size       %d\n", m.world_size);
    printf("arch             %s\n", m.arch);
    printf("quantizer        %s\n", m.quantizer);
    printf("created          %s\n", created);
    printf("program_version  %s\n", program);
    if (has_optim)
        printf("adam             step %lld, lr %g, betas (%g, %g), eps %g, weight_decay %g\n", (long long)m.adam_step,
               (double)m.lr, (double)m.beta1, (double)m.beta2, (double)m.eps, (double)m.weight_decay);
    else
        printf("adam             (no optimizer state)\n");
    printf("\n");
    if (print_tensors(f, path, err, err_len) != 0) goto cleanup;
    printf("\nconfig:\n%s", config);
    if (config[0] && config[strlen(config) - 1] != '\n') printf("\n");
    fflush(stdout);
    rc = 0;
cleanup:
    h5_close(f);
    h5_quiet_end(quiet);
    free(config);
    free(created);
    free(program);
    return rc;
}
