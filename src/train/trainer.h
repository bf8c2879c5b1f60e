// trainer.h: the training loop around the model: data, one step, metrics, evaluation,
// checkpoints and signals. One Trainer per rank; rank 0 prints and writes.
#pragma once
#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "../dist/dist.h"
#include "../io/config.h"
#include "../io/dataset.h"
#include "../io/sampler.h"
#include "../model/vqvae.h"
#include "model_state.h"

// Metrics of one logged step or of an evaluation, already reduced over ranks.
typedef struct {
    double loss;          // recon_mse / variance + quantizer loss
    double recon_mse;
    double nmse;          // recon_mse / variance
    double vq_loss;       // quantizer loss (codebook + commitment, or commitment only for ema)
    double perplexity;    // exp(entropy of the global code histogram)
    double usage;         // fraction of codes used (log: over the last log.usage_window steps)
    double grad_norm;     // L2 norm of the averaged gradient (training only)
} StepMetrics;

typedef struct {
    Config cfg;
    Dist *dist;
    OpsContext ctx;
    Model model;
    Dataset train_set, test_set;
    Sampler sampler;
    SamplerPosition position;
    int64_t step;             // steps done (including skipped ones)
    int64_t first_step;       // the step this process started at (0, or the resumed step)
    int64_t samples_seen;     // global samples consumed
    // The step's verdict and counters live on the device (ops.h StepState) so that a step needs no
    // host decision; state_host is its copy as of the last trainer_sync_state.
    StepState *state;         // device
    StepState state_host;     // resume fills its adam_steps; setup uploads it
    AdamHyper adam_hyper;

    // buffers allocated once
    int64_t *batch_indices;   // [batch]
    float *batch_host;        // [batch * C * H * W]
    // The training set resident on the device (uint8) and the current epoch's permutation there,
    // so a batch is one gather kernel; on the CPU backend pixels_device is the host array itself.
    uint8_t *pixels_device;
    int32_t *perm_device;     // [count]
    int32_t *perm_staging;    // host [count]
    int64_t perm_device_epoch;
    float *usage_ring;        // device [usage_window * K]: per-step code counts
    float *host_counts;       // [K]
    double *host_counts_f64;  // [K] (for reductions)
    float *host_ring;         // [usage_window * K]
    float *host_state;        // rank 0: params, exp_avg, exp_avg_sq staged for checkpoints

    // logging
    FILE *metrics_file;       // rank 0 only
    double start_time, last_log_time;
    int64_t last_log_step;
    int progress_bar;         // stderr is a TTY

    // test hooks (tests/scripts/test_mpi_*.sh):
    //   VQ_TEST_INJECT_NAN=STEP:RANK   a NaN in this rank's gradient at that step (0-based step index)
    //   VQ_TEST_PERTURB=STEP:RANK      after that step, nudge one parameter on that rank (verify_every)
    //   VQ_TEST_LOG_SAMPLES=PREFIX     each rank appends "epoch E step S ids..." lines to PREFIX.rank<R>
    int64_t inject_nan_step;
    int inject_nan_rank;
    int64_t perturb_step;
    int perturb_rank;
    FILE *sample_log;
} Trainer;

// Outcome of a training run, mapped to exit codes by main.
typedef enum { TRAIN_DONE = 0, TRAIN_STOPPED_RESUMABLE = 1 } TrainOutcome;

// Build everything for cfg on this rank: device, data, model, parameters (fresh, or restored by
// `resume`: NULL = fresh, "auto" = newest good checkpoint in checkpoint.dir if any, else a path).
void trainer_setup(Trainer *t, const Config *cfg, Dist *dist, const char *resume);
void trainer_free(Trainer *t);
TrainOutcome trainer_run(Trainer *t);

// One training step on the next global batch, with no host synchronization: when the loss or
// the gradient is not finite on some rank, every rank skips the update (decided on the device;
// trainer_sync_state reports it).
void trainer_step(Trainer *t);
// The step's three parts (debug-step dumps between them):
// the next global batch's slice of this rank into the model's input;
void trainer_load_next_batch(Trainer *t);
// forward, backward, gradient (and EMA statistics) all-reduce, gradient sum of squares;
void trainer_compute_gradients(Trainer *t);
// the usage window, the step verdict (ops step_commit), and (when finite) Adam and the EMA update.
void trainer_apply_update(Trainer *t);
// Download the step counters (a host sync) into state_host and warn about
// steps skipped since the last call. Called at log intervals, before checkpoints, at the end.
void trainer_sync_state(Trainer *t);
// dist.verify_every: all ranks compare a checksum of their parameters, codebook and Adam moments;
// ends the job with an error naming the ranks that differ from rank 0.
void trainer_verify_ranks(Trainer *t);

// Evaluate on (a shard of) ds with the current parameters; reduced over ranks. Uses whole global
// batches (up to train.eval_batches of them; 0 = all).
StepMetrics trainer_evaluate(Trainer *t, const Dataset *ds);

// Read the loss scalars of the last forward/backward and this step's code counts, reduced over ranks.
StepMetrics trainer_collect_metrics(Trainer *t);

// Checkpoints (state_io.c). save: every rank calls; rank 0 writes; all agree on success.
void trainer_save_checkpoint(Trainer *t);
// Returns 1 if a checkpoint was restored.
int trainer_resume(Trainer *t, const char *resume);
// eval, reconstruct: the parameters of a checkpoint (its /model only: /optim is not read).
void trainer_load_weights(Trainer *t, const char *path);
// train: rank 0 locks checkpoint.dir for the run (ends the job when another run holds it).
void trainer_lock_checkpoint_dir(const Config *cfg, Dist *dist, CkptDirLock *lock);
// The state in host memory (a buffer owned by the trainer) and its metadata, for writers.
CheckpointState trainer_download_state(Trainer *t);
void trainer_fill_meta(const Trainer *t, CheckpointMeta *meta);

// Signals (signals.c): SIGTERM, SIGUSR1 and SIGINT request a stop at the next step boundary.
void signals_install(void);
int signals_stop_requested(void);
int signals_last(void);

// metrics.c
double perplexity_from_counts(const float *counts, int k);
void metrics_print_line(Trainer *t, const StepMetrics *sm, double images_per_s);
void metrics_write_json(Trainer *t, const char *kind, const StepMetrics *sm, double images_per_s);
