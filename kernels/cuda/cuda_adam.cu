// cuda_adam.cu: torch.optim.Adam (amsgrad off) over one flat buffer, one elementwise kernel, and
// the step bookkeeping (ops.h step_commit) that lets a step skip itself without the host.
// Mirrors kernels/cpu/cpu_adam.c operation by operation (the FMAs where ATen / the CPU backend
// has them, plain rounded multiplies and adds elsewhere, via the _rn intrinsics that nvcc never
// contracts), with the same scalars, so the two backends agree bit for bit:
//   g = fma(p, wd, g)                       (only when wd != 0)
//   m = fma(g, 1 - b1, m * b1)
//   v = fma((1 - b2) g, g, v * b2)
//   denom = sqrt(v) / sqrt(bc2) + eps
//   p = p + ((-lr / bc1) m) / denom
#include <math.h>

#include "cuda_common.h"

// The scalars are read from device memory (state), so the launch is identical every step and
// can live in a CUDA graph.
__global__ void adam_kernel(float *params, const float *grads, float *exp_avg, float *exp_avg_sq, size_t n,
                            const StepState *state) {
    if (!state->finite) return;
    const AdamScalars s = state->adam;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float p = params[i];
        float g = grads[i];
        if (s.weight_decay != 0.0f) g = __fmaf_rn(p, s.weight_decay, g);
        float m = __fmaf_rn(g, s.one_minus_beta1, __fmul_rn(exp_avg[i], s.beta1));
        float v = __fmaf_rn(__fmul_rn(s.one_minus_beta2, g), g, __fmul_rn(exp_avg_sq[i], s.beta2));
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), s.bias_correction2_sqrt), s.eps);
        params[i] = __fadd_rn(p, __fdiv_rn(__fmul_rn(s.neg_step_size, m), denom));
    }
}

void cuda_adam_update(OpsContext *ctx, float *params, const float *grads, float *exp_avg, float *exp_avg_sq,
                      size_t n, const StepState *state) {
    if (!n) return;
    adam_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(params, grads, exp_avg, exp_avg_sq, n,
                                                                             state);
    CUDA_CHECK(cudaGetLastError());
}

__global__ void flag_nonfinite_kernel(const float *values, int n, float *flag) {
    int finite = 1;
    for (int i = 0; i < n; i++) finite &= isfinite(values[i]) ? 1 : 0;
    *flag = finite ? 0.0f : __int_as_float(0x7fc00000);   // quiet NaN
}

void cuda_flag_nonfinite(OpsContext *ctx, const float *values, int n, float *flag) {
    flag_nonfinite_kernel<<<1, 1, 0, cuda_stream(ctx)>>>(values, n, flag);
    CUDA_CHECK(cudaGetLastError());
}

// One thread. adam_scalars (ops.h) is the CPU backend's formula; CUDA's double pow and sqrt are
// correctly rounded or within an ulp of glibc's, so the float results match the CPU backend's
// except in the rarest rounding ties.
__global__ void step_commit_kernel(StepState *state, const float *grad_sumsq, AdamHyper hyper) {
    state->steps++;
    state->finite = isfinite(*grad_sumsq) ? 1 : 0;
    if (!state->finite) {
        state->skipped++;
        state->last_skipped = state->steps;
        return;
    }
    state->adam_steps++;
    state->adam = adam_scalars(&hyper, state->adam_steps);
}

void cuda_step_commit(OpsContext *ctx, StepState *state, const float *grad_sumsq, const AdamHyper *hyper) {
    step_commit_kernel<<<1, 1, 0, cuda_stream(ctx)>>>(state, grad_sumsq, *hyper);
    CUDA_CHECK(cudaGetLastError());
}
