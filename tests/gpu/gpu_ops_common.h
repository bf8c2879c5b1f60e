// gpu_ops_common.h: what test_gpu_ops.c, test_gpu_quantizer.c and test_gpu_conv.c share: the
// tolerances, the worst errors seen, random inputs, the comparisons (see test_gpu_ops.c for what
// each tolerance is for), and both contexts.
#pragma once
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "gpu_run.h"
#include "kernels/ops.h"
#include "test_util.h"

// Each test file uses some of these.
#pragma GCC diagnostic ignored "-Wunused-function"

static const double EXACTISH_TOL = 1e-6, REDUCE_TOL = 1e-5, CONV_FP32_TOL = 1e-4, CONV_TF32_TOL = 2e-2,
                    CONV_BF16_TOL = 3e-2;

// Worst errors seen, printed at the end.
typedef struct {
    double elementwise, reduce, quantizer, optimizer, conv_fp32, conv_tf32;
    int bit_identical, compared;   // of the tensors checked with EXACTISH_TOL
} Worst;

static void fill_uniform(float *x, size_t n, float lo, float hi, uint64_t stream) {
    Rng r = rng_stream(77, RNG_PURPOSE_TEST, stream, 0);
    for (size_t i = 0; i < n; i++) x[i] = rng_uniform_range(&r, lo, hi);
}

static void fill_normal(float *x, size_t n, float scale, uint64_t stream) {
    Rng r = rng_stream(77, RNG_PURPOSE_TEST, stream, 1);
    for (size_t i = 0; i < n; i++) x[i] = scale * rng_normal(&r);
}

static void expect_identical(TestCounts *t, const char *what, const float *got, const float *want, size_t n) {
    long i = first_difference(got, want, n);
    EXPECT(t, i < 0, "%s: GPU and CPU differ first at %ld: %.9g vs %.9g", what, i, i >= 0 ? got[i] : 0.0,
           i >= 0 ? want[i] : 0.0);
}

static void expect_identical_device(TestCounts *t, const char *what, OpsContext *gpu, const float *d,
                                    const float *want, size_t n) {
    float *got = download(gpu, d, n);
    expect_identical(t, what, got, want, n);
    free(got);
}

// err <= tol; returns err. Counts bit-identical results when tol is EXACTISH_TOL.
static double expect_close(TestCounts *t, Worst *w, const char *what, const float *got, const float *want, size_t n,
                           double tol) {
    double err = test_max_rel_error(got, want, n);
    EXPECT(t, err <= tol, "%s: max relative error %.3g > %.3g", what, err, tol);
    if (tol == EXACTISH_TOL) {
        w->compared++;
        if (first_difference(got, want, n) < 0) w->bit_identical++;
    }
    return err;
}

static double expect_close_device(TestCounts *t, Worst *w, const char *what, OpsContext *gpu, const float *d,
                                  const float *want, size_t n, double tol) {
    float *got = download(gpu, d, n);
    double err = expect_close(t, w, what, got, want, n, tol);
    free(got);
    return err;
}

// The CPU context (the oracle, one thread) and the CUDA context, both fp32 and deterministic.
static void gpu_ops_contexts(OpsContext *cpu, OpsContext *gpu) {
    ops_context_init(cpu, "cpu", 0, 1, PRECISION_FP32, 1);
    ops_context_init(gpu, "cuda", 0, 0, PRECISION_FP32, 1);
}
