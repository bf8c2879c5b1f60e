// checkpoint.h: HDF5 checkpoints of named float32 tensors (format version 1, docs/CHECKPOINT.md),
// readable with h5py:
//   /              attrs: format="vqvae_dist", version=1, step, epoch, epoch_offset,
//                         samples_seen, seed, world_size, arch, quantizer, created (ISO 8601),
//                         program_version, config (the resolved YAML), and when known
//                         data_variance, image_channels, image_height, image_width
//   /model/<key>   one float32 dataset per tensor named "model/<key>"
//   /optim/<key>/exp_avg, /optim/<key>/exp_avg_sq   (tensors named so)
//   /optim         attrs: step, lr, beta1, beta2, eps, weight_decay
// io knows tensors by name and shape only; which tensors a model has is the caller's business
// (src/train/model_state.c maps the model's registry to them).
// Every dataset is chunked with the fletcher32 filter, so HDF5 verifies it on read; metadata uses
// the checksummed (v1.10) format. Files are written to NAME.tmp, fsync'd, renamed, and the folder
// fsync'd, so a crash never leaves a half-written file under the final name.
#pragma once
#include <stddef.h>
#include <stdint.h>

enum { CHECKPOINT_FORMAT_VERSION = 1 };
enum { CKPT_NAME_MAX = 160, CKPT_MAX_DIMS = 4 };

// One tensor: its path inside the file without the leading '/' ("model/<key>",
// "optim/<key>/exp_avg"), its shape, and its values (read on save, filled on load).
typedef struct {
    char name[CKPT_NAME_MAX];
    int ndim;
    int64_t shape[CKPT_MAX_DIMS];
    float *data;
    int non_negative;   // load: every value must be >= 0 (Adam's exp_avg_sq)
} CkptTensor;

// The scalars stored beside the tensors. To add one: a field here and a row in the table of
// ckpt_file.c (optional rows load as "unknown" from files that lack them).
typedef struct {
    int64_t step;           // training steps done, including skipped ones (docs/CHECKPOINT.md)
    int64_t epoch;          // current epoch (0-based)
    int64_t epoch_offset;   // samples of the current epoch's permutation already consumed
    int64_t samples_seen;   // total samples consumed by all ranks
    uint64_t seed;
    int world_size;
    char arch[32];
    char quantizer[32];
    // What the run trained on; NaN / 0 = unknown (files written before these were stored).
    double data_variance;
    int image_channels, image_height, image_width;
    int codebook_restarts;  // dead codes restarted so far (quantizer.dead_code_threshold); 0 = none or unknown
    // Read only (written from the clock and this program's version).
    char created[32];
    char program_version[32];
    // Adam: the attributes of /optim (has_optim = 1 when the file has /optim and it was read).
    int has_optim;
    int64_t adam_step;      // Adam steps taken (skipped steps excluded)
    float lr, beta1, beta2, eps, weight_decay;
} CheckpointMeta;

// Meta with every optional field "unknown" and everything else zero.
void checkpoint_meta_init(CheckpointMeta *meta);

// Write path atomically (path.tmp, fsync, rename, fsync of the folder). The tensors go in list
// order; /optim's attributes are written when some tensor's name starts with "optim/". A tensor
// holding NaN or Inf is refused before anything is written. 0, or -1 with err.
int checkpoint_save(const char *path, const CkptTensor *tensors, int count, const CheckpointMeta *meta,
                    const char *config_yaml, char *err, size_t err_len);

// Flags of checkpoint_load.
enum { CKPT_LOAD_OPTIM = 1 };   // read /optim (required) and the list's "optim/..." tensors

// Read path into the tensors' data: each must exist with exactly its shape, pass its checksum and
// hold finite numbers; a member of /model or /optim that the list does not name is refused (like
// load_state_dict(strict=True)). Without CKPT_LOAD_OPTIM, /optim is not looked at and the list's
// "optim/..." tensors are left alone. A failed load changes no tensor. *config_yaml_out
// (malloc'd) gets the stored config when non-NULL. 0, or -1 with err naming the file and the
// dataset or attribute at fault.
int checkpoint_load(const char *path, CkptTensor *tensors, int count, int flags, CheckpointMeta *meta,
                    char **config_yaml_out, char *err, size_t err_len);

// Only the attributes and the config (no tensors). With CKPT_LOAD_OPTIM also /optim's attributes
// when the file has /optim (meta->has_optim); without it /optim is not looked at.
int checkpoint_read_meta(const char *path, int flags, CheckpointMeta *meta, char **config_yaml_out, char *err,
                         size_t err_len);

// ---- a folder of checkpoints: DIR/ckpt_00001000.h5 ..., DIR/latest (a text file with the name) ----

// Save DIR/ckpt_<step>.h5, rewrite DIR/latest atomically, delete all but the newest `keep`.
// Writes the chosen path into path_out.
int checkpoint_save_in_dir(const char *dir, const CkptTensor *tensors, int count, const CheckpointMeta *meta,
                           const char *config_yaml, int keep, char *path_out, size_t path_len, char *err,
                           size_t err_len);

// Candidates for `--resume auto`, newest first (the `latest` pointer's file first, then the
// others by step). Returns how many were written to paths (each a malloc'd string).
int checkpoint_list_in_dir(const char *dir, char **paths, int max_paths);

// Print a human summary of a checkpoint (attrs, tensors with shapes and norms) to stdout.
int checkpoint_print_info(const char *path, char *err, size_t err_len);

// An exclusive lock on a checkpoint folder for the length of a training run: flock on DIR/lock
// (created if needed, with the holder's PID and host written into it). A second run is refused
// with a message naming the folder and the holder; a lock left by a killed run is gone with it.
// On a file system without locks: a warning, and 0. Either way unlock it at the end.
typedef struct {
    int fd;
} CkptDirLock;
int checkpoint_dir_lock(const char *dir, CkptDirLock *lock, char *err, size_t err_len);
void checkpoint_dir_unlock(CkptDirLock *lock);
