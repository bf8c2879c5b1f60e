// cpu_elementwise.c: element-wise ops, layout permutes and the MSE / sum-of-squares reductions
// of the CPU backend. Loops are split over ctx->threads OpenMP threads (static schedule) and
// written so that -O3 -march=x86-64-v3 vectorizes them. Element-wise results
// cannot depend on the split; the reductions sum fixed blocks (a function of n only) in block order,
// so they do not depend on the thread count either. The build is ISO C11, so GCC does not contract
// a * b + c into an FMA: results do not depend on the compiler's mood.
#include <math.h>

#include "../../src/core/common.h"
#include "cpu_internal.h"

// Number of independent double accumulators in a reduction block: a fixed order that the compiler
// can still keep in vector registers.
enum { REDUCE_LANES = 8 };
// A reduction over n values sums blocks of reduce_block(n) values, at most REDUCE_BLOCKS of them.
enum { REDUCE_BLOCKS = 256, REDUCE_BLOCK_MIN = 8192 };

static size_t reduce_block(size_t n) {
    size_t b = (n + REDUCE_BLOCKS - 1) / REDUCE_BLOCKS;
    return b < REDUCE_BLOCK_MIN ? REDUCE_BLOCK_MIN : b;
}

// A reduction over one block of a (and b).
typedef double (*BlockSum)(const float *a, const float *b, size_t n);

// The sum of a block sum over n values in fixed blocks, the blocks on the threads, their partial
// sums added in block order.
static double blocked_sum(const OpsContext *ctx, BlockSum block_sum, const float *a, const float *b, size_t n) {
    double partial[REDUCE_BLOCKS];
    size_t bs = reduce_block(n), blocks = (n + bs - 1) / bs;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (size_t k = 0; k < blocks; k++) {
        size_t i0 = k * bs, len = n - i0 < bs ? n - i0 : bs;
        partial[k] = block_sum(a + i0, b ? b + i0 : NULL, len);
    }
    double sum = 0.0;
    for (size_t k = 0; k < blocks; k++) sum += partial[k];
    return sum;
}

// y = max(x, 0), written as PyTorch's clamp_min: NaN passes through (so a NaN activation still
// reaches the loss and the trainer's finiteness test) and -0 stays -0.
void cpu_relu_forward(OpsContext *ctx, const float *x, float *y, size_t n) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (size_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

// dx = y > 0 ? dy : 0, written as PyTorch's threshold_backward (y <= 0 ? 0 : dy): equal for every
// non-NaN y. Each element reads y and dy before writing dx, so dx may alias dy.
void cpu_relu_backward(OpsContext *ctx, const float *y, const float *dy, float *dx, size_t n) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (size_t i = 0; i < n; i++) dx[i] = y[i] <= 0.0f ? 0.0f : dy[i];
}

void cpu_add(OpsContext *ctx, const float *a, const float *b, float *out, size_t n) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void cpu_scale(OpsContext *ctx, float *x, float alpha, size_t n) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (size_t i = 0; i < n; i++) x[i] *= alpha;
}

void cpu_fill(OpsContext *ctx, float *x, float value, size_t n) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (size_t i = 0; i < n; i++) x[i] = value;
}

// Transpose each of `batch` [rows, cols] matrices into [cols, rows], in square tiles so that both
// the reads and the writes stay within a few cache lines.
enum { TRANSPOSE_TILE = 32 };

static void transpose_batched(const OpsContext *ctx, const float *in, float *out, int batch, int rows, int cols) {
    CHECK(batch >= 0 && rows >= 0 && cols >= 0, "layout permute with negative shape [%d, %d, %d]", batch, rows, cols);
    size_t plane = (size_t)rows * (size_t)cols;
    int row_tiles = (rows + TRANSPOSE_TILE - 1) / TRANSPOSE_TILE;
#pragma omp parallel for collapse(2) num_threads(ctx->threads) schedule(static)
    for (int b = 0; b < batch; b++) {
        for (int t = 0; t < row_tiles; t++) {
            const float *src = in + (size_t)b * plane;
            float *dst = out + (size_t)b * plane;
            int r0 = t * TRANSPOSE_TILE, r1 = r0 + TRANSPOSE_TILE < rows ? r0 + TRANSPOSE_TILE : rows;
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
    transpose_batched(ctx, in, out, n, c, hw);
}

// [n, hw, c] -> [n, c, hw]
void cpu_nhwc_to_nchw(OpsContext *ctx, const float *in, float *out, int n, int c, int hw) {
    transpose_batched(ctx, in, out, n, hw, c);
}

// sum of (a[i] - b[i])^2 over a block, the difference in float (b NULL: 0, and x - 0 is x exactly,
// -0 and NaN included), its square exact in double, in REDUCE_LANES double lanes. The test of b
// is loop-invariant: the compiler unswitches it.
static double sq_diff_block(const float *a, const float *b, size_t n) {
    double acc[REDUCE_LANES] = {0};
    size_t i = 0;
    for (; i + REDUCE_LANES <= n; i += REDUCE_LANES) {
        for (int l = 0; l < REDUCE_LANES; l++) {
            double d = (double)(a[i + l] - (b ? b[i + l] : 0.0f));
            acc[l] += d * d;
        }
    }
    for (; i < n; i++) {
        double d = (double)(a[i] - (b ? b[i] : 0.0f));
        acc[0] += d * d;
    }
    double sum = 0.0;
    for (int l = 0; l < REDUCE_LANES; l++) sum += acc[l];
    return sum;
}

// *out = mean((pred - target)^2). The difference is taken in float as PyTorch does; its square is
// exact in double and the sum is accumulated in double, so the mean is accurate to float rounding
// whatever n is.
void cpu_mse_forward(OpsContext *ctx, const float *pred, const float *target, size_t n, float *out) {
    if (n == 0) {
        *out = NAN;   // as PyTorch: the mean of nothing
        return;
    }
    *out = (float)(blocked_sum(ctx, sq_diff_block, pred, target, n) / (double)n);
}

// dpred (=|+=) scale * 2 (pred - target) / n, in PyTorch's mse_loss_backward order:
// (norm * (pred - target)) * grad_output with norm = 2 / n rounded to float once.
void cpu_mse_backward(OpsContext *ctx, const float *pred, const float *target, size_t n, float scale, int accumulate,
                      float *dpred) {
    if (n == 0) return;
    float norm = (float)(2.0 / (double)n);
    if (accumulate) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
        for (size_t i = 0; i < n; i++) dpred[i] += norm * (pred[i] - target[i]) * scale;
    } else {
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
        for (size_t i = 0; i < n; i++) dpred[i] = norm * (pred[i] - target[i]) * scale;
    }
}

// *out = sum(x^2). Squares of floats are exact in double; the double sum cannot overflow, so an
// inf or NaN in x (and only that, or a float overflow of the total) makes the result non-finite.
void cpu_sum_squares(OpsContext *ctx, const float *x, size_t n, float *out) {
    *out = (float)blocked_sum(ctx, sq_diff_block, x, NULL, n);
}
