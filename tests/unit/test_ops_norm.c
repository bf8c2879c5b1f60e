// test_ops_norm.c: the CPU GroupNorm (kernels/cpu/cpu_norm.c) against a naive reference in double
// (statistics, output, and the analytic gradients), and its backward against central finite
// differences of its own forward.
//
// Shapes: several groups, one group (LayerNorm-like), one channel per group (InstanceNorm-like),
// the VQModel's 32 groups, odd hw; data with a mean of 3 next to a spread of 1 (the two-pass
// variance must keep its digits). Tolerances (normwise, the measured worst is printed):
// - forward, mean, rstd vs double: 1e-6; dx, dgamma, dbeta vs double: 1e-5.
// - finite differences of L = sum(y * w) (w random) with h = 1e-2: 5e-4 of max|grad| (the
//   truncation error of a step of 1e-2 in a smooth function, and the float rounding of L).
#include <string.h>

#include "core/common.h"
#include "grad_check.h"
#include "kernels/ops.h"
#include "test_util.h"

static const double REF_TOL = 1e-6, GRAD_TOL = 1e-5, FD_TOL = 5e-4;

typedef struct {
    int n, c, hw, groups;
    float eps;
} NormCase;

typedef struct {
    OpsContext *ctx;
    const NormCase *nc;
    float *x, *gamma, *beta, *w, *y, *mean, *rstd;
} NormRun;

static size_t case_count(const NormCase *nc) { return (size_t)nc->n * nc->c * nc->hw; }

// Double statistics of every (sample, group), then y, and (when dy is given) the analytic
// gradients: dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy gamma.
static void ref_group_norm(const NormCase *nc, const float *x, const float *gamma, const float *beta,
                           const float *dy, double *y, double *mean, double *rstd, double *dx, double *dgamma,
                           double *dbeta) {
    const int per = nc->c / nc->groups;
    const size_t count = (size_t)per * nc->hw;
    if (dy) memset(dgamma, 0, nc->c * sizeof(double)), memset(dbeta, 0, nc->c * sizeof(double));
    for (int s = 0; s < nc->n * nc->groups; s++) {
        const float *xs = x + s * count;
        double sum = 0.0, dev = 0.0;
        for (size_t i = 0; i < count; i++) sum += xs[i];
        const double m = sum / count;
        for (size_t i = 0; i < count; i++) dev += (xs[i] - m) * (xs[i] - m);
        const double r = 1.0 / sqrt(dev / count + nc->eps);
        mean[s] = m, rstd[s] = r;
        const int ch0 = (s % nc->groups) * per;
        double sg = 0.0, sgx = 0.0;
        for (size_t i = 0; i < count; i++) {
            const int ch = ch0 + (int)(i / nc->hw);
            const double xhat = (xs[i] - m) * r;
            y[s * count + i] = xhat * gamma[ch] + beta[ch];
            if (!dy) continue;
            const double g = (double)dy[s * count + i] * gamma[ch];
            sg += g, sgx += g * xhat;
            dgamma[ch] += dy[s * count + i] * xhat;
            dbeta[ch] += dy[s * count + i];
        }
        if (!dy) continue;
        for (size_t i = 0; i < count; i++) {
            const int ch = ch0 + (int)(i / nc->hw);
            const double xhat = (xs[i] - m) * r, g = (double)dy[s * count + i] * gamma[ch];
            dx[s * count + i] = r * (g - sg / count - xhat * sgx / count);
        }
    }
}

static double norm_loss(void *state) {
    NormRun *r = state;
    const NormCase *nc = r->nc;
    r->ctx->ops->group_norm_forward(r->ctx, r->x, r->gamma, r->beta, nc->n, nc->c, nc->hw, nc->groups, nc->eps, r->y,
                                    r->mean, r->rstd);
    return grad_dot(r->y, r->w, case_count(nc));
}

static void to_float_stats(const double *a, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = (float)a[i];
}

static void test_case(OpsContext *ctx, TestCounts *t, const NormCase *nc, double worst[3]) {
    const size_t count = case_count(nc), stats = (size_t)nc->n * nc->groups;
    NormRun r = {ctx, nc, xmalloc(count * 4), xmalloc(nc->c * 4), xmalloc(nc->c * 4), xmalloc(count * 4),
                 xmalloc(count * 4), xmalloc(stats * 4), xmalloc(stats * 4)};
    grad_fill_normal(r.x, count, 3.0f, 1.0f, (uint64_t)nc->c * 1000 + nc->hw);
    grad_fill_normal(r.gamma, nc->c, 1.0f, 0.5f, 1);
    grad_fill_normal(r.beta, nc->c, 0.0f, 0.5f, 2);
    grad_fill_normal(r.w, count, 0.0f, 1.0f, 3);
    double *y = xmalloc(count * 8), *mean = xmalloc(stats * 8), *rstd = xmalloc(stats * 8);
    double *dx = xmalloc(count * 8), *dg = xmalloc(nc->c * 8), *db = xmalloc(nc->c * 8);
    ref_group_norm(nc, r.x, r.gamma, r.beta, r.w, y, mean, rstd, dx, dg, db);

    norm_loss(&r);
    double e_fwd = fmax(grad_error(r.y, y, count), grad_error(r.mean, mean, stats));
    e_fwd = fmax(e_fwd, grad_error(r.rstd, rstd, stats));
    EXPECT(t, e_fwd <= REF_TOL, "group_norm_forward n=%d c=%d hw=%d groups=%d vs double: %.3g", nc->n, nc->c, nc->hw,
           nc->groups, e_fwd);

    float *gx = xmalloc(count * 4), *gg = xmalloc(nc->c * 4), *gb = xmalloc(nc->c * 4);
    ctx->ops->group_norm_backward(ctx, r.x, r.gamma, r.mean, r.rstd, r.w, nc->n, nc->c, nc->hw, nc->groups, gx, gg, gb);
    double e_grad = fmax(grad_error(gx, dx, count), fmax(grad_error(gg, dg, nc->c), grad_error(gb, db, nc->c)));
    EXPECT(t, e_grad <= GRAD_TOL, "group_norm_backward n=%d c=%d hw=%d groups=%d vs double: %.3g", nc->n, nc->c, nc->hw,
           nc->groups, e_grad);

    const size_t stride = count > 200 ? count / 97 : 1;
    double e_fd = grad_fd_error(norm_loss, &r, r.x, count, gx, stride, 1e-2f);
    e_fd = fmax(e_fd, grad_fd_error(norm_loss, &r, r.gamma, nc->c, gg, 1, 1e-2f));
    e_fd = fmax(e_fd, grad_fd_error(norm_loss, &r, r.beta, nc->c, gb, 1, 1e-2f));
    EXPECT(t, e_fd <= FD_TOL, "group_norm gradients vs finite differences n=%d c=%d hw=%d groups=%d: %.3g", nc->n,
           nc->c, nc->hw, nc->groups, e_fd);
    worst[0] = fmax(worst[0], e_fwd), worst[1] = fmax(worst[1], e_grad), worst[2] = fmax(worst[2], e_fd);

    // The backward reads only the saved statistics: rounded double ones give the same gradients.
    to_float_stats(mean, r.mean, stats);
    to_float_stats(rstd, r.rstd, stats);
    float *gx2 = xmalloc(count * 4);
    ctx->ops->group_norm_backward(ctx, r.x, r.gamma, r.mean, r.rstd, r.w, nc->n, nc->c, nc->hw, nc->groups, gx2, gg,
                                  gb);
    EXPECT(t, grad_error(gx2, dx, count) <= GRAD_TOL, "group_norm_backward from double-derived statistics");
    free(gx2);

    void *bufs[] = {r.x, r.gamma, r.beta, r.w, r.y, r.mean, r.rstd, y, mean, rstd, dx, dg, db, gx, gg, gb};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

// A constant group: variance 0, so rstd = 1 / sqrt(eps) and y = beta; dx is finite.
static void test_constant_group(OpsContext *ctx, TestCounts *t) {
    float x[8] = {2, 2, 2, 2, 5, 5, 5, 5}, gamma[2] = {1.5f, -1}, beta[2] = {0.25f, 4}, y[8], mean[2], rstd[2];
    float dy[8] = {1, -2, 3, 0.5f, 1, 1, 1, 1}, dx[8], dg[2], db[2];
    ctx->ops->group_norm_forward(ctx, x, gamma, beta, 1, 2, 4, 2, 1e-5f, y, mean, rstd);
    int ok = mean[0] == 2.0f && mean[1] == 5.0f && fabsf(rstd[0] - 1.0f / sqrtf(1e-5f)) < 1e-2f;
    for (int i = 0; i < 8; i++) ok &= y[i] == beta[i / 4];
    EXPECT(t, ok, "group_norm_forward on constant groups: mean %g %g rstd %g y0 %g", mean[0], mean[1], rstd[0], y[0]);
    ctx->ops->group_norm_backward(ctx, x, gamma, mean, rstd, dy, 1, 2, 4, 2, dx, dg, db);
    ok = db[0] == 2.5f && db[1] == 4.0f && dg[0] == 0.0f && dg[1] == 0.0f;
    for (int i = 0; i < 8; i++) ok &= isfinite(dx[i]);
    EXPECT(t, ok, "group_norm_backward on constant groups: dbeta %g %g dgamma %g %g", db[0], db[1], dg[0], dg[1]);
}

// n = 0: nothing to normalize; the parameter gradients are zero (overwritten).
static void test_empty_batch(OpsContext *ctx, TestCounts *t) {
    float gamma[4] = {1, 1, 1, 1}, beta[4] = {0, 0, 0, 0}, dg[4] = {9, 9, 9, 9}, db[4] = {9, 9, 9, 9};
    ctx->ops->group_norm_forward(ctx, NULL, gamma, beta, 0, 4, 3, 2, 1e-5f, NULL, NULL, NULL);
    ctx->ops->group_norm_backward(ctx, NULL, gamma, NULL, NULL, NULL, 0, 4, 3, 2, NULL, dg, db);
    int ok = 1;
    for (int i = 0; i < 4; i++) ok &= dg[i] == 0.0f && db[i] == 0.0f;
    EXPECT(t, ok, "group_norm_backward with n = 0 should zero dgamma and dbeta");
}

int main(void) {
    TestCounts t = {0, 0};
    OpsContext ctx;
    memset(&ctx, 0, sizeof ctx);
    cpu_context_init(&ctx, 1);
    const NormCase cases[] = {
        {2, 8, 9, 4, 1e-5f}, {3, 6, 5, 1, 1e-6f}, {2, 4, 7, 4, 1e-5f}, {1, 64, 16, 32, 1e-6f}, {2, 12, 1, 3, 1e-5f},
    };
    double worst[3] = {0, 0, 0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_case(&ctx, &t, &cases[i], worst);
    printf("group_norm: forward vs double %.2g, backward vs double %.2g, finite differences %.2g\n", worst[0],
           worst[1], worst[2]);
    test_constant_group(&ctx, &t);
    test_empty_batch(&ctx, &t);
    cpu_context_destroy(&ctx);
    return test_finish("test_ops_norm", &t);
}
