// ckpt_file.c: one checkpoint file: the table of metadata attributes, save, load, read_meta.
// Loading never exits: a bad file is an error the caller can recover from (`--resume auto` then
// tries the previous checkpoint).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/common.h"
#include "ckpt_internal.h"

// ---- the metadata table --------------------------------------------------------------------

typedef struct {
    const char *name;
    CkptAttrType type;
    size_t offset, size;
    int optional;   // files written before it existed lack it: it stays "unknown" (checkpoint_meta_init)
} MetaField;

#define META(f) offsetof(CheckpointMeta, f), sizeof(((CheckpointMeta *)0)->f)

static const MetaField ROOT_FIELDS[] = {
    {"step", CKPT_ATTR_I64, META(step), 0},
    {"epoch", CKPT_ATTR_I64, META(epoch), 0},
    {"epoch_offset", CKPT_ATTR_I64, META(epoch_offset), 0},
    {"samples_seen", CKPT_ATTR_I64, META(samples_seen), 0},
    {"seed", CKPT_ATTR_U64, META(seed), 0},
    {"world_size", CKPT_ATTR_INT, META(world_size), 0},
    {"arch", CKPT_ATTR_TEXT, META(arch), 0},
    {"quantizer", CKPT_ATTR_TEXT, META(quantizer), 0},
    {"data_variance", CKPT_ATTR_F64, META(data_variance), 1},
    {"image_channels", CKPT_ATTR_INT, META(image_channels), 1},
    {"image_height", CKPT_ATTR_INT, META(image_height), 1},
    {"image_width", CKPT_ATTR_INT, META(image_width), 1},
    {"codebook_restarts", CKPT_ATTR_INT, META(codebook_restarts), 1},
};

static const MetaField OPTIM_FIELDS[] = {
    {"step", CKPT_ATTR_I64, META(adam_step), 0},
    {"lr", CKPT_ATTR_F32, META(lr), 0},
    {"beta1", CKPT_ATTR_F32, META(beta1), 0},
    {"beta2", CKPT_ATTR_F32, META(beta2), 0},
    {"eps", CKPT_ATTR_F32, META(eps), 0},
    {"weight_decay", CKPT_ATTR_F32, META(weight_decay), 0},
};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

void checkpoint_meta_init(CheckpointMeta *meta) {
    memset(meta, 0, sizeof *meta);
    meta->data_variance = NAN;
}

static int write_fields(hid_t loc, const char *loc_name, const MetaField *fields, int n, const CheckpointMeta *meta,
                        const CkptCtx *cx) {
    for (int i = 0; i < n; i++) {
        const MetaField *m = &fields[i];
        const char *value = (const char *)meta + m->offset;
        if (m->optional && m->type == CKPT_ATTR_F64 && isnan(*(const double *)value)) continue;   // unknown
        if (m->optional && m->type == CKPT_ATTR_INT && *(const int *)value == 0) continue;
        char text[64];
        if (m->type == CKPT_ATTR_TEXT) {   // a full field may lack its terminator
            snprintf(text, sizeof text, "%.*s", (int)m->size, value);
            value = text;
        }
        if (ckpt_attr_write(loc, loc_name, m->name, m->type, value, cx) != 0) return -1;
    }
    return 0;
}

static int read_fields(hid_t loc, const char *loc_name, const MetaField *fields, int n, CheckpointMeta *meta,
                       const CkptCtx *cx) {
    for (int i = 0; i < n; i++) {
        const MetaField *m = &fields[i];
        if (m->optional) {
            int exists = ckpt_attr_exists(loc, loc_name, m->name, cx);
            if (exists < 0) return -1;
            if (!exists) continue;
        }
        if (ckpt_attr_read(loc, loc_name, m->name, m->type, (char *)meta + m->offset, m->size, cx) != 0) return -1;
    }
    return 0;
}

static int check_meta(const CheckpointMeta *m, const CkptCtx *cx) {
    if (m->world_size < 1 || m->step < 0 || m->epoch < 0 || m->epoch_offset < 0 || m->samples_seen < 0)
        return set_error(cx->err, cx->err_len, "checkpoint '%s' has invalid progress attributes (step %lld, epoch "
                         "%lld, epoch_offset %lld, samples_seen %lld, world_size %d): the file is corrupt", cx->path,
                         (long long)m->step, (long long)m->epoch, (long long)m->epoch_offset,
                         (long long)m->samples_seen, m->world_size);
    if (!isnan(m->data_variance) && !(isfinite(m->data_variance) && m->data_variance > 0))
        return set_error(cx->err, cx->err_len, "checkpoint '%s' has data_variance %g; it must be a positive number: "
                         "the file is corrupt", cx->path, m->data_variance);
    if (m->image_channels < 0 || m->image_height < 0 || m->image_width < 0)
        return set_error(cx->err, cx->err_len, "checkpoint '%s' has a negative image shape (%d x %d x %d): the file is "
                         "corrupt", cx->path, m->image_channels, m->image_height, m->image_width);
    return 0;
}

static int is_optim(const CkptTensor *t) { return strncmp(t->name, "optim/", 6) == 0; }

// ---- save ----------------------------------------------------------------------------------

static void iso8601_now(char *buf, size_t len) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

// Everything into an already created file f. Handles opened here are closed here.
static int write_contents(hid_t f, const CkptTensor *tensors, int count, const CheckpointMeta *meta,
                          const char *config_yaml, const CkptCtx *cx) {
    int rc = -1, with_optim = 0;
    int64_t version = CHECKPOINT_FORMAT_VERSION;
    hid_t optim = H5I_INVALID_HID;
    char created[32];
    iso8601_now(created, sizeof created);
    if (ckpt_attr_write(f, "/", "format", CKPT_ATTR_TEXT, CKPT_FORMAT_NAME, cx) ||
        ckpt_attr_write(f, "/", "version", CKPT_ATTR_I64, &version, cx) ||
        write_fields(f, "/", ROOT_FIELDS, COUNT(ROOT_FIELDS), meta, cx) ||
        ckpt_attr_write(f, "/", "created", CKPT_ATTR_TEXT, created, cx) ||
        ckpt_attr_write(f, "/", "program_version", CKPT_ATTR_TEXT, VQ_VERSION, cx) ||
        ckpt_attr_write(f, "/", "config", CKPT_ATTR_TEXT, config_yaml ? config_yaml : "", cx))
        goto cleanup;
    for (int i = 0; i < count; i++) {
        if (ckpt_dataset_write(f, &tensors[i], cx) != 0) goto cleanup;
        with_optim |= is_optim(&tensors[i]);
    }
    if (with_optim) {
        TRY_H5(cx, optim = H5Gopen2(f, "optim", H5P_DEFAULT), "/optim");
        if (write_fields(optim, "/optim", OPTIM_FIELDS, COUNT(OPTIM_FIELDS), meta, cx) != 0) goto cleanup;
    }
    rc = 0;
cleanup:
    ckpt_h5_close(optim);
    return rc;
}

int checkpoint_save(const char *path, const CkptTensor *tensors, int count, const CheckpointMeta *meta,
                    const char *config_yaml, char *err, size_t err_len) {
    CkptCtx ctx = {path, err, err_len}, *cx = &ctx;
    if (ckpt_check_finite(tensors, count, cx) != 0) return -1;
    CkptQuiet quiet = ckpt_quiet_begin();
    CkptImage im;
    int rc = -1;
    hid_t f = ckpt_image_create(&im, cx);
    if (f < 0) goto cleanup;
    if (write_contents(f, tensors, count, meta, config_yaml, cx) != 0) {
        H5Fclose(f);   // in memory: nothing on disk to flush or to fail
        if (im.closed) ckpt_image_free(&im);
        goto cleanup;
    }
    if (ckpt_image_finish(f, &im, cx) != 0) goto cleanup;
    ckpt_seal(im.mem, im.len);
    rc = ckpt_write_file(path, im.mem, im.len, err, err_len);
    ckpt_image_free(&im);
cleanup:
    ckpt_quiet_end(quiet);
    return rc;
}

// ---- open and metadata ---------------------------------------------------------------------

// 'format' is vqvae_dist and 'version' one we read.
int ckpt_check_format(hid_t f, const CkptCtx *cx) {
    char format[64] = "", written_by[32] = "";
    int64_t version = 0;
    int has = ckpt_attr_exists(f, "/", "format", cx);
    if (has < 0) return -1;
    if (!has)
        return set_error(cx->err, cx->err_len, "'%s' is an HDF5 file but not a vqvae_dist checkpoint (no 'format' "
                         "attribute on '/')", cx->path);
    if (ckpt_attr_read(f, "/", "format", CKPT_ATTR_TEXT, format, sizeof format, cx) != 0) return -1;
    if (strcmp(format, CKPT_FORMAT_NAME) != 0)
        return set_error(cx->err, cx->err_len, "'%s' is not a vqvae_dist checkpoint (attribute 'format' is '%s', "
                         "expected '%s')", cx->path, format, CKPT_FORMAT_NAME);
    if (ckpt_attr_read(f, "/", "version", CKPT_ATTR_I64, &version, 0, cx) != 0) return -1;
    if (version == CHECKPOINT_FORMAT_VERSION) return 0;
    if (version < CHECKPOINT_FORMAT_VERSION)
        return set_error(cx->err, cx->err_len, "checkpoint '%s' has invalid format version %lld (this program reads "
                         "version %d)", cx->path, (long long)version, CHECKPOINT_FORMAT_VERSION);
    char ignored[8];
    CkptCtx quiet_cx = {cx->path, ignored, sizeof ignored};   // the version is what matters here
    if (ckpt_attr_read(f, "/", "program_version", CKPT_ATTR_TEXT, written_by, sizeof written_by, &quiet_cx) != 0)
        written_by[0] = '\0';
    return set_error(cx->err, cx->err_len, "checkpoint '%s' has format version %lld, written by vqvae_dist %s; this "
                     "program (vqvae_dist %s) reads version %d only: use vqvae_dist %s or newer", cx->path,
                     (long long)version, written_by[0] ? written_by : "(unknown)", VQ_VERSION,
                     CHECKPOINT_FORMAT_VERSION, written_by[0] ? written_by : "(a newer release)");
}

hid_t ckpt_open_unchecked(const CkptCtx *cx, int *verified) {
    size_t len;
    unsigned char *bytes = ckpt_read_file(cx, &len);
    if (!bytes) return H5I_INVALID_HID;
    hid_t f = H5I_INVALID_HID;
    int sum = ckpt_verify(bytes, len, cx);
    if (sum >= 0) f = ckpt_image_open(bytes, len, cx);
    free(bytes);
    if (verified) *verified = sum;
    return f;
}

hid_t ckpt_open(const CkptCtx *cx) {
    int verified;
    hid_t f = ckpt_open_unchecked(cx, &verified);
    if (f >= 0 && ckpt_check_format(f, cx) != 0) {
        ckpt_h5_close(f);
        return H5I_INVALID_HID;
    }
    if (f >= 0 && verified == 0)
        log_warn("checkpoint '%s' has no whole-file checksum (written by an older vqvae_dist or by another program): "
                 "only its datasets' checksums are verified", cx->path);
    return f;
}

int ckpt_read_meta_attrs(hid_t f, int optim_mode, CheckpointMeta *meta, char **config_out, const CkptCtx *cx) {
    int rc = -1;
    hid_t optim = H5I_INVALID_HID;
    htri_t has_optim = 0;
    checkpoint_meta_init(meta);
    *config_out = NULL;
    if (read_fields(f, "/", ROOT_FIELDS, COUNT(ROOT_FIELDS), meta, cx) ||
        ckpt_attr_read(f, "/", "created", CKPT_ATTR_TEXT, meta->created, sizeof meta->created, cx) ||
        ckpt_attr_read(f, "/", "program_version", CKPT_ATTR_TEXT, meta->program_version,
                       sizeof meta->program_version, cx) ||
        ckpt_attr_read_string(f, "/", "config", config_out, cx) || check_meta(meta, cx))
        goto cleanup;
    if (optim_mode != CKPT_OPTIM_SKIP) TRY_H5(cx, has_optim = H5Lexists(f, "optim", H5P_DEFAULT), "/optim");
    if (optim_mode == CKPT_OPTIM_REQUIRED && !has_optim) {
        set_error(cx->err, cx->err_len, "'/optim' (the Adam state) is missing from %s: the file holds the model only "
                  "(it was saved without optimizer state)", cx->path);
        goto cleanup;
    }
    if (has_optim) {
        TRY_H5(cx, optim = H5Gopen2(f, "optim", H5P_DEFAULT), "/optim");
        if (read_fields(optim, "/optim", OPTIM_FIELDS, COUNT(OPTIM_FIELDS), meta, cx) != 0) goto cleanup;
        meta->has_optim = 1;
    }
    rc = 0;
cleanup:
    ckpt_h5_close(optim);
    if (rc != 0) {
        free(*config_out);
        *config_out = NULL;
    }
    return rc;
}

int checkpoint_read_meta(const char *path, int flags, CheckpointMeta *meta, char **config_yaml_out, char *err,
                         size_t err_len) {
    CkptCtx cx = {path, err, err_len};
    CkptQuiet quiet = ckpt_quiet_begin();
    CheckpointMeta m;
    char *config = NULL;
    int rc = -1;
    if (config_yaml_out) *config_yaml_out = NULL;
    hid_t f = ckpt_open(&cx);
    int optim_mode = (flags & CKPT_LOAD_OPTIM) ? CKPT_OPTIM_IF_PRESENT : CKPT_OPTIM_SKIP;
    if (f >= 0 && ckpt_read_meta_attrs(f, optim_mode, &m, &config, &cx) == 0) {
        if (meta) *meta = m;
        if (config_yaml_out) *config_yaml_out = config;
        else free(config);
        rc = 0;
    }
    ckpt_h5_close(f);
    ckpt_quiet_end(quiet);
    return rc;
}

// ---- load ----------------------------------------------------------------------------------

// The wanted tensors into one scratch buffer (so a failed load changes nothing), then checked
// for members nobody asked for.
static int read_tensors(hid_t f, const CkptTensor *tensors, const int *wanted, int count, float *scratch,
                        const CkptCtx *cx) {
    int64_t off = 0;
    for (int i = 0; i < count; i++) {
        if (!wanted[i]) continue;
        if (ckpt_dataset_read(f, &tensors[i], scratch + off, cx) != 0) return -1;
        off += ckpt_tensor_count(&tensors[i]);
    }
    return ckpt_check_members(f, tensors, wanted, count, cx);
}

int checkpoint_load(const char *path, CkptTensor *tensors, int count, int flags, CheckpointMeta *meta,
                    char **config_yaml_out, char *err, size_t err_len) {
    CkptCtx ctx = {path, err, err_len}, *cx = &ctx;
    int with_optim = (flags & CKPT_LOAD_OPTIM) != 0;
    if (config_yaml_out) *config_yaml_out = NULL;
    int *wanted = xmalloc((size_t)(count > 0 ? count : 1) * sizeof(int));
    int64_t total = 0;
    for (int i = 0; i < count; i++) {
        wanted[i] = with_optim || !is_optim(&tensors[i]);
        if (wanted[i]) total += ckpt_tensor_count(&tensors[i]);
    }
    float *scratch = xmalloc((size_t)(total > 0 ? total : 1) * sizeof(float));
    char *config = NULL;
    CheckpointMeta mt;
    CkptQuiet quiet = ckpt_quiet_begin();
    int rc = -1;
    hid_t f = ckpt_open(cx);
    if (f < 0 || ckpt_read_meta_attrs(f, with_optim ? CKPT_OPTIM_REQUIRED : CKPT_OPTIM_SKIP, &mt, &config, cx) != 0 ||
        read_tensors(f, tensors, wanted, count, scratch, cx) != 0)
        goto cleanup;
    int64_t off = 0;
    for (int i = 0; i < count; i++) {
        if (!wanted[i]) continue;
        int64_t n = ckpt_tensor_count(&tensors[i]);
        memcpy(tensors[i].data, scratch + off, (size_t)n * sizeof(float));
        off += n;
    }
    if (meta) *meta = mt;
    if (config_yaml_out) {
        *config_yaml_out = config;
        config = NULL;
    }
    rc = 0;
cleanup:
    ckpt_h5_close(f);
    ckpt_quiet_end(quiet);
    free(config);
    free(scratch);
    free(wanted);
    return rc;
}
