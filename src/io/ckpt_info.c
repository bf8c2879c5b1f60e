// ckpt_info.c: `vqvae_dist info FILE`: the attributes, every /model tensor with its shape and
// statistics, the optimizer state, and the stored config; and what of it was verified. info
// checks everything it shows (the whole-file checksum, every dataset's checksum and values, the
// /optim layout) and says what it cannot check; a problem makes it fail after printing the rest.
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "config.h"
#include "ckpt_internal.h"

// What was read and what was wrong; the first problem's message goes to cx->err.
typedef struct {
    const CkptCtx *cx;
    int problems;
    int datasets;        // read and checked
    int64_t floats;
} InfoCheck;

__attribute__((format(printf, 2, 3))) static void problem(InfoCheck *ic, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    printf("PROBLEM: %s\n", msg);
    if (ic->problems++ == 0) set_error(ic->cx->err, ic->cx->err_len, "%s", msg);
}

typedef struct {
    int ndim;
    hsize_t dims[H5S_MAX_RANK];
    int64_t n, non_finite, negative;
    double lo, hi, l2;
} Stats;

// Reads dataset `name` of loc (HDF5 verifies its fletcher32 on the way) and summarizes it.
// Returns -1 only when the read itself fails; a bad value or layout is a problem, and 0.
static int check_dataset(hid_t loc, const char *name, const char *full, int non_negative, Stats *st, InfoCheck *ic) {
    const CkptCtx *cx = ic->cx;
    int rc = -1;
    hid_t dset = H5I_INVALID_HID, space = H5I_INVALID_HID, type = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    float *buf = NULL;
    memset(st, 0, sizeof *st);
    TRY_H5(cx, dset = H5Dopen2(loc, name, H5P_DEFAULT), full);
    TRY_H5(cx, space = H5Dget_space(dset), full);
    TRY_H5(cx, type = H5Dget_type(dset), full);
    TRY_H5(cx, dcpl = H5Dget_create_plist(dset), full);
    TRY_H5(cx, st->ndim = H5Sget_simple_extent_dims(space, st->dims, NULL), full);
    TRY_H5(cx, st->n = H5Sget_simple_extent_npoints(space), full);
    if (H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != sizeof(float))
        problem(ic, "'%s' in %s is not float32", full, cx->path);
    if (!ckpt_has_fletcher32(dcpl)) problem(ic, "'%s' in %s has no fletcher32 checksum: not verified", full, cx->path);
    buf = xmalloc((size_t)(st->n > 0 ? st->n : 1) * sizeof(float));
    if (H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        char inner[256];
        ckpt_h5_innermost(inner, sizeof inner);
        set_error(cx->err, cx->err_len, "checksum mismatch or unreadable data in dataset '%s' of %s (HDF5: %s): the "
                  "file is corrupt", full, cx->path, inner[0] ? inner : "read failed");
        goto cleanup;
    }
    st->lo = INFINITY, st->hi = -INFINITY;
    double sq = 0.0;
    for (int64_t j = 0; j < st->n; j++) {
        double x = buf[j];
        st->non_finite += !isfinite(x);
        st->negative += x < 0.0;
        st->lo = x < st->lo ? x : st->lo;
        st->hi = x > st->hi ? x : st->hi;
        sq += x * x;
    }
    st->l2 = sqrt(sq);
    if (st->non_finite)
        problem(ic, "'%s' in %s holds %lld non-finite values", full, cx->path, (long long)st->non_finite);
    if (non_negative && st->negative)
        problem(ic, "'%s' in %s holds %lld negative values", full, cx->path, (long long)st->negative);
    ic->datasets++;
    ic->floats += st->n;
    rc = 0;
cleanup:
    free(buf);
    ckpt_h5_close(dcpl);
    ckpt_h5_close(type);
    ckpt_h5_close(space);
    ckpt_h5_close(dset);
    return rc;
}

// The name of member i of g (by creation order when recorded, else by name).
static int member_name(hid_t g, hsize_t i, const char *g_name, char *name, size_t len, const CkptCtx *cx) {
    int rc = -1;
    hid_t gcpl = H5I_INVALID_HID;
    unsigned order = 0;
    TRY_H5(cx, gcpl = H5Gget_create_plist(g), g_name);
    TRY_H5(cx, H5Pget_link_creation_order(gcpl, &order), g_name);
    H5_index_t index = (order & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
    ssize_t n;
    TRY_H5(cx, n = H5Lget_name_by_idx(g, ".", index, H5_ITER_INC, i, name, len, H5P_DEFAULT), g_name);
    rc = (size_t)n < len ? 0 : set_error(cx->err, cx->err_len, "a member name of '%s' in %s is too long", g_name,
                                         cx->path);
cleanup:
    ckpt_h5_close(gcpl);
    return rc;
}

// One line per /model dataset: shape, count, min, max, L2 norm.
static int print_model(hid_t f, InfoCheck *ic) {
    const CkptCtx *cx = ic->cx;
    int rc = -1;
    hid_t model = H5I_INVALID_HID;
    H5G_info_t info;
    int64_t total = 0;
    TRY_H5(cx, model = H5Gopen2(f, "model", H5P_DEFAULT), "/model");
    TRY_H5(cx, H5Gget_info(model, &info), "/model");
    printf("%-56s %-18s %10s %12s %12s %12s\n", "tensor (/model)", "shape", "count", "min", "max", "L2 norm");
    for (hsize_t i = 0; i < info.nlinks; i++) {
        char name[256], full[300], shape_s[128];
        Stats st;
        if (member_name(model, i, "/model", name, sizeof name, cx) != 0) goto cleanup;
        snprintf(full, sizeof full, "/model/%s", name);
        if (check_dataset(model, name, full, 0, &st, ic) != 0) goto cleanup;
        ckpt_format_shape(shape_s, sizeof shape_s, st.ndim, st.dims);
        printf("%-56s %-18s %10lld %12.5g %12.5g %12.5g\n", name, shape_s, (long long)st.n, st.lo, st.hi, st.l2);
        total += st.n;
    }
    printf("parameters: %lld floats in %llu tensors\n", (long long)total, (unsigned long long)info.nlinks);
    rc = 0;
cleanup:
    ckpt_h5_close(model);
    return rc;
}

// The shape of dataset `name` of f; -1 when there is no such dataset.
static int dataset_shape(hid_t f, const char *name, int *ndim, hsize_t *dims) {
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) return -1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT), space = d >= 0 ? H5Dget_space(d) : H5I_INVALID_HID;
    *ndim = space >= 0 ? H5Sget_simple_extent_dims(space, dims, NULL) : -1;
    ckpt_h5_close(space);
    ckpt_h5_close(d);
    return *ndim >= 0 ? 0 : -1;
}

// /optim/<key>/{exp_avg, exp_avg_sq}: each read and checked, shaped like /model/<key>.
static int check_moments(hid_t f, hid_t g, const char *key, InfoCheck *ic) {
    static const char *const moments[2] = {"exp_avg", "exp_avg_sq"};
    const CkptCtx *cx = ic->cx;
    char full[400], model_key[300];
    snprintf(model_key, sizeof model_key, "model/%s", key);
    H5G_info_t info;
    TRY_H5(cx, H5Gget_info(g, &info), key);
    if (info.nlinks != 2) problem(ic, "'/optim/%s' in %s has %llu members, expected exp_avg and exp_avg_sq", key,
                                  cx->path, (unsigned long long)info.nlinks);
    int model_ndim = -1;
    hsize_t model_dims[H5S_MAX_RANK];
    if (dataset_shape(f, model_key, &model_ndim, model_dims) != 0)
        problem(ic, "'/optim/%s' in %s has no parameter '/model/%s'", key, cx->path, key);
    for (int m = 0; m < 2; m++) {
        snprintf(full, sizeof full, "/optim/%s/%s", key, moments[m]);
        Stats st;
        if (H5Lexists(g, moments[m], H5P_DEFAULT) <= 0) {
            problem(ic, "'%s' is missing from %s", full, cx->path);
            continue;
        }
        if (check_dataset(g, moments[m], full, m == 1, &st, ic) != 0) return -1;
        if (model_ndim >= 0 &&
            (st.ndim != model_ndim || memcmp(st.dims, model_dims, (size_t)model_ndim * sizeof(hsize_t)) != 0))
            problem(ic, "'%s' in %s is not shaped like '/model/%s'", full, cx->path, key);
    }
    return 0;
cleanup:
    return -1;
}

static int check_optim(hid_t f, InfoCheck *ic) {
    const CkptCtx *cx = ic->cx;
    int rc = -1, before = ic->datasets;
    hid_t optim = H5I_INVALID_HID, g = H5I_INVALID_HID;
    H5G_info_t info;
    TRY_H5(cx, optim = H5Gopen2(f, "optim", H5P_DEFAULT), "/optim");
    TRY_H5(cx, H5Gget_info(optim, &info), "/optim");
    for (hsize_t i = 0; i < info.nlinks; i++) {
        char key[256], full[300];
        if (member_name(optim, i, "/optim", key, sizeof key, cx) != 0) goto cleanup;
        snprintf(full, sizeof full, "/optim/%s", key);
        TRY_H5(cx, g = H5Gopen2(optim, key, H5P_DEFAULT), full);
        if (check_moments(f, g, key, ic) != 0) goto cleanup;
        ckpt_h5_close(g);
        g = H5I_INVALID_HID;
    }
    printf("optimizer state  exp_avg and exp_avg_sq of %llu parameters (%d datasets read and checked)\n",
           (unsigned long long)info.nlinks, ic->datasets - before);
    rc = 0;
cleanup:
    ckpt_h5_close(g);
    ckpt_h5_close(optim);
    return rc;
}

static void print_meta(const CheckpointMeta *m, const char *path) {
    printf("checkpoint       %s\n", path);
    printf("format           %s version %d\n", CKPT_FORMAT_NAME, CHECKPOINT_FORMAT_VERSION);
    printf("step             %lld (training steps done, skipped ones included)\n", (long long)m->step);
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
    if (m->codebook_restarts > 0) printf("codebook_restarts %d (dead codes restarted so far)\n", m->codebook_restarts);
    printf("created          %s\n", m->created);
    printf("program_version  %s\n", m->program_version);
    if (m->has_optim)
        printf("adam             %lld steps taken, lr %g, betas (%g, %g), eps %g, weight_decay %g\n",
               (long long)m->adam_step, (double)m->lr, (double)m->beta1, (double)m->beta2, (double)m->eps,
               (double)m->weight_decay);
    else
        printf("adam             (no optimizer state: the file can be evaluated, not resumed)\n");
}

// The stored config, and whether this program can use it.
static void print_config(const char *config, const char *written_by, InfoCheck *ic) {
    char unknown[400];
    int n = config_unknown_keys(config, unknown, sizeof unknown);
    printf("\nconfig:\n%s", config);
    if (config[0] && config[strlen(config) - 1] != '\n') printf("\n");
    if (n > 0) {
        printf("\nnote: %d key%s of this config %s unknown to this program (vqvae_dist %s): %s. It was written by "
               "vqvae_dist %s; eval and train --resume refuse it: use that version or newer.\n", n, n == 1 ? "" : "s",
               n == 1 ? "is" : "are", VQ_VERSION, unknown, written_by[0] ? written_by : "(unknown)");
        return;
    }
    Config cfg;
    char why[1024];
    if (config_load_string(&cfg, config, ic->cx->path, why, sizeof why) != 0)
        problem(ic, "the config stored in %s does not load: %s", ic->cx->path, why);
}

// A file of a newer format version: what can still be read (the config text and who wrote it).
static void print_newer(hid_t f, const CkptCtx *cx) {
    char ignored[256], written_by[32] = "", *config = NULL;
    CkptCtx quiet = {cx->path, ignored, sizeof ignored};
    printf("checkpoint       %s\n", cx->path);
    if (ckpt_attr_read(f, "/", "program_version", CKPT_ATTR_TEXT, written_by, sizeof written_by, &quiet) == 0)
        printf("program_version  %s\n", written_by);
    if (ckpt_attr_read_string(f, "/", "config", &config, &quiet) != 0) return;
    InfoCheck ic = {&quiet, 0, 0, 0};
    print_config(config, written_by, &ic);
    printf("\nnot checked      the rest of the file (see the error below)\n");
    free(config);
}

static void print_checks(int verified, const InfoCheck *ic) {
    printf("\n");
    if (verified)
        printf("checked          whole-file CRC-32: matches (attributes, config and layout as written)\n");
    else
        printf("NOT checked      no whole-file checksum (written by an older vqvae_dist or another program): the "
               "attributes and the config are not verified\n");
    printf("checked          %d datasets: fletcher32 checksums, float32, values finite (exp_avg_sq >= 0), %lld "
           "floats\n", ic->datasets, (long long)ic->floats);
    printf("not checked      whether the tensors fit the model of the stored config (eval and train --resume check "
           "that)\n");
}

int checkpoint_print_info(const char *path, char *err, size_t err_len) {
    CkptCtx ctx = {path, err, err_len}, *cx = &ctx;
    CkptQuiet quiet = ckpt_quiet_begin();
    InfoCheck ic = {cx, 0, 0, 0};
    int rc = -1, verified = 0;
    CheckpointMeta m;
    char *config = NULL;
    hid_t f = ckpt_open_unchecked(cx, &verified);
    if (f < 0) goto cleanup;
    if (ckpt_check_format(f, cx) != 0) {
        char why[1024];
        copy_string(why, sizeof why, err);   // reading what it can must not replace the reason
        print_newer(f, cx);
        copy_string(err, err_len, why);
        goto cleanup;
    }
    if (ckpt_read_meta_attrs(f, CKPT_OPTIM_IF_PRESENT, &m, &config, cx) != 0) goto cleanup;
    print_meta(&m, path);
    printf("\n");
    if (H5Lexists(f, "model", H5P_DEFAULT) <= 0) problem(&ic, "'/model' is missing from %s", path);
    else if (print_model(f, &ic) != 0) goto cleanup;
    if (m.has_optim && check_optim(f, &ic) != 0) goto cleanup;
    print_config(config, m.program_version, &ic);
    print_checks(verified, &ic);
    fflush(stdout);
    rc = ic.problems ? -1 : 0;
cleanup:
    ckpt_h5_close(f);
    ckpt_quiet_end(quiet);
    free(config);
    return rc;
}
