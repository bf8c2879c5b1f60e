// cuda_random.cu: dropout, the VAE's reparameterization and the KL term on the GPU. The random
// numbers come from src/core/philox.h, the same functions kernels/cpu/cpu_random.c calls, on the
// same (seed, purpose, layer, step, global sample, block) counters, so both backends draw the
// same bits: the dropout masks are identical, and eps differs only where the device's and the
// host's double log / cos round to different floats (vanishingly rare). One thread per Philox
// block (4 dropout values, 2 normals). The step is read from device memory inside the kernels,
// so a captured CUDA graph draws new numbers on every replay.
#include <math.h>

#include "../../src/core/philox.h"
#include "../op_checks.h"
#include "cuda_common.h"

// y = x mask / (1 - p) for 4 values of one sample per thread (the CPU's dropout_apply).
__global__ void dropout_kernel(const float *in, float *out, int n, size_t per_sample, uint32_t first_sample,
                               float p, float scale, uint64_t seed, uint32_t layer, const int32_t *step) {
    const size_t blocks = (per_sample + 3) / 4, total = (size_t)n * blocks;
    const uint32_t st = (uint32_t)*step;
    GRID_STRIDE_LOOP(t, total) {
        const size_t s = t / blocks, e0 = t % blocks * 4, base = s * per_sample;
        uint32_t bits[4];
        philox_op_block(seed, PHILOX_PURPOSE_DROPOUT, layer, st, first_sample + (uint32_t)s, (uint32_t)(e0 / 4),
                        bits);
        for (size_t e = e0; e < e0 + 4 && e < per_sample; e++)
            out[base + e] = philox_uniform(bits[e - e0]) >= p ? __fmul_rn(in[base + e], scale) : 0.0f;
    }
}

// 2 normals of one sample per thread; z = mean + eps exp(0.5 logvar), the exp in double.
__global__ void reparam_kernel(const float *mean, const float *logvar, int n, int dim, uint32_t first_sample,
                               uint64_t seed, uint32_t layer, const int32_t *step, float *z, float *eps) {
    const size_t pairs = ((size_t)dim + 1) / 2, total = (size_t)n * pairs;
    const uint32_t st = (uint32_t)*step;
    GRID_STRIDE_LOOP(t, total) {
        const size_t s = t / pairs, e0 = t % pairs * 2, row = s * dim;
        uint32_t bits[4];
        philox_op_block(seed, PHILOX_PURPOSE_NORMAL, layer, st, first_sample + (uint32_t)s, (uint32_t)(e0 / 2), bits);
        for (size_t e = e0; e < e0 + 2 && e < (size_t)dim; e++) {
            const float r = philox_normal(bits[2 * (e - e0)], bits[2 * (e - e0) + 1]);
            const float sd = (float)exp(0.5 * (double)logvar[row + e]);
            eps[row + e] = r;
            z[row + e] = __fadd_rn(mean[row + e], __fmul_rn(r, sd));
        }
    }
}

__global__ void reparam_backward_kernel(const float *logvar, const float *eps, const float *dz, size_t total,
                                        float *dmean, float *dlogvar) {
    GRID_STRIDE_LOOP(i, total) {
        const float g = dz[i], sd = (float)exp(0.5 * (double)logvar[i]);
        dlogvar[i] = __fmul_rn(__fmul_rn(__fmul_rn(g, eps[i]), sd), 0.5f);
        dmean[i] = g;
    }
}

// partials[block] = this block's sum of -0.5 (1 + lv - m^2 - exp(lv)), in double.
__global__ void kl_partials_kernel(const float *mean, const float *logvar, size_t count, double *partials) {
    double sum = 0.0;
    GRID_STRIDE_LOOP(i, count) {
        const double m = mean[i], lv = logvar[i];
        sum += -0.5 * (1.0 + lv - m * m - exp(lv));
    }
    sum = block_reduce_sum(sum);
    if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

__global__ void kl_finish_kernel(const double *partials, int blocks, float *out) {
    double sum = 0.0;
    for (int i = threadIdx.x; i < blocks; i += blockDim.x) sum += partials[i];
    sum = block_reduce_sum(sum);
    if (threadIdx.x == 0) *out = (float)sum;
}

__global__ void kl_backward_kernel(const float *mean, const float *logvar, size_t count, float scale, float *dmean,
                                   float *dlogvar) {
    GRID_STRIDE_LOOP(i, count) {
        dmean[i] = __fadd_rn(dmean[i], __fmul_rn(scale, mean[i]));
        const float g = (float)(0.5 * (exp((double)logvar[i]) - 1.0));
        dlogvar[i] = __fadd_rn(dlogvar[i], __fmul_rn(scale, g));
    }
}

static void dropout_apply(OpsContext *ctx, const char *op, const float *in, float *out, int n, size_t per_sample,
                          int64_t first_sample, float p, uint64_t seed, uint32_t layer, const int32_t *step) {
    check_dropout_p(op, p);
    check_counter(op, n, first_sample, layer, step);
    const size_t total = (size_t)n * per_sample;
    cudaStream_t stream = cuda_stream(ctx);
    if (!total) return;
    if (p == 0.0f) {
        if (in != out) CUDA_CHECK(cudaMemcpyAsync(out, in, total * sizeof(float), cudaMemcpyDeviceToDevice, stream));
        return;
    }
    if (p == 1.0f) {
        CUDA_CHECK(cudaMemsetAsync(out, 0, total * sizeof(float), stream));
        return;
    }
    const float scale = (float)(1.0 / (1.0 - (double)p));
    const size_t threads = (size_t)n * ((per_sample + 3) / 4);
    dropout_kernel<<<cuda_grid(threads, CUDA_BLOCK), CUDA_BLOCK, 0, stream>>>(in, out, n, per_sample,
                                                                            (uint32_t)first_sample, p, scale, seed,
                                                                            layer, step);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_dropout_forward(OpsContext *ctx, const float *x, float *y, int n, size_t per_sample, int64_t first_sample,
                          float p, uint64_t seed, uint32_t layer, const int32_t *step) {
    dropout_apply(ctx, "dropout_forward", x, y, n, per_sample, first_sample, p, seed, layer, step);
}

void cuda_dropout_backward(OpsContext *ctx, const float *dy, float *dx, int n, size_t per_sample,
                           int64_t first_sample, float p, uint64_t seed, uint32_t layer, const int32_t *step) {
    dropout_apply(ctx, "dropout_backward", dy, dx, n, per_sample, first_sample, p, seed, layer, step);
}

void cuda_reparam_forward(OpsContext *ctx, const float *mean, const float *logvar, int n, int dim,
                          int64_t first_sample, uint64_t seed, uint32_t layer, const int32_t *step, float *z,
                          float *eps) {
    CHECK(dim >= 0, "reparam_forward: dim = %d must be >= 0", dim);
    check_counter("reparam_forward", n, first_sample, layer, step);
    const size_t threads = (size_t)n * (((size_t)dim + 1) / 2);
    if (!threads) return;
    reparam_kernel<<<cuda_grid(threads, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(
        mean, logvar, n, dim, (uint32_t)first_sample, seed, layer, step, z, eps);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_reparam_backward(OpsContext *ctx, const float *logvar, const float *eps, const float *dz, int n, int dim,
                           float *dmean, float *dlogvar) {
    const size_t total = (size_t)(n > 0 ? n : 0) * (size_t)(dim > 0 ? dim : 0);
    if (!total) return;
    reparam_backward_kernel<<<cuda_grid(total, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(logvar, eps, dz, total,
                                                                                             dmean, dlogvar);
    CUDA_CHECK(cudaGetLastError());
}

// Two passes like cuda_elementwise.cu's reductions: a block count that depends on count only, so
// the order (and the bits) never change from run to run.
void cuda_kl_forward(OpsContext *ctx, const float *mean, const float *logvar, size_t count, float *out) {
    CudaBackend *be = cuda_backend(ctx);
    size_t blocks = (count + CUDA_BLOCK - 1) / CUDA_BLOCK;
    if (blocks > CUDA_REDUCE_BLOCKS) blocks = CUDA_REDUCE_BLOCKS;
    if (blocks == 0) blocks = 1;   // count = 0: one block writes 0
    kl_partials_kernel<<<(unsigned)blocks, CUDA_BLOCK, 0, be->stream>>>(mean, logvar, count, be->partials);
    CUDA_CHECK(cudaGetLastError());
    kl_finish_kernel<<<1, 1024, 0, be->stream>>>(be->partials, (int)blocks, out);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_kl_backward(OpsContext *ctx, const float *mean, const float *logvar, size_t count, float scale,
                      float *dmean, float *dlogvar) {
    if (!count) return;
    kl_backward_kernel<<<cuda_grid(count, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(mean, logvar, count, scale,
                                                                                        dmean, dlogvar);
    CUDA_CHECK(cudaGetLastError());
}
