// h5dump.c: see h5dump.h.
#include "h5dump.h"

#include <hdf5.h>

#include "../core/common.h"

#define H5_CHECK(call, f, what)                                                                      \
    do {                                                                                           \
        if ((call) < 0) fatal_at(__FILE__, __LINE__, "%s failed for '%s' in '%s'", #call, what, (f)->path); \
    } while (0)

void h5dump_create(H5Dump *f, const char *path) {
    copy_string(f->path, sizeof f->path, path);
    hid_t id = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (id < 0) fatal("cannot create HDF5 file '%s'; check the folder exists and is writable", path);
    f->file = id;
}

void h5dump_group(H5Dump *f, const char *name) {
    hid_t g = H5Gcreate2((hid_t)f->file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(g, f, name);
    H5_CHECK(H5Gclose(g), f, name);
}

static void write_array(H5Dump *f, const char *name, hid_t file_type, hid_t mem_type, const void *data, int ndim,
                        const int64_t *dims) {
    hsize_t hdims[8];
    CHECK(ndim >= 1 && ndim <= 8, "bad rank %d for '%s'", ndim, name);
    for (int i = 0; i < ndim; i++) hdims[i] = (hsize_t)dims[i];
    hid_t space = H5Screate_simple(ndim, hdims, NULL);
    H5_CHECK(space, f, name);
    hid_t set = H5Dcreate2((hid_t)f->file, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(set, f, name);
    H5_CHECK(H5Dwrite(set, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), f, name);
    H5_CHECK(H5Dclose(set), f, name);
    H5_CHECK(H5Sclose(space), f, name);
}

void h5dump_f32(H5Dump *f, const char *name, const float *data, int ndim, const int64_t *dims) {
    write_array(f, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data, ndim, dims);
}

void h5dump_i32(H5Dump *f, const char *name, const int32_t *data, int ndim, const int64_t *dims) {
    write_array(f, name, H5T_STD_I32LE, H5T_NATIVE_INT32, data, ndim, dims);
}

void h5dump_attr_f64(H5Dump *f, const char *name, double value) {
    hid_t space = H5Screate(H5S_SCALAR);
    H5_CHECK(space, f, name);
    hid_t attr = H5Acreate2((hid_t)f->file, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(attr, f, name);
    H5_CHECK(H5Awrite(attr, H5T_NATIVE_DOUBLE, &value), f, name);
    H5_CHECK(H5Aclose(attr), f, name);
    H5_CHECK(H5Sclose(space), f, name);
}

void h5dump_close(H5Dump *f) {
    H5_CHECK(H5Fclose((hid_t)f->file), f, "file");
    f->file = -1;
}
