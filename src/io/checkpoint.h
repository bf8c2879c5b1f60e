// checkpoint.h: HDF5 checkpoints (format version 1, docs/CHECKPOINT.md), readable with h5py:
//   /              attrs: format="vqvae_dist", version=1, step, epoch, epoch_offset,
//                         samples_seen, seed, world_size, arch, quantizer, created (ISO 8601),
//                         program_version, config (the resolved YAML)
//   /model/<key>   one float32 dataset per registry entry, PyTorch key and layout
//   /optim/<key>/exp_avg, /optim/<key>/exp_avg_sq   for trainable entries
//   /optim         attrs: step, lr, beta1, beta2, eps, weight_decay
// Every dataset is chunked with the fletcher32 filter, so HDF5 verifies it on read; metadata uses
// the checksummed (v1.10) format. Files are written to NAME.tmp, fsync'd, renamed, and the folder
// fsync'd, so a crash never leaves a half-written file under the final name.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "../model/params.h"

enum { CHECKPOINT_FORMAT_VERSION = 1 };

typedef struct {
    int64_t step;           // optimizer steps done
    int64_t epoch;          // current epoch (0-based)
    int64_t epoch_offset;   // samples of the current epoch's permutation already consumed
    int64_t samples_seen;   // total samples consumed by all ranks
    uint64_t seed;
    int world_size;
    char arch[32];
    char quantizer[32];
    // Adam
    int64_t adam_step;
    float lr, beta1, beta2, eps, weight_decay;
} CheckpointMeta;

// The training state in host memory, laid out by the registry: values has total_count floats;
// exp_avg and exp_avg_sq have trainable_count floats each.
typedef struct {
    const ParamRegistry *registry;
    float *values;
    float *exp_avg;
    float *exp_avg_sq;
} CheckpointState;

// Write path atomically (path.tmp, fsync, rename, fsync of the folder). 0 or -1 with err.
int checkpoint_save(const char *path, const CheckpointState *state, const CheckpointMeta *meta,
                    const char *config_yaml, char *err, size_t err_len);

// Read path into state (shapes must match the registry exactly; every dataset's checksum is
// verified). *config_yaml_out (malloc'd) gets the stored config when non-NULL. 0 or -1 with err
// naming the file and the dataset or attribute at fault.
int checkpoint_load(const char *path, CheckpointState *state, CheckpointMeta *meta, char **config_yaml_out,
                    char *err, size_t err_len);

// Only the root attributes and the config (no registry needed): for `vqvae_dist info` and resume.
int checkpoint_read_meta(const char *path, CheckpointMeta *meta, char **config_yaml_out, char *err, size_t err_len);

// ---- a folder of checkpoints: DIR/ckpt_00001000.h5 ..., DIR/latest (a text file with the name) ----

// Save DIR/ckpt_<step>.h5, rewrite DIR/latest atomically, delete all but the newest `keep`.
// Writes the chosen path into path_out.
int checkpoint_save_in_dir(const char *dir, const CheckpointState *state, const CheckpointMeta *meta,
                           const char *config_yaml, int keep, char *path_out, size_t path_len, char *err,
                           size_t err_len);

// Candidates for `--resume auto`, newest first (the `latest` pointer's file first, then the
// others by step). Returns how many were written to paths (each a malloc'd string).
int checkpoint_list_in_dir(const char *dir, char **paths, int max_paths);

// Print a human summary of a checkpoint (attrs, tensors with shapes and norms) to stdout.
int checkpoint_print_info(const char *path, char *err, size_t err_len);
