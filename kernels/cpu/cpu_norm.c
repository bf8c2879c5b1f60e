// cpu_norm.c: GroupNorm (PyTorch nn.GroupNorm, affine) on the CPU backend. In [n, c, hw] layout a
// group's c / groups channels are one contiguous run of (c / groups) hw values, so every sum below
// walks memory in order. Statistics and parameter gradients are summed in double, in a fixed order.
#include <math.h>

#include "../../src/core/common.h"
#include "../op_checks.h"
#include "cpu_internal.h"

// Two passes (the mean, then the squared deviations from it), so the variance keeps its digits
// when the mean is large next to the spread.
void cpu_group_norm_forward(OpsContext *ctx, const float *x, const float *gamma, const float *beta, int n, int c,
                            int hw, int groups, float eps, float *y, float *mean, float *rstd) {
    check_group_shape("group_norm_forward", n, c, hw, groups);
    const int per_group = c / groups;
    const size_t count = (size_t)per_group * (size_t)hw;
    for (int s = 0; s < n * groups; s++) {
        const size_t base = (size_t)s * count;
        double sum = 0.0;
        for (size_t i = 0; i < count; i++) sum += (double)x[base + i];
        const double mu = sum / (double)count;
        double dev = 0.0;
        for (size_t i = 0; i < count; i++) {
            double d = (double)x[base + i] - mu;
            dev += d * d;
        }
        const float m = (float)mu, r = (float)(1.0 / sqrt(dev / (double)count + (double)eps));
        mean[s] = m;
        rstd[s] = r;
        const int first_channel = (s % groups) * per_group;
        for (int ch = 0; ch < per_group; ch++) {
            const float g = gamma[first_channel + ch], b = beta[first_channel + ch];
            const float *xc = x + base + (size_t)ch * hw;
            float *yc = y + base + (size_t)ch * hw;
            for (int i = 0; i < hw; i++) yc[i] = (xc[i] - m) * r * g + b;
        }
    }
}

// dx of one group (count values starting at x, dy, dx; its channels start at gamma):
// dx = rstd (dy gamma - mean(dy gamma) - xhat mean(dy gamma xhat)).
static void group_input_grad(const float *x, const float *gamma, const float *dy, int per_group, int hw, float m,
                             float r, float *dx) {
    double sum_g = 0.0, sum_gx = 0.0;
    for (int ch = 0; ch < per_group; ch++) {
        for (int i = 0; i < hw; i++) {
            const size_t e = (size_t)ch * hw + i;
            const float g = dy[e] * gamma[ch], xhat = (x[e] - m) * r;
            sum_g += (double)g;
            sum_gx += (double)g * (double)xhat;
        }
    }
    const double count = (double)per_group * (double)hw;
    const float mean_g = (float)(sum_g / count), mean_gx = (float)(sum_gx / count);
    for (int ch = 0; ch < per_group; ch++) {
        for (int i = 0; i < hw; i++) {
            const size_t e = (size_t)ch * hw + i;
            const float g = dy[e] * gamma[ch], xhat = (x[e] - m) * r;
            dx[e] = r * (g - mean_g - xhat * mean_gx);
        }
    }
}

void cpu_group_norm_backward(OpsContext *ctx, const float *x, const float *gamma, const float *mean,
                             const float *rstd, const float *dy, int n, int c, int hw, int groups, float *dx,
                             float *dgamma, float *dbeta) {
    check_group_shape("group_norm_backward", n, c, hw, groups);
    const int per_group = c / groups;
    const size_t count = (size_t)per_group * (size_t)hw;
    for (int s = 0; s < n * groups; s++) {
        const size_t base = (size_t)s * count;
        group_input_grad(x + base, gamma + (s % groups) * per_group, dy + base, per_group, hw, mean[s], rstd[s],
                         dx + base);
    }
    // Per channel, over the samples in order, then the positions.
    for (int ch = 0; ch < c; ch++) {
        double sum_dy = 0.0, sum_dyx = 0.0;
        for (int b = 0; b < n; b++) {
            const int s = b * groups + ch / per_group;
            const float m = mean[s], r = rstd[s];
            const size_t base = ((size_t)b * c + ch) * (size_t)hw;
            for (int i = 0; i < hw; i++) {
                const float xhat = (x[base + i] - m) * r;
                sum_dy += (double)dy[base + i];
                sum_dyx += (double)dy[base + i] * (double)xhat;
            }
        }
        dgamma[ch] = (float)sum_dyx;
        dbeta[ch] = (float)sum_dy;
    }
}
