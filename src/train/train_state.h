// train_state.h: the state a training run carries from step to step, apart from the model's
// parameters and Adam moments: the data position (sampler), the step counters and verdict (on the
// device, ops.h StepState), Adam's hyperparameters, the codebook usage window, and the training
// set resident on the device. A checkpoint stores what of it cannot be rebuilt (state_io.c).
#pragma once
#include <stdint.h>

#include "../io/dataset.h"
#include "../io/sampler.h"
#include "session.h"

typedef struct {
    Sampler sampler;
    SamplerPosition position;
    int64_t step;             // steps done (including skipped ones)
    int64_t first_step;       // the step this process started at (0, or the resumed step)
    int64_t samples_seen;     // global samples consumed
    // The step's verdict and counters live on the device so that a step needs no host decision;
    // state_host is their copy as of the last train_state_sync.
    StepState *state;         // device
    StepState state_host;     // resume fills its adam_steps; train_state_upload sends it
    AdamHyper adam_hyper;
    int usage_window;
    float *usage_ring;        // device [usage_window * K]: per-step code counts
    float *restart_picks;     // device [K * (D + 1)]: dead-code replacements (quantizer.dead_code_threshold)
    int codebook_ready;       // the data-driven codebook init (at step train.pretrain_steps) is done

    // The training set on the device (uint8) and the current epoch's permutation there, so a
    // batch is one gather kernel; on the CPU backend pixels_device is the host array itself.
    const Dataset *train_set;
    uint8_t *pixels_device;
    int32_t *perm_device;     // [count]
    int32_t *perm_staging;    // host [count]
    int64_t perm_device_epoch;
    // host buffers of one batch (the data codebook init, debug-step)
    int64_t *batch_indices;   // [batch]
    float *batch_host;        // [batch * C * H * W]
    float *host_state;        // params, exp_avg, exp_avg_sq staged for checkpoints (state_io.c)
} TrainState;

void train_state_init(TrainState *st, Session *s, const Dataset *train_set);
void train_state_free(TrainState *st, Session *s);
// The device counters from step and state_host.adam_steps (after a fresh start or a resume).
void train_state_upload(TrainState *st, Session *s);
// Download the device counters (a host sync) into state_host and warn about the steps skipped
// since the last call. At log intervals, before checkpoints, at the end.
void train_state_sync(TrainState *st, Session *s);
// The next global batch's slice of this rank into the model's input (one gather on the device);
// returns where the slice starts in the sampler's permutation.
int64_t train_state_next_batch(TrainState *st, Session *s);
// After the update: this step's code counts into the usage window; step += 1.
void train_state_finish_step(TrainState *st, Session *s);
