// cpu_random.c: the ops that draw random numbers (dropout, the VAE's reparameterization) and the
// KL term, on the CPU backend. The numbers come from src/core/philox.h's counter layout, keyed on
// the global sample and the element within it, so they never depend on batch slicing or ranks;
// cuda_random.cu draws the same bits.
#include <math.h>
#include <string.h>

#include "../../src/core/common.h"
#include "../../src/core/philox.h"
#include "../op_checks.h"
#include "cpu_internal.h"

// The checks both random ops make before drawing: ids that fit the counter layout.
// y = x * mask / (1 - p), or dx = dy * mask / (1 - p): the same code for both directions.
static void dropout_apply(const char *op, const float *in, float *out, int n, size_t per_sample, int64_t first_sample,
                          float p, uint64_t seed, uint32_t layer, const int32_t *step) {
    check_dropout_p(op, p);
    check_counter(op, n, first_sample, layer, step);
    const size_t total = (size_t)n * per_sample;
    if (p == 0.0f) {
        if (total && in != out) memmove(out, in, total * sizeof(float));
        return;
    }
    if (p == 1.0f) {   // everything dropped (1 / (1 - p) would be inf, and 0 * inf NaN)
        if (total) memset(out, 0, total * sizeof(float));
        return;
    }
    const float scale = (float)(1.0 / (1.0 - (double)p));
    for (int s = 0; s < n; s++) {
        const float *src = in + (size_t)s * per_sample;
        float *dst = out + (size_t)s * per_sample;
        for (size_t e0 = 0; e0 < per_sample; e0 += 4) {
            uint32_t bits[4];
            philox_op_block(seed, PHILOX_PURPOSE_DROPOUT, layer, (uint32_t)*step, (uint32_t)(first_sample + s),
                            (uint32_t)(e0 / 4), bits);
            for (size_t e = e0; e < e0 + 4 && e < per_sample; e++)
                dst[e] = philox_uniform(bits[e - e0]) >= p ? src[e] * scale : 0.0f;
        }
    }
}

void cpu_dropout_forward(OpsContext *ctx, const float *x, float *y, int n, size_t per_sample, int64_t first_sample,
                         float p, uint64_t seed, uint32_t layer, const int32_t *step) {
    dropout_apply("dropout_forward", x, y, n, per_sample, first_sample, p, seed, layer, step);
}

void cpu_dropout_backward(OpsContext *ctx, const float *dy, float *dx, int n, size_t per_sample,
                          int64_t first_sample, float p, uint64_t seed, uint32_t layer, const int32_t *step) {
    dropout_apply("dropout_backward", dy, dx, n, per_sample, first_sample, p, seed, layer, step);
}

// exp(0.5 logvar) in double, rounded once: the same float on every backend in practice.
static inline float half_exp(float logvar) { return (float)exp(0.5 * (double)logvar); }

void cpu_reparam_forward(OpsContext *ctx, const float *mean, const float *logvar, int n, int dim,
                         int64_t first_sample, uint64_t seed, uint32_t layer, const int32_t *step, float *z,
                         float *eps) {
    CHECK(dim >= 0, "reparam_forward: dim = %d must be >= 0", dim);
    check_counter("reparam_forward", n, first_sample, layer, step);
    for (int s = 0; s < n; s++) {
        const size_t row = (size_t)s * dim;
        for (int e0 = 0; e0 < dim; e0 += 2) {
            uint32_t bits[4];
            philox_op_block(seed, PHILOX_PURPOSE_NORMAL, layer, (uint32_t)*step, (uint32_t)(first_sample + s),
                            (uint32_t)(e0 / 2), bits);
            for (int e = e0; e < e0 + 2 && e < dim; e++) {
                const float r = philox_normal(bits[2 * (e - e0)], bits[2 * (e - e0) + 1]);
                eps[row + e] = r;
                z[row + e] = mean[row + e] + r * half_exp(logvar[row + e]);
            }
        }
    }
}

void cpu_reparam_backward(OpsContext *ctx, const float *logvar, const float *eps, const float *dz, int n, int dim,
                          float *dmean, float *dlogvar) {
    const size_t total = (size_t)(n > 0 ? n : 0) * (size_t)(dim > 0 ? dim : 0);
    for (size_t i = 0; i < total; i++) {
        const float g = dz[i];   // dmean may alias dz
        dlogvar[i] = g * eps[i] * half_exp(logvar[i]) * 0.5f;
        dmean[i] = g;
    }
}

// Each term in double (exp included), summed in index order, rounded to float once.
void cpu_kl_forward(OpsContext *ctx, const float *mean, const float *logvar, size_t count, float *out) {
    double sum = 0.0;
    for (size_t i = 0; i < count; i++) {
        const double m = mean[i], lv = logvar[i];
        sum += -0.5 * (1.0 + lv - m * m - exp(lv));
    }
    *out = (float)sum;
}

void cpu_kl_backward(OpsContext *ctx, const float *mean, const float *logvar, size_t count, float scale,
                     float *dmean, float *dlogvar) {
    for (size_t i = 0; i < count; i++) {
        dmean[i] += scale * mean[i];
        dlogvar[i] += scale * (float)(0.5 * (exp((double)logvar[i]) - 1.0));
    }
}
