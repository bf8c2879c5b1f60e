// cuda_linear.cu: PyTorch nn.Linear on the GPU with cuBLAS, the products of
// kernels/cpu/cpu_linear.c (column-major Y = W^T X, DX = W DY, DW = X DY^T), in fp32 whatever
// train.precision says (COMPUTE_32F_PEDANTIC, as cuda_attention.cu); the bias gradient is a
// fixed-order double sum per column.
#include "../op_checks.h"
#include "cuda_common.h"

// y[s, o] = b[o] for every sample, so that the GEMM adds onto it (beta = 1, as torch.addmm).
__global__ void broadcast_rows_kernel(const float *b, size_t total, int out, float *y) {
    GRID_STRIDE_LOOP(e, total) { y[e] = b[e % (size_t)out]; }
}

// db[o] = sum over the n samples of dy[s, o], in sample order; neighbouring threads read
// neighbouring columns, so the loads are coalesced.
__global__ void column_sums_kernel(const float *dy, int n, int out, float *db) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out) return;
    double sum = 0.0;
    for (int s = 0; s < n; s++) sum += (double)dy[(size_t)s * out + o];
    db[o] = (float)sum;
}

// C[m, n] = op_a(A) op_b(B) + beta C, column-major, in fp32.
static void gemm(OpsContext *ctx, cublasOperation_t op_a, cublasOperation_t op_b, int m, int n, int k, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    const float one = 1.0f;
    CUBLAS_CHECK(cublasGemmEx(cuda_backend(ctx)->cublas, op_a, op_b, m, n, k, &one, a, CUDA_R_32F, lda, b, CUDA_R_32F,
                              ldb, &beta, c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT));
}

void cuda_linear_forward(OpsContext *ctx, const float *x, const float *w, const float *b, int n, int in, int out,
                         float *y) {
    check_linear("linear_forward", n, in, out);
    if (n == 0) return;
    CudaBackend *be = cuda_backend(ctx);
    const size_t total = (size_t)n * out;
    if (b) {
        broadcast_rows_kernel<<<cuda_grid(total, CUDA_BLOCK), CUDA_BLOCK, 0, be->stream>>>(b, total, out, y);
        CUDA_CHECK(cudaGetLastError());
    }
    gemm(ctx, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, w, in, x, in, b ? 1.0f : 0.0f, y, out);
}

void cuda_linear_backward(OpsContext *ctx, const float *x, const float *w, const float *dy, int n, int in, int out,
                          float *dx, float *dw, float *db) {
    check_linear("linear_backward", n, in, out);
    CudaBackend *be = cuda_backend(ctx);
    if (n == 0) {   // no samples: the parameter gradients are zero
        CUDA_CHECK(cudaMemsetAsync(dw, 0, (size_t)out * in * sizeof(float), be->stream));
        if (db) CUDA_CHECK(cudaMemsetAsync(db, 0, (size_t)out * sizeof(float), be->stream));
        return;
    }
    if (dx) gemm(ctx, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, w, in, dy, out, 0.0f, dx, in);
    gemm(ctx, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, x, in, dy, out, 0.0f, dw, in);
    if (!db) return;
    column_sums_kernel<<<(out + CUDA_BLOCK - 1) / CUDA_BLOCK, CUDA_BLOCK, 0, be->stream>>>(dy, n, out, db);
    CUDA_CHECK(cudaGetLastError());
}
