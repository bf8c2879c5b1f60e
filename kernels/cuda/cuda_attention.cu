// cuda_attention.cu: single-head attention over spatial positions on the GPU. The products are the
// three shapes of kernels/cpu/cpu_attention.c (see there), each one strided batched cuBLAS GEMM
// over the n samples, in fp32 whatever train.precision says (COMPUTE_32F_PEDANTIC: no TF32, as
// PyTorch's default for matmuls and as the quantizer; these GEMMs are small next to the
// convolutions); the softmax and its backward take one warp per row, sums in double, as the CPU.
#include <math.h>

#include "../op_checks.h"
#include "cuda_common.h"

typedef struct {
    cublasHandle_t handle;
    int n, c, hw;
    long long plane, square;   // strides of a [c, hw] and a [hw, hw] sample
} AttentionGemm;

static AttentionGemm attention_gemm(OpsContext *ctx, int n, int c, int hw) {
    return AttentionGemm{cuda_backend(ctx)->cublas, n, c, hw, (long long)c * hw, (long long)hw * hw};
}

// C[m, cols] = alpha op_a(A) op_b(B) per sample, column-major, lda = ldb = ldc = hw, fp32.
static void gemm_batched(const AttentionGemm *g, cublasOperation_t op_a, cublasOperation_t op_b, int cols, int k,
                         float alpha, const float *a, long long stride_a, const float *b, long long stride_b,
                         float *out, long long stride_out) {
    const float zero = 0.0f;
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(g->handle, op_a, op_b, g->hw, cols, k, &alpha, a, CUDA_R_32F, g->hw,
                                            stride_a, b, CUDA_R_32F, g->hw, stride_b, &zero, out, CUDA_R_32F, g->hw,
                                            stride_out, g->n, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT));
}

// out[hw, hw] = alpha A B^T per sample (A, B: [hw, c] column-major).
static void gemm_scores(const AttentionGemm *g, float alpha, const float *a, const float *b, float *out) {
    gemm_batched(g, CUBLAS_OP_N, CUBLAS_OP_T, g->hw, g->c, alpha, a, g->plane, b, g->plane, out, g->square);
}

// out[hw, c] = alpha P^T B per sample (P: [hw, hw]).
static void gemm_apply(const AttentionGemm *g, float alpha, const float *p, const float *b, float *out) {
    gemm_batched(g, CUBLAS_OP_T, CUBLAS_OP_N, g->c, g->hw, alpha, p, g->square, b, g->plane, out, g->plane);
}

// out[hw, c] = alpha P B per sample.
static void gemm_gather(const AttentionGemm *g, float alpha, const float *p, const float *b, float *out) {
    gemm_batched(g, CUBLAS_OP_N, CUBLAS_OP_N, g->c, g->hw, alpha, p, g->square, b, g->plane, out, g->plane);
}

// Rows handed to whole warps (a warp-uniform loop, so the shuffles see full warps) over a grid of
// any size.
#define WARP_ROW_LOOP(row, rows)                                                                  \
    for (size_t row = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32; row < (rows);         \
         row += (size_t)gridDim.x * blockDim.x / 32)

// Each row of s [rows, cols] in place: exp(s - max) / sum. The warp max ignores NaN as the CPU's
// loop does (a NaN then poisons the row through its sum); the double sum's butterfly leaves the
// same bits in every lane.
__global__ void softmax_rows_kernel(float *s, size_t rows, int cols) {
    const int lane = threadIdx.x % 32;
    WARP_ROW_LOOP(row, rows) {
        float *r = s + row * cols;
        float m = -INFINITY;
        for (int j = lane; j < cols; j += 32) m = r[j] > m ? r[j] : m;
        for (int offset = 16; offset > 0; offset >>= 1) {
            const float other = __shfl_xor_sync(0xffffffffu, m, offset);
            m = other > m ? other : m;
        }
        double sum = 0.0;
        for (int j = lane; j < cols; j += 32) {
            const float e = expf(__fsub_rn(r[j], m));
            r[j] = e;
            sum += (double)e;
        }
        const float total = (float)warp_reduce_sum(sum);
        for (int j = lane; j < cols; j += 32) r[j] = __fdiv_rn(r[j], total);
    }
}

// ds = p (dp - sum_j p dp) per row, in place over dp.
__global__ void softmax_backward_rows_kernel(const float *p, float *dp, size_t rows, int cols) {
    const int lane = threadIdx.x % 32;
    WARP_ROW_LOOP(row, rows) {
        const float *pr = p + row * cols;
        float *dr = dp + row * cols;
        double dot = 0.0;
        for (int j = lane; j < cols; j += 32) dot += (double)pr[j] * (double)dr[j];
        const float r = (float)warp_reduce_sum(dot);
        for (int j = lane; j < cols; j += 32) dr[j] = __fmul_rn(pr[j], __fsub_rn(dr[j], r));
    }
}

// One warp per row, CUDA_BLOCK / 32 rows per block.
static unsigned int warp_rows_grid(size_t rows) { return cuda_grid(rows * 32, CUDA_BLOCK); }

size_t cuda_attention_workspace_bytes(OpsContext *ctx, int n, int c, int hw) {
    (void)ctx; (void)c;
    return n > 0 && hw > 0 ? (size_t)n * (size_t)hw * (size_t)hw * sizeof(float) : 0;
}

void cuda_attention_forward(OpsContext *ctx, const float *q, const float *k, const float *v, int n, int c, int hw,
                            float scale, float *probs, float *out) {
    check_attention("attention_forward", n, c, hw);
    if (n == 0) return;
    const AttentionGemm g = attention_gemm(ctx, n, c, hw);
    gemm_scores(&g, scale, k, q, probs);   // column-major s^T = row-major s
    const size_t rows = (size_t)n * hw;
    softmax_rows_kernel<<<warp_rows_grid(rows), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(probs, rows, hw);
    CUDA_CHECK(cudaGetLastError());
    gemm_apply(&g, 1.0f, probs, v, out);
}

void cuda_attention_backward(OpsContext *ctx, const float *q, const float *k, const float *v, const float *probs,
                             const float *dout, int n, int c, int hw, float scale, float *dq, float *dk, float *dv) {
    check_attention("attention_backward", n, c, hw);
    if (n == 0) return;
    const size_t need = cuda_attention_workspace_bytes(ctx, n, c, hw);
    CHECK(ctx->workspace && ctx->workspace_bytes >= need,
          "attention_backward(n=%d, c=%d, hw=%d) needs %zu bytes of workspace but the context has %zu; "
          "reserve ops->attention_workspace_bytes() at start-up", n, c, hw, need, ctx->workspace_bytes);
    float *ds = (float *)ctx->workspace;
    const AttentionGemm g = attention_gemm(ctx, n, c, hw);
    gemm_scores(&g, 1.0f, v, dout, ds);   // dp[i, j] = sum_c dout[c, i] v[c, j]
    gemm_gather(&g, 1.0f, probs, dout, dv);
    const size_t rows = (size_t)n * hw;
    softmax_backward_rows_kernel<<<warp_rows_grid(rows), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(probs, ds, rows, hw);
    CUDA_CHECK(cudaGetLastError());
    gemm_apply(&g, scale, ds, k, dq);
    gemm_gather(&g, scale, ds, q, dk);
}
