// cpu_activation.c: SiLU and Sigmoid on the CPU backend, written as ATen's CPU kernels write them
// (same operations in the same order; the build is ISO C11, so nothing is contracted into an FMA).
// expf of a large -x is inf, and 1 / inf = 0, so both saturate without a special case. Element-wise,
// so splitting the elements over the threads changes no result.
#include <math.h>

#include "cpu_internal.h"

static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// y = x / (1 + exp(-x)); y may alias x.
void cpu_silu_forward(OpsContext *ctx, const float *x, float *y, size_t n) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (size_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

// dx = (dy s) (1 + x (1 - s)), s = sigmoid(x); dx may alias dy (each dy is read before its dx).
void cpu_silu_backward(OpsContext *ctx, const float *x, const float *dy, float *dx, size_t n) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float s = sigmoid(x[i]);
        dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

void cpu_sigmoid_forward(OpsContext *ctx, const float *x, float *y, size_t n) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (size_t i = 0; i < n; i++) y[i] = sigmoid(x[i]);
}

// From the output y, as PyTorch's sigmoid_backward: dx = (dy (1 - y)) y.
void cpu_sigmoid_backward(OpsContext *ctx, const float *y, const float *dy, float *dx, size_t n) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i]) * y[i];
}
