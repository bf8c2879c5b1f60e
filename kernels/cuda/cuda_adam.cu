// cuda_adam.cu: torch.optim.Adam (amsgrad off) over one flat buffer, one elementwise kernel.
// Mirrors kernels/cpu/cpu_adam.c operation by operation (the FMAs where ATen / the CPU backend
// has them, plain rounded multiplies and adds elsewhere, via the _rn intrinsics that nvcc never
// contracts), with the same host-side scalars, so the two backends agree bit for bit:
//   g = fma(p, wd, g)                       (only when wd != 0)
//   m = fma(g, 1 - b1, m * b1)
//   v = fma((1 - b2) g, g, v * b2)
//   denom = sqrt(v) / sqrt(bc2) + eps
//   p = p + ((-lr / bc1) m) / denom
#include <math.h>

#include "cuda_common.h"

__global__ void adam_kernel(float *params, const float *grads, float *exp_avg, float *exp_avg_sq, size_t n,
                            float beta1, float beta2, float one_minus_b1, float one_minus_b2, float eps,
                            float weight_decay, float neg_step_size, float bias_correction2_sqrt) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float p = params[i];
        float g = grads[i];
        if (weight_decay != 0.0f) g = __fmaf_rn(p, weight_decay, g);
        float m = __fmaf_rn(g, one_minus_b1, __fmul_rn(exp_avg[i], beta1));
        float v = __fmaf_rn(__fmul_rn(one_minus_b2, g), g, __fmul_rn(exp_avg_sq[i], beta2));
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), bias_correction2_sqrt), eps);
        params[i] = __fadd_rn(p, __fdiv_rn(__fmul_rn(neg_step_size, m), denom));
    }
}

void cuda_adam_update(OpsContext *ctx, float *params, const float *grads, float *exp_avg, float *exp_avg_sq,
                      size_t n, float lr, float beta1, float beta2, float eps, float weight_decay, long step) {
    CHECK(step >= 1, "adam_update: step must be the 1-based step after increment, got %ld", step);
    if (!n) return;
    // Python forms these in double before ATen rounds them to float; so does the CPU backend.
    double bias_correction1 = 1.0 - pow((double)beta1, (double)step);
    double bias_correction2 = 1.0 - pow((double)beta2, (double)step);
    float neg_step_size = (float)(-((double)lr / bias_correction1));
    float bias_correction2_sqrt = (float)sqrt(bias_correction2);
    float one_minus_b1 = (float)(1.0 - (double)beta1);
    float one_minus_b2 = (float)(1.0 - (double)beta2);
    adam_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(
        params, grads, exp_avg, exp_avg_sq, n, beta1, beta2, one_minus_b1, one_minus_b2, eps, weight_decay,
        neg_step_size, bias_correction2_sqrt);
    CUDA_CHECK(cudaGetLastError());
}
