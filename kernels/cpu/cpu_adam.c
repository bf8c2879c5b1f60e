// cpu_adam.c: torch.optim.Adam (amsgrad, maximize, foreach and fused off) over one flat buffer,
// and the step bookkeeping that decides, without the host, whether this step updates at all.
#include <math.h>

#include "../../src/core/common.h"
#include "cpu_internal.h"

// Mirrors torch 1.13's _single_tensor_adam for float32 tensors on the CPU, op by op, so that the
// two agree bit for bit when given the same hyperparameter values (test_ops_adam pins a known answer):
//   g  = g + wd * p                    grad.add(param, alpha=wd): an FMA in ATen's vector path
//   m  = m * b1;  m = m + (1 - b1) g   exp_avg.mul_(b1).add_(g, alpha=1-b1): mul, then an FMA
//   v  = v * b2;  v = v + ((1 - b2) g) g   exp_avg_sq.mul_(b2).addcmul_(g, g, value=1-b2): mul, then
//                                      ATen's (value * t1) * t2 + self, which GCC contracts to an FMA
//   denom = sqrt(v) / sqrt(bc2) + eps
//   p  = p + ((-lr / bc1) m) / denom   param.addcdiv_(m, denom, value=-step_size)
// The scalars come from adam_scalars (formed in double, rounded once, as Python does).
// The loop vectorizes only with -fno-math-errno (else sqrtf keeps an errno branch); the results are
// the same either way, since vsqrtps and vdivps round exactly as their scalar forms.
void cpu_adam_update(OpsContext *ctx, float *params, const float *grads, float *exp_avg, float *exp_avg_sq, size_t n,
                     const StepState *state) {
    if (!state->finite) return;
    const AdamScalars s = state->adam;
    CHECK(s.bias_correction2_sqrt > 0.0f, "adam_update before any step_commit (bias correction 0)");
    int decay = s.weight_decay != 0.0f;   // loop-invariant: the compiler unswitches it
    // Element-wise: the threads' static split cannot change any result.
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        if (decay) g = fmaf(params[i], s.weight_decay, g);
        float m = fmaf(g, s.one_minus_beta1, exp_avg[i] * s.beta1);
        float v = fmaf(s.one_minus_beta2 * g, g, exp_avg_sq[i] * s.beta2);
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        float denom = sqrtf(v) / s.bias_correction2_sqrt + s.eps;
        params[i] = params[i] + s.neg_step_size * m / denom;
    }
}

void cpu_flag_nonfinite(OpsContext *ctx, const float *values, int n, float *flag) {
    (void)ctx;
    int finite = 1;
    for (int i = 0; i < n; i++) finite &= isfinite(values[i]) != 0;
    *flag = finite ? 0.0f : NAN;
}

void cpu_step_commit(OpsContext *ctx, StepState *state, const float *grad_sumsq, const AdamHyper *hyper) {
    (void)ctx;
    state->steps++;
    state->finite = isfinite(*grad_sumsq) != 0;
    if (state->finite) {
        state->adam_steps++;
        state->adam = adam_scalars(hyper, state->adam_steps);
    } else {
        state->skipped++;
        state->last_skipped = state->steps;
    }
}
