// gpu_compare.h: what test_gpu_layers.c and test_gpu_random.c share: a CPU and a CUDA context,
// moving arrays between host and device, and comparing a CUDA result with the CPU op's (the
// oracle, checked by tests/unit against naive loops and finite differences).
#pragma once
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "kernels/ops.h"
#include "test_util.h"

typedef struct {
    OpsContext cpu, gpu;
    TestCounts t;
    double worst;    // largest normwise error seen by gpu_expect_close
    int identical;   // results checked with a tolerance that came out bit-identical, of `compared`
    int compared;
} GpuCompare;

// 1 when the tests can run; otherwise prints why and the caller exits 77 (SKIP).
static inline int gpu_compare_init(GpuCompare *g) {
    if (!cuda_backend_compiled() || cuda_device_count() == 0) {
        printf("SKIP: no GPU (CUDA backend %s, %d GPU(s) visible)\n",
               cuda_backend_compiled() ? "compiled" : "not compiled", cuda_device_count());
        return 0;
    }
    memset(g, 0, sizeof *g);
    ops_context_init(&g->cpu, "cpu", 0, 1, PRECISION_FP32, 1);
    ops_context_init(&g->gpu, "cuda", 0, 0, PRECISION_FP32, 1);
    return 1;
}

static inline int gpu_compare_finish(GpuCompare *g, const char *name) {
    printf("%s: worst normwise error vs CPU %.3g; %d of %d compared tensors bit-identical\n", name, g->worst,
           g->identical, g->compared);
    ops_context_destroy(&g->gpu);
    ops_context_destroy(&g->cpu);
    return test_finish(name, &g->t);
}

// Device copy of n host floats (n = 0: a valid 1-float buffer).
static inline float *gpu_upload(GpuCompare *g, const float *host, size_t n) {
    float *d = g->gpu.ops->alloc(&g->gpu, (n ? n : 1) * sizeof(float));
    if (n) g->gpu.ops->to_device(&g->gpu, d, host, n * sizeof(float));
    return d;
}

// A device buffer of n NaNs, so that an op that fails to write every output is caught.
static inline float *gpu_poisoned(GpuCompare *g, size_t n) {
    float *host = xmalloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) host[i] = NAN;
    float *d = gpu_upload(g, host, n);
    free(host);
    return d;
}

static inline float *gpu_download(GpuCompare *g, const float *d, size_t n) {
    float *host = xmalloc((n ? n : 1) * sizeof(float));
    if (n) g->gpu.ops->to_host(&g->gpu, host, d, n * sizeof(float));
    return host;
}

// The first index where a and b differ in their bits (any NaN equals any NaN), or -1.
static inline long gpu_first_difference(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) && isnan(b[i])) continue;
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) return (long)i;
    }
    return -1;
}

// The device result d must equal want bit for bit.
static inline void gpu_expect_identical(GpuCompare *g, const char *what, const float *d, const float *want,
                                        size_t n) {
    float *got = gpu_download(g, d, n);
    long i = gpu_first_difference(got, want, n);
    EXPECT(&g->t, i < 0, "%s: GPU and CPU differ first at %ld: %.9g vs %.9g", what, i, i >= 0 ? got[i] : 0.0,
           i >= 0 ? want[i] : 0.0);
    free(got);
}

// max|got - want| / max|want| <= tol for the device result d.
static inline void gpu_expect_close(GpuCompare *g, const char *what, const float *d, const float *want, size_t n,
                                    double tol) {
    float *got = gpu_download(g, d, n);
    double err = test_max_rel_error(got, want, n);
    EXPECT(&g->t, err <= tol, "%s: normwise error vs CPU %.3g > %.3g", what, err, tol);
    if (err > g->worst) g->worst = err;
    g->compared++;
    if (gpu_first_difference(got, want, n) < 0) g->identical++;
    free(got);
}
