// gpu_ops_common.h: what test_gpu_ops.c and test_gpu_conv.c share: the tolerances, the worst
// errors seen, random inputs, moving arrays between host and device on either backend, and the
// comparisons (see test_gpu_ops.c for what each tolerance is for).
#pragma once
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
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

static float *alloc_floats(size_t n) { return xmalloc((n ? n : 1) * sizeof(float)); }

// Backend-neutral helpers: on the CPU backend "device" memory is host memory, so the same code
// runs an op on either context.
static void *upload(OpsContext *ctx, const void *host, size_t bytes) {
    void *d = ctx->ops->alloc(ctx, bytes);
    ctx->ops->to_device(ctx, d, host, bytes);
    return d;
}

static float *download(OpsContext *ctx, const float *d, size_t n) {
    float *h = alloc_floats(n);
    ctx->ops->to_host(ctx, h, d, n * sizeof(float));
    return h;
}

static float download_scalar(OpsContext *ctx, const float *d) {
    float v;
    ctx->ops->to_host(ctx, &v, d, sizeof v);
    return v;
}

// Bitwise equal, except that any NaN equals any NaN. Returns the first differing index or -1.
static long first_difference(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) && isnan(b[i])) continue;
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) return (long)i;
    }
    return -1;
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

static double max_d(double a, double b) { return a > b ? a : b; }
