// cpu_attention.c: single-head attention over spatial positions on the CPU backend: OpenBLAS sgemm
// per sample and a max-subtracted softmax with double sums.
//
// q, k, v, out are [c, hw] per sample (row-major), which BLAS reads column-major as [hw, c]
// matrices Q, K, V; a row-major [hw, hw] matrix (probs, dp) reads column-major as its transpose.
// In those terms every product of the forward and backward is one of three shapes:
//   scores: C[hw, hw] = alpha A B^T   (A, B: [hw, c])  s^T = scale K Q^T;  dp^T = V dOut^T
//   apply:  C[hw, c] = alpha P^T B    (P: [hw, hw])     out = p v^T;       dq = scale ds k^T
//   gather: C[hw, c] = alpha P B                        dv = p^T dout;     dk = scale ds^T q
// cuda_attention.cu uses the same three shapes with strided batched cuBLAS GEMMs.
#include <cblas.h>
#include <math.h>

#include "../../src/core/common.h"
#include "../op_checks.h"
#include "cpu_internal.h"

static void gemm_scores(int c, int hw, float alpha, const float *a, const float *b, float *out) {
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, hw, hw, c, alpha, a, hw, b, hw, 0.0f, out, hw);
}

static void gemm_apply(int c, int hw, float alpha, const float *p, const float *b, float *out) {
    cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, hw, c, hw, alpha, p, hw, b, hw, 0.0f, out, hw);
}

static void gemm_gather(int c, int hw, float alpha, const float *p, const float *b, float *out) {
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, hw, c, hw, alpha, p, hw, b, hw, 0.0f, out, hw);
}

size_t cpu_attention_workspace_bytes(OpsContext *ctx, int n, int c, int hw) {
    return hw > 0 ? (size_t)hw * (size_t)hw * sizeof(float) : 0;
}

// Each row of s [rows, cols] in place: p = exp(s - max) / sum. A NaN is skipped by the max but
// makes its row's sum, and so the whole row, NaN (as PyTorch).
static void softmax_rows(float *s, int rows, int cols) {
    for (int i = 0; i < rows; i++) {
        float *row = s + (size_t)i * cols;
        float m = -INFINITY;
        for (int j = 0; j < cols; j++) m = row[j] > m ? row[j] : m;
        double sum = 0.0;
        for (int j = 0; j < cols; j++) {
            row[j] = expf(row[j] - m);
            sum += (double)row[j];
        }
        const float total = (float)sum;
        for (int j = 0; j < cols; j++) row[j] = row[j] / total;
    }
}

void cpu_attention_forward(OpsContext *ctx, const float *q, const float *k, const float *v, int n, int c, int hw,
                           float scale, float *probs, float *out) {
    check_attention("attention_forward", n, c, hw);
    const size_t plane = (size_t)c * hw, square = (size_t)hw * hw;
    for (int b = 0; b < n; b++) {
        float *p = probs + b * square;
        gemm_scores(c, hw, scale, k + b * plane, q + b * plane, p);   // column-major s^T = row-major s
        softmax_rows(p, hw, hw);
        gemm_apply(c, hw, 1.0f, p, v + b * plane, out + b * plane);
    }
}

// ds = p (dp - sum_j p dp) row by row (softmax's backward), in place over dp.
static void softmax_backward_rows(const float *p, float *dp, int rows, int cols) {
    for (int i = 0; i < rows; i++) {
        const float *pr = p + (size_t)i * cols;
        float *dr = dp + (size_t)i * cols;
        double dot = 0.0;
        for (int j = 0; j < cols; j++) dot += (double)pr[j] * (double)dr[j];
        const float r = (float)dot;
        for (int j = 0; j < cols; j++) dr[j] = pr[j] * (dr[j] - r);
    }
}

void cpu_attention_backward(OpsContext *ctx, const float *q, const float *k, const float *v, const float *probs,
                            const float *dout, int n, int c, int hw, float scale, float *dq, float *dk, float *dv) {
    check_attention("attention_backward", n, c, hw);
    const size_t need = cpu_attention_workspace_bytes(ctx, n, c, hw);
    CHECK(ctx->workspace && ctx->workspace_bytes >= need,
          "attention_backward(n=%d, c=%d, hw=%d) needs %zu bytes of workspace but the context has %zu; "
          "reserve ops->attention_workspace_bytes() at start-up", n, c, hw, need, ctx->workspace_bytes);
    float *ds = (float *)ctx->workspace;
    const size_t plane = (size_t)c * hw, square = (size_t)hw * hw;
    for (int b = 0; b < n; b++) {
        const float *p = probs + b * square, *go = dout + b * plane;
        gemm_scores(c, hw, 1.0f, v + b * plane, go, ds);   // dp[i, j] = sum_c dout[c, i] v[c, j]
        gemm_gather(c, hw, 1.0f, p, go, dv + b * plane);
        softmax_backward_rows(p, ds, hw, hw);
        gemm_apply(c, hw, scale, ds, k + b * plane, dq + b * plane);
        gemm_gather(c, hw, scale, ds, q + b * plane, dk + b * plane);
    }
}
