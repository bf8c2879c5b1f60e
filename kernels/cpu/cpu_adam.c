// cpu_adam.c: torch.optim.Adam (amsgrad, maximize, foreach and fused off) over one flat buffer.
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
// The scalars (1 - b, bias corrections, step size) are formed in double and rounded to float once,
// as Python computes them before ATen casts them to the tensor's dtype.
// The loop vectorizes only with -fno-math-errno (else sqrtf keeps an errno branch); the results are
// the same either way, since vsqrtps and vdivps round exactly as their scalar forms.
void cpu_adam_update(OpsContext *ctx, float *params, const float *grads, float *exp_avg, float *exp_avg_sq, size_t n,
                     float lr, float beta1, float beta2, float eps, float weight_decay, long step) {
    CHECK(step >= 1, "adam_update: step must be the 1-based step after increment, got %ld", step);
    double bias_correction1 = 1.0 - pow((double)beta1, (double)step);
    double bias_correction2 = 1.0 - pow((double)beta2, (double)step);
    float neg_step_size = (float)(-((double)lr / bias_correction1));
    float bias_correction2_sqrt = (float)sqrt(bias_correction2);
    float one_minus_b1 = (float)(1.0 - (double)beta1);
    float one_minus_b2 = (float)(1.0 - (double)beta2);
    int decay = weight_decay != 0.0f;   // loop-invariant: the compiler unswitches it
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        if (decay) g = fmaf(params[i], weight_decay, g);
        float m = fmaf(g, one_minus_b1, exp_avg[i] * beta1);
        float v = fmaf(one_minus_b2 * g, g, exp_avg_sq[i] * beta2);
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        float denom = sqrtf(v) / bias_correction2_sqrt + eps;
        params[i] = params[i] + neg_step_size * m / denom;
    }
}
