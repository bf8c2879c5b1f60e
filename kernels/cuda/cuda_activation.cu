// cuda_activation.cu: SiLU and Sigmoid on the GPU, the operations of kernels/cpu/cpu_activation.c
// in the same order, with _rn intrinsics so that nothing is contracted into an FMA. CUDA's expf
// is within 2 ulp of the exact value where glibc's is within 1, so results may differ from the
// CPU's in the last bits (test_gpu_layers allows 1e-6 relative).
#include <math.h>

#include "cuda_common.h"

static __device__ __forceinline__ float sigmoid(float x) { return __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-x))); }

__global__ void silu_forward_kernel(const float *x, float *y, size_t n) {
    GRID_STRIDE_LOOP(i, n) {
        const float v = x[i];
        y[i] = __fdiv_rn(v, __fadd_rn(1.0f, expf(-v)));
    }
}

__global__ void silu_backward_kernel(const float *x, const float *dy, float *dx, size_t n) {
    GRID_STRIDE_LOOP(i, n) {
        const float v = x[i], s = sigmoid(v);
        dx[i] = __fmul_rn(__fmul_rn(dy[i], s), __fadd_rn(1.0f, __fmul_rn(v, __fsub_rn(1.0f, s))));
    }
}

__global__ void sigmoid_forward_kernel(const float *x, float *y, size_t n) {
    GRID_STRIDE_LOOP(i, n) { y[i] = sigmoid(x[i]); }
}

__global__ void sigmoid_backward_kernel(const float *y, const float *dy, float *dx, size_t n) {
    GRID_STRIDE_LOOP(i, n) {
        const float v = y[i];
        dx[i] = __fmul_rn(__fmul_rn(dy[i], __fsub_rn(1.0f, v)), v);
    }
}

void cuda_silu_forward(OpsContext *ctx, const float *x, float *y, size_t n) {
    if (!n) return;
    silu_forward_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(x, y, n);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_silu_backward(OpsContext *ctx, const float *x, const float *dy, float *dx, size_t n) {
    if (!n) return;
    silu_backward_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(x, dy, dx, n);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_sigmoid_forward(OpsContext *ctx, const float *x, float *y, size_t n) {
    if (!n) return;
    sigmoid_forward_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(x, y, n);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_sigmoid_backward(OpsContext *ctx, const float *y, const float *dy, float *dx, size_t n) {
    if (!n) return;
    sigmoid_backward_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(y, dy, dx, n);
    CUDA_CHECK(cudaGetLastError());
}
