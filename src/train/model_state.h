// model_state.h: the model's training state (registry-laid host buffers) as the checkpoint's
// named tensors: "model/<key>" for every registry entry, "optim/<key>/exp_avg" and
// "optim/<key>/exp_avg_sq" for every trainable one. io knows the tensors only; this is where the
// registry meets them.
#pragma once
#include "../io/checkpoint.h"
#include "../io/config.h"
#include "../model/params.h"

// The training state in host memory, laid out by the registry: values has total_count floats;
// exp_avg and exp_avg_sq have trainable_count floats each (both NULL: no optimizer state).
typedef struct {
    const ParamRegistry *registry;
    float *values;
    float *exp_avg;
    float *exp_avg_sq;
} CheckpointState;

enum { MODEL_STATE_MAX_TENSORS = 3 * PARAM_MAX_ENTRIES };

typedef struct {
    CkptTensor items[MODEL_STATE_MAX_TENSORS];
    int count;
} ModelTensors;

// The tensors of st, pointing into its buffers: every entry's values, then (when st has moments)
// the trainable entries' moments.
void model_state_tensors(const CheckpointState *st, ModelTensors *out);

// checkpoint_save / checkpoint_save_in_dir of st (see src/io/checkpoint.h).
int model_state_save(const char *path, const CheckpointState *st, const CheckpointMeta *meta, const char *config_yaml,
                     char *err, size_t err_len);
int model_state_save_in_dir(const char *dir, const CheckpointState *st, const CheckpointMeta *meta,
                            const char *config_yaml, int keep, char *path_out, size_t path_len, char *err,
                            size_t err_len);
// Load path into st: the values always; the Adam moments too when with_optim (then /optim must be
// there; without it /optim is not read at all, so a weights-only file evaluates). Shapes must
// match the registry exactly; a failed load leaves st untouched.
int model_state_load(const char *path, CheckpointState *st, int with_optim, CheckpointMeta *meta, char **config_yaml,
                     char *err, size_t err_len);

// The config stored in a checkpoint (path), parsed on top of the defaults into out. A config with
// keys this program does not know (written by a newer version) is refused naming the keys and
// the version that wrote it (meta->program_version).
int model_state_config(Config *out, const char *yaml, const char *path, const CheckpointMeta *meta, char *err,
                       size_t err_len);
