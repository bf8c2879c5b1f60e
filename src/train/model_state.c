// model_state.c: see model_state.h.
#include "model_state.h"

#include <stdio.h>

#include "../core/common.h"

_Static_assert(PARAM_KEY_MAX + sizeof "optim//exp_avg_sq" <= CKPT_NAME_MAX, "a registry key must fit a tensor name");
_Static_assert((int)PARAM_MAX_DIMS <= (int)CKPT_MAX_DIMS, "a registry shape must fit a tensor shape");

static void add(ModelTensors *out, const ParamEntry *e, const char *prefix, const char *suffix, float *base,
                int non_negative) {
    CkptTensor *t = &out->items[out->count++];
    snprintf(t->name, sizeof t->name, "%s%s%s", prefix, e->key, suffix);
    t->ndim = e->ndim;
    for (int d = 0; d < e->ndim; d++) t->shape[d] = e->shape[d];
    t->data = base + e->offset;
    t->non_negative = non_negative;
}

void model_state_tensors(const CheckpointState *st, ModelTensors *out) {
    const ParamRegistry *reg = st->registry;
    out->count = 0;
    for (int i = 0; i < reg->count; i++) add(out, &reg->entries[i], "model/", "", st->values, 0);
    if (!st->exp_avg || !st->exp_avg_sq) return;
    for (int i = 0; i < reg->count; i++) {
        const ParamEntry *e = &reg->entries[i];
        if (!e->trainable) continue;
        add(out, e, "optim/", "/exp_avg", st->exp_avg, 0);
        add(out, e, "optim/", "/exp_avg_sq", st->exp_avg_sq, 1);
    }
}

int model_state_save(const char *path, const CheckpointState *st, const CheckpointMeta *meta, const char *config_yaml,
                     char *err, size_t err_len) {
    ModelTensors ts;
    model_state_tensors(st, &ts);
    return checkpoint_save(path, ts.items, ts.count, meta, config_yaml, err, err_len);
}

int model_state_save_in_dir(const char *dir, const CheckpointState *st, const CheckpointMeta *meta,
                            const char *config_yaml, int keep, char *path_out, size_t path_len, char *err,
                            size_t err_len) {
    ModelTensors ts;
    model_state_tensors(st, &ts);
    return checkpoint_save_in_dir(dir, ts.items, ts.count, meta, config_yaml, keep, path_out, path_len, err, err_len);
}

int model_state_load(const char *path, CheckpointState *st, int with_optim, CheckpointMeta *meta, char **config_yaml,
                     char *err, size_t err_len) {
    if (with_optim && (!st->exp_avg || !st->exp_avg_sq))
        return set_error(err, err_len, "internal: loading the Adam state of '%s' needs buffers for it", path);
    ModelTensors ts;
    model_state_tensors(st, &ts);
    return checkpoint_load(path, ts.items, ts.count, with_optim ? CKPT_LOAD_OPTIM : 0, meta, config_yaml, err,
                           err_len);
}

int model_state_config(Config *out, const char *yaml, const char *path, const CheckpointMeta *meta, char *err,
                       size_t err_len) {
    char unknown[400];
    int n = config_unknown_keys(yaml, unknown, sizeof unknown);
    if (n > 0)
        return set_error(err, err_len, "the config stored in '%s' has %d key%s that this program (vqvae_dist %s) does "
                         "not know: %s; the checkpoint was written by vqvae_dist %s: use that version or newer",
                         path, n, n == 1 ? "" : "s", VQ_VERSION, unknown,
                         meta->program_version[0] ? meta->program_version : "(unknown)");
    config_defaults(out);
    char why[1024];
    if (config_load_string(out, yaml, path, why, sizeof why) != 0)
        return set_error(err, err_len, "the config stored in '%s' does not parse: %s", path, why);
    return 0;
}
