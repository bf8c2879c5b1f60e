// train_log.h: what a training run reports: the metrics of a step reduced over ranks, the console
// line (progress, throughput, ETA), the progress bar on a terminal, and metrics.jsonl. Rank 0
// prints and writes; every rank takes part in the reductions.
#pragma once
#include <stdio.h>

#include "metrics.h"
#include "session.h"
#include "train_state.h"

typedef struct {
    FILE *metrics_file;       // rank 0 only
    double start_time, last_log_time;
    int64_t last_log_step;
    int progress_bar;         // stderr is a terminal
    int vae;                  // model.type vae: the KL and reconstruction terms instead of the codebook's
    // host buffers for the reductions, allocated once
    float *host_counts;       // [K]
    double *host_counts_f64;  // [K]
    float *host_ring;         // [usage_window * K]
} TrainLog;

// metrics_path: the JSONL file to append to (rank 0), or NULL for none.
void train_log_open(TrainLog *log, const Session *s, const char *metrics_path);
void train_log_close(TrainLog *log);
// The loss scalars of the last forward/backward, the step's code counts and the usage window,
// reduced over ranks (collective; reads the device, so after train_state_sync).
StepMetrics train_log_collect(TrainLog *log, Session *s, const TrainState *st);
void train_log_print(TrainLog *log, const Session *s, const TrainState *st, const StepMetrics *sm, double rate);
void train_log_json(TrainLog *log, const TrainState *st, const char *kind, const StepMetrics *sm, double rate);
