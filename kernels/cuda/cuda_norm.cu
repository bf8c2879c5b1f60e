// cuda_norm.cu: GroupNorm on the GPU. Follows kernels/cpu/cpu_norm.c expression for expression:
// the same double sums (in a fixed tree, no atomics: run-to-run identical) and the same float
// steps, written with _rn intrinsics that nvcc never contracts into FMAs. The double sums differ
// from the CPU's only in order, so the rounded float statistics match it in all but rare cases.
//
// A group is one contiguous run of (c / groups) hw values, so one block per (sample, group) reads
// it coalesced; the parameter gradients take one block per channel.
#include <math.h>

#include "../op_checks.h"
#include "cuda_common.h"

// mean, rstd and y of group blockIdx.x (two passes over the group, like the CPU).
__global__ void group_norm_forward_kernel(const float *x, const float *gamma, const float *beta, int per_group,
                                          int hw, int groups, float eps, float *y, float *mean, float *rstd) {
    const int s = blockIdx.x;
    const size_t count = (size_t)per_group * hw, base = (size_t)s * count;
    double sum = 0.0;
    for (size_t i = threadIdx.x; i < count; i += blockDim.x) sum += (double)x[base + i];
    const double mu = block_reduce_sum(sum) / (double)count;
    double dev = 0.0;
    for (size_t i = threadIdx.x; i < count; i += blockDim.x) {
        double d = (double)x[base + i] - mu;
        dev += d * d;
    }
    dev = block_reduce_sum(dev);
    const float m = (float)mu, r = (float)(1.0 / sqrt(dev / (double)count + (double)eps));
    if (threadIdx.x == 0) mean[s] = m, rstd[s] = r;
    const int first_channel = (s % groups) * per_group;
    for (size_t i = threadIdx.x; i < count; i += blockDim.x) {
        const int ch = first_channel + (int)(i / hw);
        y[base + i] = __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(x[base + i], m), r), gamma[ch]), beta[ch]);
    }
}

// dx of group blockIdx.x: rstd (dy gamma - mean(dy gamma) - xhat mean(dy gamma xhat)).
__global__ void group_norm_dx_kernel(const float *x, const float *gamma, const float *mean, const float *rstd,
                                     const float *dy, int per_group, int hw, int groups, float *dx) {
    const int s = blockIdx.x, first_channel = (s % groups) * per_group;
    const size_t count = (size_t)per_group * hw, base = (size_t)s * count;
    const float m = mean[s], r = rstd[s];
    double sum_g = 0.0, sum_gx = 0.0;
    for (size_t i = threadIdx.x; i < count; i += blockDim.x) {
        const float g = __fmul_rn(dy[base + i], gamma[first_channel + (int)(i / hw)]);
        const float xhat = __fmul_rn(__fsub_rn(x[base + i], m), r);
        sum_g += (double)g;
        sum_gx += (double)g * (double)xhat;
    }
    sum_g = block_reduce_sum(sum_g);
    sum_gx = block_reduce_sum(sum_gx);
    const float mean_g = (float)(sum_g / (double)count), mean_gx = (float)(sum_gx / (double)count);
    for (size_t i = threadIdx.x; i < count; i += blockDim.x) {
        const float g = __fmul_rn(dy[base + i], gamma[first_channel + (int)(i / hw)]);
        const float xhat = __fmul_rn(__fsub_rn(x[base + i], m), r);
        dx[base + i] = __fmul_rn(r, __fsub_rn(__fsub_rn(g, mean_g), __fmul_rn(xhat, mean_gx)));
    }
}

// dgamma and dbeta of channel blockIdx.x, over the n samples' hw positions.
__global__ void group_norm_params_kernel(const float *x, const float *mean, const float *rstd, const float *dy, int n,
                                         int c, int hw, int groups, float *dgamma, float *dbeta) {
    const int ch = blockIdx.x, group = ch / (c / groups);
    const size_t total = (size_t)n * hw;
    double sum_dy = 0.0, sum_dyx = 0.0;
    for (size_t t = threadIdx.x; t < total; t += blockDim.x) {
        const int b = (int)(t / hw);
        const size_t e = ((size_t)b * c + ch) * hw + t % hw;
        const int s = b * groups + group;
        const float xhat = __fmul_rn(__fsub_rn(x[e], mean[s]), rstd[s]);
        sum_dy += (double)dy[e];
        sum_dyx += (double)dy[e] * (double)xhat;
    }
    sum_dy = block_reduce_sum(sum_dy);
    sum_dyx = block_reduce_sum(sum_dyx);
    if (threadIdx.x == 0) dgamma[ch] = (float)sum_dyx, dbeta[ch] = (float)sum_dy;
}

void cuda_group_norm_forward(OpsContext *ctx, const float *x, const float *gamma, const float *beta, int n, int c,
                             int hw, int groups, float eps, float *y, float *mean, float *rstd) {
    check_group_shape("group_norm_forward", n, c, hw, groups);
    if (n == 0) return;
    group_norm_forward_kernel<<<n * groups, CUDA_BLOCK, 0, cuda_stream(ctx)>>>(x, gamma, beta, c / groups, hw, groups,
                                                                              eps, y, mean, rstd);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_group_norm_backward(OpsContext *ctx, const float *x, const float *gamma, const float *mean,
                              const float *rstd, const float *dy, int n, int c, int hw, int groups, float *dx,
                              float *dgamma, float *dbeta) {
    check_group_shape("group_norm_backward", n, c, hw, groups);
    cudaStream_t stream = cuda_stream(ctx);
    if (n > 0) {
        group_norm_dx_kernel<<<n * groups, CUDA_BLOCK, 0, stream>>>(x, gamma, mean, rstd, dy, c / groups, hw, groups,
                                                                    dx);
        CUDA_CHECK(cudaGetLastError());
    }
    group_norm_params_kernel<<<c, CUDA_BLOCK, 0, stream>>>(x, mean, rstd, dy, n, c, hw, groups, dgamma, dbeta);
    CUDA_CHECK(cudaGetLastError());
}
