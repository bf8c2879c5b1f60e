// ckpt_h5.c: HDF5 for checkpoints: errors, attributes, named float32 datasets, strict members.
//
// Every HDF5 call goes through TRY_H5, which turns a failure into an error message (call, object,
// file, source line, and HDF5's own innermost reason) and jumps to the function's cleanup label,
// where every handle opened so far is closed.
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "ckpt_internal.h"

// One chunk holds a whole dataset (one checksum, one read) unless it is larger than this; then
// the outer dimensions are split. HDF5's hard limit is 4 GiB per chunk.
enum { CKPT_CHUNK_MAX_BYTES = 16 << 20 };

// ---- errors and handles --------------------------------------------------------------------

// VQ_HDF5_ERRORS=1 leaves HDF5's own report on (to debug HDF5 itself); our message comes as well.
static int hdf5_errors_wanted(void) {
    const char *v = getenv("VQ_HDF5_ERRORS");
    return v && *v && strcmp(v, "0") != 0;
}

CkptQuiet ckpt_quiet_begin(void) {
    CkptQuiet q = {NULL, NULL};
    H5Eget_auto2(H5E_DEFAULT, &q.func, &q.data);
    if (!hdf5_errors_wanted()) H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return q;
}

void ckpt_quiet_end(CkptQuiet q) { H5Eset_auto2(H5E_DEFAULT, q.func, q.data); }

typedef struct {
    char *buf;
    size_t len;
} ErrText;

static herr_t innermost_cb(unsigned n, const H5E_error2_t *e, void *data) {
    ErrText *t = data;
    if (n == 0 && e->desc) copy_string(t->buf, t->len, e->desc);   // n == 0: where it was detected
    return 0;
}

void ckpt_h5_innermost(char *buf, size_t len) {
    buf[0] = '\0';
    ErrText t = {buf, len};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_cb, &t);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

// expr is the stringified call, e.g. "d = H5Dopen2(g, key, H5P_DEFAULT)": report just "H5Dopen2".
void ckpt_h5_fail(const CkptCtx *cx, const char *expr, const char *object, const char *src, int line) {
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
    ckpt_h5_innermost(inner, sizeof inner);
    set_error(cx->err, cx->err_len, "%s(...) failed for '%s' in %s at %s:%d%s%s", fn, object, cx->path,
              base_name(src), line, inner[0] ? ": " : "", inner);
}

void ckpt_h5_close(hid_t id) {
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

// ---- attributes ----------------------------------------------------------------------------

// File and memory types of a numeric attribute type.
static void attr_types(CkptAttrType type, hid_t *file_type, hid_t *mem_type) {
    switch (type) {
    case CKPT_ATTR_I64: *file_type = H5T_STD_I64LE; *mem_type = H5T_NATIVE_INT64; break;
    case CKPT_ATTR_U64: *file_type = H5T_STD_U64LE; *mem_type = H5T_NATIVE_UINT64; break;
    case CKPT_ATTR_INT: *file_type = H5T_STD_I64LE; *mem_type = H5T_NATIVE_INT; break;
    case CKPT_ATTR_F32: *file_type = H5T_IEEE_F32LE; *mem_type = H5T_NATIVE_FLOAT; break;
    default: *file_type = H5T_IEEE_F64LE; *mem_type = H5T_NATIVE_DOUBLE; break;
    }
}

int ckpt_attr_write(hid_t loc, const char *loc_name, const char *name, CkptAttrType type, const void *value,
                    const CkptCtx *cx) {
    int rc = -1;
    hid_t space = H5I_INVALID_HID, attr = H5I_INVALID_HID, str = H5I_INVALID_HID, file_type, mem_type;
    const char *text = value;
    if (type == CKPT_ATTR_TEXT) {
        TRY_H5(cx, str = H5Tcopy(H5T_C_S1), loc_name);
        TRY_H5(cx, H5Tset_size(str, H5T_VARIABLE), loc_name);
        TRY_H5(cx, H5Tset_cset(str, H5T_CSET_UTF8), loc_name);
        file_type = mem_type = str;
        value = &text;   // variable-length strings are written from a char *
    } else {
        attr_types(type, &file_type, &mem_type);
    }
    TRY_H5(cx, space = H5Screate(H5S_SCALAR), loc_name);
    TRY_H5(cx, attr = H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT), loc_name);
    TRY_H5(cx, H5Awrite(attr, mem_type, value), loc_name);
    rc = 0;
cleanup:
    ckpt_h5_close(attr);
    ckpt_h5_close(space);
    ckpt_h5_close(str);
    return rc;
}

int ckpt_attr_exists(hid_t loc, const char *loc_name, const char *name, const CkptCtx *cx) {
    htri_t exists;
    TRY_H5(cx, exists = H5Aexists(loc, name), loc_name);
    return exists > 0;
cleanup:
    return -1;
}

// Opens attribute `name` on loc after checking it exists and holds exactly one value.
static hid_t open_attr(hid_t loc, const char *loc_name, const char *name, const CkptCtx *cx) {
    hid_t attr = H5I_INVALID_HID, space = H5I_INVALID_HID;
    hssize_t npoints;
    int exists = ckpt_attr_exists(loc, loc_name, name, cx);
    if (exists < 0) return H5I_INVALID_HID;
    if (!exists) {
        set_error(cx->err, cx->err_len, "attribute '%s' is missing on '%s' in %s: the file is not a complete "
                  "vqvae_dist checkpoint", name, loc_name, cx->path);
        return H5I_INVALID_HID;
    }
    TRY_H5(cx, attr = H5Aopen(loc, name, H5P_DEFAULT), loc_name);
    TRY_H5(cx, space = H5Aget_space(attr), loc_name);
    TRY_H5(cx, npoints = H5Sget_simple_extent_npoints(space), loc_name);
    if (npoints != 1) {
        set_error(cx->err, cx->err_len, "attribute '%s' on '%s' in %s holds %lld values, expected one", name, loc_name,
                  cx->path, (long long)npoints);
        goto cleanup;
    }
    ckpt_h5_close(space);
    return attr;
cleanup:
    ckpt_h5_close(space);
    ckpt_h5_close(attr);
    return H5I_INVALID_HID;
}

int ckpt_attr_read_string(hid_t loc, const char *loc_name, const char *name, char **out, const CkptCtx *cx) {
    int rc = -1;
    hid_t attr = H5I_INVALID_HID, ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID;
    char *vlen = NULL;
    *out = NULL;
    if ((attr = open_attr(loc, loc_name, name, cx)) < 0) goto cleanup;
    TRY_H5(cx, ftype = H5Aget_type(attr), loc_name);
    if (H5Tget_class(ftype) != H5T_STRING) {
        set_error(cx->err, cx->err_len, "attribute '%s' on '%s' in %s is not a string", name, loc_name, cx->path);
        goto cleanup;
    }
    htri_t is_vlen;
    H5T_cset_t cset;
    TRY_H5(cx, is_vlen = H5Tis_variable_str(ftype), loc_name);
    TRY_H5(cx, cset = H5Tget_cset(ftype), loc_name);
    TRY_H5(cx, mtype = H5Tcopy(H5T_C_S1), loc_name);
    TRY_H5(cx, H5Tset_cset(mtype, cset), loc_name);   // same character set: no conversion needed
    if (is_vlen) {
        TRY_H5(cx, H5Tset_size(mtype, H5T_VARIABLE), loc_name);
        TRY_H5(cx, H5Aread(attr, mtype, &vlen), loc_name);
        *out = xstrdup(vlen ? vlen : "");
    } else {
        size_t n = H5Tget_size(ftype);
        TRY_H5(cx, H5Tset_size(mtype, n + 1), loc_name);
        TRY_H5(cx, H5Tset_strpad(mtype, H5T_STR_NULLTERM), loc_name);
        *out = xcalloc(n + 2, 1);
        TRY_H5(cx, H5Aread(attr, mtype, *out), loc_name);
    }
    rc = 0;
cleanup:
    if (vlen) H5free_memory(vlen);
    if (rc != 0) {
        free(*out);
        *out = NULL;
    }
    ckpt_h5_close(mtype);
    ckpt_h5_close(ftype);
    ckpt_h5_close(attr);
    return rc;
}

static int read_attr_text(hid_t loc, const char *loc_name, const char *name, char *dst, size_t dst_len,
                          const CkptCtx *cx) {
    char *s = NULL;
    if (ckpt_attr_read_string(loc, loc_name, name, &s, cx) != 0) return -1;
    int rc = 0;
    if (copy_string(dst, dst_len, s) != 0)
        rc = set_error(cx->err, cx->err_len, "attribute '%s' on '%s' in %s is too long ('%.60s', at most %zu "
                       "characters)", name, loc_name, cx->path, s, dst_len - 1);
    free(s);
    return rc;
}

int ckpt_attr_read(hid_t loc, const char *loc_name, const char *name, CkptAttrType type, void *out, size_t out_size,
                   const CkptCtx *cx) {
    if (type == CKPT_ATTR_TEXT) return read_attr_text(loc, loc_name, name, out, out_size, cx);
    int rc = -1, want_integer = type == CKPT_ATTR_I64 || type == CKPT_ATTR_U64 || type == CKPT_ATTR_INT;
    hid_t attr = H5I_INVALID_HID, ftype = H5I_INVALID_HID, file_type, mem_type;
    attr_types(type, &file_type, &mem_type);
    if ((attr = open_attr(loc, loc_name, name, cx)) < 0) goto cleanup;
    TRY_H5(cx, ftype = H5Aget_type(attr), loc_name);
    H5T_class_t cls = H5Tget_class(ftype);
    if (!(cls == H5T_INTEGER || (!want_integer && cls == H5T_FLOAT))) {
        set_error(cx->err, cx->err_len, "attribute '%s' on '%s' in %s is not %s", name, loc_name, cx->path,
                  want_integer ? "an integer" : "a number");
        goto cleanup;
    }
    if (type == CKPT_ATTR_INT) {   // stored as int64: refuse what does not fit rather than clip it
        int64_t wide;
        TRY_H5(cx, H5Aread(attr, H5T_NATIVE_INT64, &wide), loc_name);
        if (wide < INT_MIN || wide > INT_MAX) {
            set_error(cx->err, cx->err_len, "attribute '%s' on '%s' in %s is %lld, out of range", name, loc_name,
                      cx->path, (long long)wide);
            goto cleanup;
        }
        *(int *)out = (int)wide;
    } else {
        TRY_H5(cx, H5Aread(attr, mem_type, out), loc_name);
    }
    rc = 0;
cleanup:
    ckpt_h5_close(ftype);
    ckpt_h5_close(attr);
    return rc;
}

// ---- datasets ------------------------------------------------------------------------------

int64_t ckpt_tensor_count(const CkptTensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

void ckpt_format_shape(char *buf, size_t len, int ndim, const hsize_t *dims) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%llu", i ? ", " : "[", (unsigned long long)dims[i]);
    if (used < len) snprintf(buf + used, len - used, ndim ? "]" : "[]");
}

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

// The parent groups of name ("optim/<key>/exp_avg": "optim", "optim/<key>"), created when missing.
static int make_parents(hid_t f, const char *name, const CkptCtx *cx) {
    int rc = -1;
    hid_t gcpl = H5I_INVALID_HID, g = H5I_INVALID_HID;
    char group[CKPT_NAME_MAX + 1];
    TRY_H5(cx, gcpl = H5Pcreate(H5P_GROUP_CREATE), name);
    // Track creation order so tools can list tensors in the caller's (state_dict) order.
    TRY_H5(cx, H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED), name);
    for (const char *slash = strchr(name, '/'); slash; slash = strchr(slash + 1, '/')) {
        snprintf(group, sizeof group, "%.*s", (int)(slash - name), name);
        htri_t exists;
        TRY_H5(cx, exists = H5Lexists(f, group, H5P_DEFAULT), group);
        if (exists) continue;
        TRY_H5(cx, g = H5Gcreate2(f, group, H5P_DEFAULT, gcpl, H5P_DEFAULT), group);
        ckpt_h5_close(g);
        g = H5I_INVALID_HID;
    }
    rc = 0;
cleanup:
    ckpt_h5_close(g);
    ckpt_h5_close(gcpl);
    return rc;
}

int ckpt_h5_dataset_write(hid_t f, const CkptDataset *d, const CkptCtx *cx) {
    int rc = -1;
    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    TRY_H5(cx, space = H5Screate_simple(d->ndim, d->dims, NULL), d->object);
    TRY_H5(cx, dcpl = H5Pcreate(H5P_DATASET_CREATE), d->object);
    if (!d->times) TRY_H5(cx, H5Pset_obj_track_times(dcpl, 0), d->object);
    TRY_H5(cx, H5Pset_chunk(dcpl, d->ndim, d->chunk), d->object);
    if (d->gzip_level > 0) TRY_H5(cx, H5Pset_deflate(dcpl, (unsigned)d->gzip_level), d->object);
    TRY_H5(cx, H5Pset_fletcher32(dcpl), d->object);
    TRY_H5(cx, dset = H5Dcreate2(f, d->name, d->file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), d->object);
    TRY_H5(cx, H5Dwrite(dset, d->mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, d->data), d->object);
    rc = 0;
cleanup:
    ckpt_h5_close(dset);
    ckpt_h5_close(dcpl);
    ckpt_h5_close(space);
    return rc;
}

int ckpt_dataset_write(hid_t f, const CkptTensor *t, const CkptCtx *cx) {
    hsize_t dims[CKPT_MAX_DIMS], chunk[CKPT_MAX_DIMS];
    char full[CKPT_NAME_MAX + 1];
    snprintf(full, sizeof full, "/%s", t->name);
    for (int i = 0; i < t->ndim; i++) dims[i] = (hsize_t)t->shape[i];
    chunk_dims(t->ndim, dims, chunk);
    if (make_parents(f, t->name, cx) != 0) return -1;
    CkptDataset d = {t->name, full, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t->ndim, dims, chunk, 0, 1, t->data};
    return ckpt_h5_dataset_write(f, &d, cx);
}

// 0 when every group on the way to t and t itself exist; else an error naming the first missing.
static int check_exists(hid_t f, const CkptTensor *t, const char *full, const CkptCtx *cx) {
    char part[CKPT_NAME_MAX + 1];
    for (const char *p = t->name;; p++) {
        if (*p != '/' && *p != '\0') continue;
        snprintf(part, sizeof part, "%.*s", (int)(p - t->name), t->name);
        htri_t exists;
        TRY_H5(cx, exists = H5Lexists(f, part, H5P_DEFAULT), full);
        if (!exists)
            return set_error(cx->err, cx->err_len, "'/%s' is missing from %s: the checkpoint was written for another "
                             "model configuration, or is incomplete", part, cx->path);
        if (*p == '\0') return 0;
    }
cleanup:
    return -1;
}

static int check_type_and_shape(hid_t dset, const CkptTensor *t, const char *full, const CkptCtx *cx) {
    int rc = -1;
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    TRY_H5(cx, type = H5Dget_type(dset), full);
    if (H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != sizeof(float)) {
        set_error(cx->err, cx->err_len, "'%s' in %s is not float32 (HDF5 class %d, %zu bytes); store it as float32 "
                  "(in h5py: data.astype(numpy.float32))", full, cx->path, (int)H5Tget_class(type),
                  H5Tget_size(type));
        goto cleanup;
    }
    TRY_H5(cx, space = H5Dget_space(dset), full);
    int ndim;
    hsize_t dims[H5S_MAX_RANK], want[CKPT_MAX_DIMS];
    TRY_H5(cx, ndim = H5Sget_simple_extent_dims(space, dims, NULL), full);
    int same = ndim == t->ndim;
    for (int i = 0; i < t->ndim; i++) {
        want[i] = (hsize_t)t->shape[i];
        if (same && dims[i] != want[i]) same = 0;
    }
    if (!same) {
        char got_s[128], want_s[128];
        ckpt_format_shape(got_s, sizeof got_s, ndim, dims);
        ckpt_format_shape(want_s, sizeof want_s, t->ndim, want);
        set_error(cx->err, cx->err_len, "'%s' has shape %s, expected %s for this config in %s; the checkpoint was "
                  "written for another model configuration (model.* or quantizer.num_embeddings; `vqvae_dist info` "
                  "shows its config)", full, got_s, want_s, cx->path);
        goto cleanup;
    }
    rc = 0;
cleanup:
    ckpt_h5_close(space);
    ckpt_h5_close(type);
    return rc;
}

int ckpt_dataset_read(hid_t f, const CkptTensor *t, float *out, const CkptCtx *cx) {
    int rc = -1;
    hid_t dset = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, dxpl = H5I_INVALID_HID;
    char full[CKPT_NAME_MAX + 1];
    snprintf(full, sizeof full, "/%s", t->name);
    if (check_exists(f, t, full, cx) != 0) goto cleanup;
    TRY_H5(cx, dset = H5Dopen2(f, t->name, H5P_DEFAULT), full);
    if (check_type_and_shape(dset, t, full, cx) != 0) goto cleanup;
    TRY_H5(cx, dcpl = H5Dget_create_plist(dset), full);
    if (!ckpt_has_fletcher32(dcpl)) {
        set_error(cx->err, cx->err_len, "'%s' in %s has no fletcher32 checksum, so it cannot be verified; write it "
                  "chunked with the checksum (in h5py: create_dataset(..., fletcher32=True))", full, cx->path);
        goto cleanup;
    }
    TRY_H5(cx, dxpl = H5Pcreate(H5P_DATASET_XFER), full);
    TRY_H5(cx, H5Pset_edc_check(dxpl, H5Z_ENABLE_EDC), full);   // the default, but this is the point
    if (H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, dxpl, out) < 0) {
        char inner[256];
        ckpt_h5_innermost(inner, sizeof inner);
        set_error(cx->err, cx->err_len, "checksum mismatch or unreadable data in dataset '%s' of %s (HDF5: %s): the "
                  "file is corrupt; use an older checkpoint", full,
                  cx->path, inner[0] ? inner : "read failed");
        goto cleanup;
    }
    if (ckpt_check_values(full, out, ckpt_tensor_count(t), t->non_negative, cx) != 0) goto cleanup;
    rc = 0;
cleanup:
    ckpt_h5_close(dxpl);
    ckpt_h5_close(dcpl);
    ckpt_h5_close(dset);
    return rc;
}

// ---- strict members ------------------------------------------------------------------------

// 1 when path names a wanted tensor or a group on the way to one.
static int is_wanted(const char *path, const CkptTensor *tensors, const int *wanted, int count) {
    size_t n = strlen(path);
    for (int i = 0; i < count; i++) {
        if (!wanted[i]) continue;
        const char *name = tensors[i].name;
        if (strncmp(name, path, n) == 0 && (name[n] == '\0' || name[n] == '/')) return 1;
    }
    return 0;
}

// Error naming (up to a few of) the members of group that are not wanted.
static int check_group(hid_t f, const char *group, const CkptTensor *tensors, const int *wanted, int count,
                       const CkptCtx *cx) {
    int rc = -1, unknown = 0;
    hid_t g = H5I_INVALID_HID;
    H5G_info_t info;
    char names[512] = "", full[CKPT_NAME_MAX + 1];
    size_t used = 0;
    snprintf(full, sizeof full, "/%s", group);
    TRY_H5(cx, g = H5Gopen2(f, group, H5P_DEFAULT), full);
    TRY_H5(cx, H5Gget_info(g, &info), full);
    for (hsize_t i = 0; i < info.nlinks; i++) {
        char name[CKPT_NAME_MAX], path[2 * CKPT_NAME_MAX + 2];
        ssize_t n;
        TRY_H5(cx, n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT),
               full);
        snprintf(path, sizeof path, "%s/%s", group, name);
        if ((size_t)n < sizeof name && is_wanted(path, tensors, wanted, count)) continue;
        if (unknown++ < 4 && used < sizeof names)
            used += (size_t)snprintf(names + used, sizeof names - used, "%s'/%s%s'", unknown > 1 ? ", " : "", path,
                                     (size_t)n >= sizeof name ? "..." : "");
    }
    if (unknown) {
        set_error(cx->err, cx->err_len, "%s has %d entr%s in %s that this model does not have: %s%s; the checkpoint "
                  "was written for another model configuration (loading is strict, like "
                  "load_state_dict(strict=True))", cx->path, unknown, unknown == 1 ? "y" : "ies", full, names,
                  unknown > 4 ? ", ..." : "");
        goto cleanup;
    }
    rc = 0;
cleanup:
    ckpt_h5_close(g);
    return rc;
}

int ckpt_check_members(hid_t f, const CkptTensor *tensors, const int *wanted, int count, const CkptCtx *cx) {
    // Each group on the way to a wanted tensor, checked once (the first tensor that passes it).
    for (int i = 0; i < count; i++) {
        if (!wanted[i]) continue;
        const char *name = tensors[i].name;
        for (const char *slash = strchr(name, '/'); slash; slash = strchr(slash + 1, '/')) {
            size_t n = (size_t)(slash - name);
            int seen = 0;
            for (int j = 0; j < i && !seen; j++)
                seen = wanted[j] && strncmp(tensors[j].name, name, n + 1) == 0;
            if (seen) continue;
            char group[CKPT_NAME_MAX];
            snprintf(group, sizeof group, "%.*s", (int)n, name);
            if (check_group(f, group, tensors, wanted, count, cx) != 0) return -1;
        }
    }
    return 0;
}
