// ckpt_info.c: `vqvae_dist info FILE`: the attributes, every /model tensor with its shape and
// statistics (each read verifies its checksum), and the stored config.
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "ckpt_internal.h"

static void print_meta(const CheckpointMeta *m, const char *path) {
    printf("checkpoint       %s\n", path);
    printf("format           %s version %d\n", CKPT_FORMAT_NAME, CHECKPOINT_FORMAT_VERSION);
    printf("step             %lld\n", (long long)m->step);
    printf("epoch            %lld (offset %lld)\n", (long long)m->epoch, (long long)m->epoch_offset);
    printf("samples_seen     %lld\n", (long long)m->samples_seen);
    printf("seed             %" PRIu64 "\n", m->seed);
    printf("world_size       %d\n", m->world_size);
    printf("arch             %s\n", m->arch);
    printf("quantizer        %s\n", m->quantizer);
    if (isnan(m->data_variance)) printf("data_variance    (unknown: not stored by the program that wrote it)\n");
    else printf("data_variance    %.9g\n", m->data_variance);
    if (m->image_channels > 0)
        printf("image            %d x %d x %d (channels x height x width)\n", m->image_channels, m->image_height,
               m->image_width);
    else
        printf("image            (unknown: not stored by the program that wrote it)\n");
    printf("created          %s\n", m->created);
    printf("program_version  %s\n", m->program_version);
    if (m->has_optim)
        printf("adam             step %lld, lr %g, betas (%g, %g), eps %g, weight_decay %g\n",
               (long long)m->adam_step, (double)m->lr, (double)m->beta1, (double)m->beta2, (double)m->eps,
               (double)m->weight_decay);
    else
        printf("adam             (no optimizer state)\n");
}

// One dataset of /model: read (verifying its checksum), one table line.
static int print_tensor(hid_t model, const char *name, int64_t *total, const CkptCtx *cx) {
    int rc = -1;
    hid_t dset = H5I_INVALID_HID, space = H5I_INVALID_HID;
    float *buf = NULL;
    char full[300], shape_s[128];
    snprintf(full, sizeof full, "/model/%s", name);
    TRY_H5(cx, dset = H5Dopen2(model, name, H5P_DEFAULT), full);
    TRY_H5(cx, space = H5Dget_space(dset), full);
    hsize_t dims[H5S_MAX_RANK];
    int ndim;
    hssize_t n;
    TRY_H5(cx, ndim = H5Sget_simple_extent_dims(space, dims, NULL), full);
    TRY_H5(cx, n = H5Sget_simple_extent_npoints(space), full);
    buf = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        char inner[256];
        ckpt_h5_innermost(inner, sizeof inner);
        set_error(cx->err, cx->err_len, "checksum mismatch or unreadable data in dataset '%s' of %s (HDF5: %s): the "
                  "file is corrupt", full, cx->path, inner[0] ? inner : "read failed");
        goto cleanup;
    }
    double lo = INFINITY, hi = -INFINITY, sq = 0.0;
    for (hssize_t j = 0; j < n; j++) {
        double x = buf[j];
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
        sq += x * x;
    }
    ckpt_format_shape(shape_s, sizeof shape_s, ndim, dims);
    printf("%-56s %-18s %10lld %12.5g %12.5g %12.5g\n", name, shape_s, (long long)n, lo, hi, sqrt(sq));
    *total += n;
    rc = 0;
cleanup:
    free(buf);
    ckpt_h5_close(space);
    ckpt_h5_close(dset);
    return rc;
}

// One line per /model dataset: shape, count, min, max, L2 norm.
static int print_tensors(hid_t f, const CkptCtx *cx) {
    int rc = -1;
    hid_t model = H5I_INVALID_HID, gcpl = H5I_INVALID_HID;
    H5G_info_t info;
    unsigned order_flags = 0;
    int64_t total = 0;
    htri_t exists;
    TRY_H5(cx, exists = H5Lexists(f, "model", H5P_DEFAULT), "/model");
    if (!exists) {
        set_error(cx->err, cx->err_len, "'/model' is missing from %s", cx->path);
        goto cleanup;
    }
    TRY_H5(cx, model = H5Gopen2(f, "model", H5P_DEFAULT), "/model");
    TRY_H5(cx, gcpl = H5Gget_create_plist(model), "/model");
    TRY_H5(cx, H5Pget_link_creation_order(gcpl, &order_flags), "/model");
    // Registration (state_dict) order when the file recorded it, else by name.
    H5_index_t index = (order_flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
    TRY_H5(cx, H5Gget_info(model, &info), "/model");
    printf("%-56s %-18s %10s %12s %12s %12s\n", "tensor (/model)", "shape", "count", "min", "max", "L2 norm");
    for (hsize_t i = 0; i < info.nlinks; i++) {
        char name[256];
        TRY_H5(cx, H5Lget_name_by_idx(model, ".", index, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT), "/model");
        if (print_tensor(model, name, &total, cx) != 0) goto cleanup;
    }
    printf("parameters: %lld floats in %llu tensors\n", (long long)total, (unsigned long long)info.nlinks);
    rc = 0;
cleanup:
    ckpt_h5_close(gcpl);
    ckpt_h5_close(model);
    return rc;
}

int checkpoint_print_info(const char *path, char *err, size_t err_len) {
    CkptCtx ctx = {path, err, err_len}, *cx = &ctx;
    CkptQuiet quiet = ckpt_quiet_begin();
    int rc = -1;
    CheckpointMeta m;
    char *config = NULL;
    hid_t f = ckpt_open(cx, NULL);
    if (f < 0 || ckpt_read_meta_attrs(f, CKPT_OPTIM_IF_PRESENT, &m, &config, cx) != 0) goto cleanup;
    print_meta(&m, path);
    printf("\n");
    if (print_tensors(f, cx) != 0) goto cleanup;
    printf("\nconfig:\n%s", config);
    if (config[0] && config[strlen(config) - 1] != '\n') printf("\n");
    fflush(stdout);
    rc = 0;
cleanup:
    ckpt_h5_close(f);
    ckpt_quiet_end(quiet);
    free(config);
    return rc;
}
