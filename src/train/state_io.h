// state_io.h: saving and restoring a run through src/io/checkpoint. Rank 0 reads and writes
// files; the other ranks receive the state by broadcast, and every outcome (written, failed,
// restored) is agreed so that no rank goes on alone.
#pragma once
#include "model_state.h"
#include "session.h"
#include "train_state.h"

// Every rank calls; rank 0 writes checkpoint.dir/ckpt_<step>.h5; a failure ends the run.
void state_save_checkpoint(Session *s, TrainState *st);
// resume: "auto" = the newest good checkpoint in checkpoint.dir (falling back to older ones), or a
// path. Returns 1 when a checkpoint was restored, 0 when "auto" found none; ends the run when the
// checkpoint cannot be restored.
int state_resume(Session *s, TrainState *st, const char *resume);
// Parameters and buffers only (/model), for evaluation: every rank gets them. Fills *meta.
void state_load_model(Session *s, const char *path, CheckpointMeta *meta);

// train: rank 0 locks checkpoint.dir for the run (ends the job when another run holds it).
void state_lock_checkpoint_dir(const Config *cfg, Dist *dist, CkptDirLock *lock);

// The full state in host memory (st->host_state), and its metadata: for checkpoint writers.
CheckpointState state_download(Session *s, TrainState *st);
void state_fill_meta(const Session *s, const TrainState *st, CheckpointMeta *meta);
