// cpu_elementwise.c: element-wise ops, layout permutes and the MSE / sum-of-squares reductions
// of the CPU backend. Single-threaded loops written so that -O3 -march=x86-64-v3 vectorizes them
// (OpenBLAS owns the only thread pool). The build is ISO C11, so GCC does not contract a * b + c
// into an FMA: results do not depend on the compiler's mood.
#include <math.h>

#include "../../src/core/common.h"
#include "cpu_internal.h"

// Number of independent double accumulators in the reductions: a fixed order (so results are
// bit-reproducible) that the compiler can still keep in vector registers.
enum { REDUCE_LANES = 8 };

// y = max(x, 0), written as PyTorch's clamp_min: NaN passes through (so a NaN activation still
// reaches the loss and the trainer's finiteness test) and -0 stays -0.
void cpu_relu_forward(OpsContext *ctx, const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

// dx = y > 0 ? dy : 0, written as PyTorch's threshold_backward (y <= 0 ? 0 : dy): equal for every
// non-NaN y. Each element reads y and dy before writing dx, so dx may alias dy.
void cpu_relu_backward(OpsContext *ctx, const float *y, const float *dy, float *dx, size_t n) {
    for (size_t i = 0; i < n; i++) dx[i] = y[i] <= 0.0f ? 0.0f : dy[i];
}

void cpu_add(OpsContext *ctx, const float *a, const float *b, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void cpu_scale(OpsContext *ctx, float *x, float alpha, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] *= alpha;
}

void cpu_fill(OpsContext *ctx, float *x, float value, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = value;
}

// Transpose each of `batch` [rows, cols] matrices into [cols, rows], in square tiles so that both
// the reads and the writes stay within a few cache lines.
enum { TRANSPOSE_TILE = 32 };

static void transpose_batched(const float *in, float *out, int batch, int rows, int cols) {
    CHECK(batch >= 0 && rows >= 0 && cols >= 0, "layout permute with negative shape [%d, %d, %d]", batch, rows, cols);
    size_t plane = (size_t)rows * (size_t)cols;
    for (int b = 0; b < batch; b++) {
        const float *src = in + (size_t)b * plane;
        float *dst = out + (size_t)b * plane;
        for (int r0 = 0; r0 < rows; r0 += TRANSPOSE_TILE) {
            int r1 = r0 + TRANSPOSE_TILE < rows ? r0 + TRANSPOSE_TILE : rows;
            for (int c0 = 0; c0 < cols; c0 += TRANSPOSE_TILE) {
                int c1 = c0 + TRANSPOSE_TILE < cols ? c0 + TRANSPOSE_TILE : cols;
                for (int c = c0; c < c1; c++) {
                    for (int r = r0; r < r1; r++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
                }
            }
        }
    }
}

// [n, c, hw] -> [n, hw, c]
void cpu_nchw_to_nhwc(OpsContext *ctx, const float *in, float *out, int n, int c, int hw) {
    transpose_batched(in, out, n, c, hw);
}

// [n, hw, c] -> [n, c, hw]
void cpu_nhwc_to_nchw(OpsContext *ctx, const float *in, float *out, int n, int c, int hw) {
    transpose_batched(in, out, n, hw, c);
}

// *out = mean((pred - target)^2). The difference is taken in float as PyTorch does; its square is
// exact in double and the sum is accumulated in double, so the mean is accurate to float rounding
// whatever n is.
void cpu_mse_forward(OpsContext *ctx, const float *pred, const float *target, size_t n, float *out) {
    if (n == 0) {
        *out = NAN;   // as PyTorch: the mean of nothing
        return;
    }
    double acc[REDUCE_LANES] = {0};
    size_t i = 0;
    for (; i + REDUCE_LANES <= n; i += REDUCE_LANES) {
        for (int l = 0; l < REDUCE_LANES; l++) {
            double d = (double)(pred[i + l] - target[i + l]);
            acc[l] += d * d;
        }
    }
    for (; i < n; i++) {
        double d = (double)(pred[i] - target[i]);
        acc[0] += d * d;
    }
    double sum = 0.0;
    for (int l = 0; l < REDUCE_LANES; l++) sum += acc[l];
    *out = (float)(sum / (double)n);
}

// dpred (=|+=) scale * 2 (pred - target) / n, in PyTorch's mse_loss_backward order:
// (norm * (pred - target)) * grad_output with norm = 2 / n rounded to float once.
void cpu_mse_backward(OpsContext *ctx, const float *pred, const float *target, size_t n, float scale, int accumulate,
                      float *dpred) {
    if (n == 0) return;
    float norm = (float)(2.0 / (double)n);
    if (accumulate) {
        for (size_t i = 0; i < n; i++) dpred[i] += norm * (pred[i] - target[i]) * scale;
    } else {
        for (size_t i = 0; i < n; i++) dpred[i] = norm * (pred[i] - target[i]) * scale;
    }
}

// *out = sum(x^2). Squares of floats are exact in double; the double sum cannot overflow, so an
// inf or NaN in x (and only that, or a float overflow of the total) makes the result non-finite.
void cpu_sum_squares(OpsContext *ctx, const float *x, size_t n, float *out) {
    double acc[REDUCE_LANES] = {0};
    size_t i = 0;
    for (; i + REDUCE_LANES <= n; i += REDUCE_LANES) {
        for (int l = 0; l < REDUCE_LANES; l++) {
            double v = (double)x[i + l];
            acc[l] += v * v;
        }
    }
    for (; i < n; i++) {
        double v = (double)x[i];
        acc[0] += v * v;
    }
    double sum = 0.0;
    for (int l = 0; l < REDUCE_LANES; l++) sum += acc[l];
    *out = (float)sum;
}
