// h5dump.h: write plain arrays and scalar attributes to a new HDF5 file (debug dumps, `encode`).
// Every call is checked; failures are fatal with the file and dataset named.
#pragma once
#include <stdint.h>

typedef struct {
    int64_t file;   // hid_t
    char path[512];
} H5Dump;

void h5dump_create(H5Dump *f, const char *path);
void h5dump_group(H5Dump *f, const char *name);
void h5dump_f32(H5Dump *f, const char *name, const float *data, int ndim, const int64_t *dims);
void h5dump_i32(H5Dump *f, const char *name, const int32_t *data, int ndim, const int64_t *dims);
void h5dump_attr_f64(H5Dump *f, const char *name, double value);
void h5dump_close(H5Dump *f);
