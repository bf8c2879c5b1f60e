// test_hooks.h: fault injection and tracing for the multi-rank tests (tests/scripts/test_mpi_*.sh),
// read from the environment once at start-up:
//   VQ_TEST_INJECT_NAN=STEP:RANK   a NaN in this rank's gradient at that step (0-based step index)
//   VQ_TEST_PERTURB=STEP:RANK      after that step, nudge one parameter on that rank (verify_every)
//   VQ_TEST_LOG_SAMPLES=PREFIX     each rank appends "epoch E step S ids..." lines to PREFIX.rank<R>
//   VQ_TEST_DUMP_CODEBOOK=PREFIX   each rank writes the codebook (K x D float32) right after the
//                                  data-driven init to PREFIX.rank<R>
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "session.h"
#include "train_state.h"

typedef struct {
    int rank;
    int64_t inject_nan_step;
    int inject_nan_rank;
    int64_t perturb_step;
    int perturb_rank;
    FILE *sample_log;
    const char *codebook_dump;   // prefix, or NULL
} TestHooks;

void test_hooks_open(TestHooks *h, int rank);
void test_hooks_close(TestHooks *h);
// 1 when a hook acts at this step (the step then runs outside a captured CUDA graph).
int test_hooks_at(const TestHooks *h, int64_t step);
// The sample ids of the batch this rank just loaded (its slice starts at `start` in the permutation).
void test_hooks_log_batch(TestHooks *h, const TrainState *st, int64_t start, int batch);
// Called with the gradients ready, before their all-reduce.
void test_hooks_after_backward(TestHooks *h, Session *s, int64_t step);
// Called after the data-driven codebook init.
void test_hooks_after_codebook_init(TestHooks *h, Session *s);
// Called after the update of `step`.
void test_hooks_after_update(TestHooks *h, Session *s, int64_t step);
