// cuda_resample.cu: nearest-neighbour x2 upsampling and zero padding / cropping on the GPU, one
// thread per output value (copies: bit-identical to kernels/cpu/cpu_resample.c; the upsampling's
// backward adds the four values in the CPU's order).
#include "../op_checks.h"
#include "cuda_common.h"

// y [planes, 2h, 2w] from x [planes, h, w].
__global__ void upsample2x_forward_kernel(const float *x, int h, int w, size_t total, float *y) {
    const size_t wo = 2 * (size_t)w, plane_out = 2 * (size_t)h * wo;
    GRID_STRIDE_LOOP(e, total) {
        const size_t p = e / plane_out, r = e % plane_out, i = r / wo, j = r % wo;
        y[e] = x[(p * h + i / 2) * w + j / 2];
    }
}

// dx [planes, h, w] = (((0 + dy00) + dy01) + dy10) + dy11 of its 2x2 block.
__global__ void upsample2x_backward_kernel(const float *dy, int h, int w, size_t total, float *dx) {
    const size_t wo = 2 * (size_t)w, plane = (size_t)h * w;
    GRID_STRIDE_LOOP(e, total) {
        const size_t p = e / plane, r = e % plane, i = r / w, j = r % w;
        const float *top = dy + (p * 2 * h + 2 * i) * wo + 2 * j, *bottom = top + wo;
        dx[e] = __fadd_rn(__fadd_rn(__fadd_rn(__fadd_rn(0.0f, top[0]), top[1]), bottom[0]), bottom[1]);
    }
}

// y [planes, h + top + bottom, w + left + right]: x where it lands, zero elsewhere.
__global__ void pad2d_forward_kernel(const float *x, int h, int w, int top, int left, size_t ho, size_t wo,
                                     size_t total, float *y) {
    GRID_STRIDE_LOOP(e, total) {
        const size_t p = e / (ho * wo), r = e % (ho * wo);
        const long i = (long)(r / wo) - top, j = (long)(r % wo) - left;
        y[e] = (i >= 0 && i < h && j >= 0 && j < w) ? x[(p * h + (size_t)i) * w + (size_t)j] : 0.0f;
    }
}

// dx [planes, h, w] = the matching window of dy.
__global__ void pad2d_backward_kernel(const float *dy, int h, int w, int top, int left, size_t ho, size_t wo,
                                      size_t total, float *dx) {
    GRID_STRIDE_LOOP(e, total) {
        const size_t p = e / ((size_t)h * w), r = e % ((size_t)h * w), i = r / w, j = r % w;
        dx[e] = dy[(p * ho + i + top) * wo + j + left];
    }
}

static size_t plane_count(const char *op, int n, int c, int h, int w) {
    check_planes(op, n, c, h, w);
    return (size_t)n * (size_t)c;
}

void cuda_upsample2x_forward(OpsContext *ctx, const float *x, int n, int c, int h, int w, float *y) {
    const size_t total = plane_count("upsample2x_forward", n, c, h, w) * 4 * (size_t)h * w;
    if (!total) return;
    upsample2x_forward_kernel<<<cuda_grid(total, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(x, h, w, total, y);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_upsample2x_backward(OpsContext *ctx, const float *dy, int n, int c, int h, int w, float *dx) {
    const size_t total = plane_count("upsample2x_backward", n, c, h, w) * (size_t)h * w;
    if (!total) return;
    upsample2x_backward_kernel<<<cuda_grid(total, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(dy, h, w, total,
                                                                                                dx);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_pad2d_forward(OpsContext *ctx, const float *x, int n, int c, int h, int w, int top, int bottom, int left,
                        int right, float *y) {
    check_pad("pad2d_forward", n, c, h, w, top, bottom, left, right);
    const size_t ho = (size_t)h + top + bottom, wo = (size_t)w + left + right;
    const size_t total = (size_t)n * c * ho * wo;
    if (!total) return;
    pad2d_forward_kernel<<<cuda_grid(total, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(x, h, w, top, left, ho,
                                                                                          wo, total, y);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_pad2d_backward(OpsContext *ctx, const float *dy, int n, int c, int h, int w, int top, int bottom,
                         int left, int right, float *dx) {
    check_pad("pad2d_backward", n, c, h, w, top, bottom, left, right);
    const size_t ho = (size_t)h + top + bottom, wo = (size_t)w + left + right;
    const size_t total = (size_t)n * c * h * w;
    if (!total) return;
    pad2d_backward_kernel<<<cuda_grid(total, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(dy, h, w, top, left, ho,
                                                                                           wo, total, dx);
    CUDA_CHECK(cudaGetLastError());
}
