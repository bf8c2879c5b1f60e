// trainer.h: the training loop: a session (backend, model, ranks), the data, the training state,
// the log and the test hooks; one step at a time, with evaluation, checkpoints and signals.
// One Trainer per rank; rank 0 prints and writes.
#pragma once
#include "../io/dataset.h"
#include "metrics.h"
#include "session.h"
#include "test_hooks.h"
#include "train_log.h"
#include "train_state.h"

typedef struct {
    Session s;
    Dataset train_set, test_set;
    TrainState st;
    TrainLog log;
    TestHooks hooks;
} Trainer;

// Outcome of a training run, mapped to exit codes by main.
typedef enum { TRAIN_DONE = 0, TRAIN_STOPPED_RESUMABLE = 1 } TrainOutcome;

// Everything for cfg on this rank: device, data, model, parameters (fresh, or restored by
// `resume`: NULL = fresh, "auto" = newest good checkpoint in checkpoint.dir if any, else a path).
// metrics_path: the JSONL log to append to, or NULL for none.
void trainer_setup(Trainer *t, const Config *cfg, Dist *dist, const char *resume, const char *metrics_path);
void trainer_free(Trainer *t);
TrainOutcome trainer_run(Trainer *t);

// One training step on the next global batch, with no host synchronization: when the loss or
// the gradient is not finite on some rank, every rank skips the update (decided on the device;
// train_state_sync reports it).
void trainer_step(Trainer *t);
// The step's parts (debug-step dumps between them): the phase (encoder pretraining before
// train.pretrain_steps; at that step the data-driven codebook init);
void trainer_begin_step(Trainer *t);
// the next global batch's slice of this rank into the model's input;
void trainer_load_next_batch(Trainer *t);
// forward, backward, gradient (and EMA statistics) all-reduce, gradient sum of squares;
void trainer_compute_gradients(Trainer *t);
// the usage window, the step verdict (ops step_commit), and (when finite) Adam and the EMA update.
void trainer_apply_update(Trainer *t);
// dist.verify_every: all ranks compare a checksum of their parameters, codebook and Adam moments;
// ends the job with an error naming the ranks that differ from rank 0.
void trainer_verify_ranks(Trainer *t);

// Signals (signals.c): SIGTERM, SIGUSR1 and SIGINT request a stop at the next step boundary.
void signals_install(void);
int signals_stop_requested(void);
int signals_last(void);
