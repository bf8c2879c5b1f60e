// test_ops_random.c: the CPU dropout, reparameterization and KL ops (kernels/cpu/cpu_random.c).
// - The numbers follow the counter layout documented in src/core/philox.h, bit for bit (the
//   test rebuilds each mask bit and eps from philox4x32_10 and that description).
// - Invariance: a sample gets the same mask / eps whatever batch slice or position it sits in,
//   given its global index; another step, layer or seed gives other numbers.
// - Dropout: p = 0 copies bit for bit, p = 1 zeros, kept values are x * (float)(1 / (1 - p)), the
//   kept fraction is 1 - p within 5 sigma, the backward applies the same mask; in-place calls.
// - eps is N(0, 1) (mean and variance within 5 sigma over 64k draws); z, dmean, dlogvar vs double
//   (1e-6 normwise) and finite differences of the forward (eps is a pure function of the keys).
// - KL: forward vs a double sum (1e-6), backward accumulates the analytic gradient (1e-6) and
//   matches finite differences of the forward.
#include <string.h>

#include "core/common.h"
#include "core/philox.h"
#include "grad_check.h"
#include "kernels/ops.h"
#include "test_util.h"

static const uint64_t SEED = 0x0123456789abcdefull;

// The documented layout, written out from philox.h's comment with the exported block function.
static void doc_block(uint32_t purpose, uint32_t layer, uint32_t step, uint32_t sample, uint32_t block,
                      uint32_t out[4]) {
    const uint32_t key[2] = {(uint32_t)SEED, (uint32_t)(SEED >> 32)};
    const uint32_t counter[4] = {block, sample, step, (purpose << 24) | layer};
    philox4x32_10(counter, key, out);
}

static void test_dropout_layout(OpsContext *ctx, TestCounts *t) {
    enum { N = 3, PER = 37 };
    const int32_t step = 12;
    const float p = 0.3f, scale = (float)(1.0 / (1.0 - 0.3f));
    float x[N * PER], y[N * PER];
    grad_fill_normal(x, N * PER, 1.0f, 1.0f, 1);   // no zeros in x: a 0 in y means dropped
    ctx->ops->dropout_forward(ctx, x, y, N, PER, 100, p, SEED, 5, &step);
    int ok = 1;
    for (int s = 0; s < N; s++)
        for (int e = 0; e < PER; e++) {
            uint32_t bits[4];
            doc_block(PHILOX_PURPOSE_DROPOUT, 5, 12, 100 + s, e / 4, bits);
            float want = (float)(bits[e % 4] >> 8) / 16777216.0f >= p ? x[s * PER + e] * scale : 0.0f;
            ok &= y[s * PER + e] == want;
        }
    EXPECT(t, ok, "dropout_forward does not follow the counter layout documented in src/core/philox.h");
}

// Every sample of a batch of 6 computed as one slice, as two slices, and one by one at its own
// global index: the same bits. Then other keys give other masks.
static void test_dropout_invariance(OpsContext *ctx, TestCounts *t) {
    enum { N = 6, PER = 50 };
    int32_t step = 3;
    float x[N * PER], full[N * PER], part[N * PER], other[N * PER];
    grad_fill_normal(x, N * PER, 1.0f, 1.0f, 2);
    ctx->ops->dropout_forward(ctx, x, full, N, PER, 40, 0.5f, SEED, 2, &step);
    ctx->ops->dropout_forward(ctx, x, part, 2, PER, 40, 0.5f, SEED, 2, &step);
    ctx->ops->dropout_forward(ctx, x + 2 * PER, part + 2 * PER, 4, PER, 42, 0.5f, SEED, 2, &step);
    EXPECT(t, memcmp(full, part, sizeof full) == 0, "dropout mask depends on how the batch is sliced");
    int same = 1;
    for (int s = 0; s < N; s++) {
        ctx->ops->dropout_forward(ctx, x + s * PER, part, 1, PER, 40 + s, 0.5f, SEED, 2, &step);
        same &= memcmp(part, full + s * PER, PER * 4) == 0;
    }
    EXPECT(t, same, "dropout mask of a sample alone differs from the same sample in a batch");
    const struct { int32_t step; uint32_t layer; uint64_t seed; int64_t first; } keys[] = {
        {4, 2, SEED, 40}, {3, 3, SEED, 40}, {3, 2, SEED + 1, 40}, {3, 2, SEED, 41}};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        step = keys[k].step;
        ctx->ops->dropout_forward(ctx, x, other, N, PER, keys[k].first, 0.5f, keys[k].seed, keys[k].layer, &step);
        EXPECT(t, memcmp(other, full, sizeof full) != 0, "dropout mask unchanged by key change %zu", k);
    }
}

static void test_dropout_values(OpsContext *ctx, TestCounts *t) {
    enum { N = 8, PER = 8192 };
    const size_t total = (size_t)N * PER;
    const int32_t step = 7;
    float *x = xmalloc(total * 4), *y = xmalloc(total * 4), *dy = xmalloc(total * 4), *dx = xmalloc(total * 4);
    float *tmp = xmalloc(total * 4);
    grad_fill_normal(x, total, 1.0f, 1.0f, 3);
    grad_fill_normal(dy, total, 0.0f, 1.0f, 4);
    x[5] = 0.0f;   // a zero input stays zero whatever the mask
    const float ps[] = {0.1f, 0.5f, 0.9f};
    for (int k = 0; k < 3; k++) {
        const float p = ps[k], scale = (float)(1.0 / (1.0 - (double)p));
        ctx->ops->dropout_forward(ctx, x, y, N, PER, 0, p, SEED, 9, &step);
        ctx->ops->dropout_backward(ctx, dy, dx, N, PER, 0, p, SEED, 9, &step);
        size_t kept = 0;
        int ok = 1;
        for (size_t i = 0; i < total; i++) {
            int keep = i == 5 ? dx[i] != 0.0f : y[i] != 0.0f;
            kept += (size_t)keep;
            ok &= y[i] == (keep ? x[i] * scale : 0.0f) && dx[i] == (keep ? dy[i] * scale : 0.0f);
        }
        EXPECT(t, ok, "dropout p=%g: kept values must be x / (1 - p), the backward must use the same mask", p);
        double frac = (double)kept / total, sigma = sqrt(p * (1.0 - p) / total);
        EXPECT(t, fabs(frac - (1.0 - p)) < 5 * sigma, "dropout p=%g kept %.4f of the values, expected %.4f", p, frac,
               1.0 - p);
        memcpy(tmp, x, total * 4);
        ctx->ops->dropout_forward(ctx, tmp, tmp, N, PER, 0, p, SEED, 9, &step);   // y aliases x
        EXPECT(t, memcmp(tmp, y, total * 4) == 0, "dropout_forward in place differs (p=%g)", p);
        memcpy(tmp, dy, total * 4);
        ctx->ops->dropout_backward(ctx, tmp, tmp, N, PER, 0, p, SEED, 9, &step);   // dx aliases dy
        EXPECT(t, memcmp(tmp, dx, total * 4) == 0, "dropout_backward in place differs (p=%g)", p);
        printf("dropout p=%.1f: kept %.4f (expected %.4f, sigma %.1e)\n", p, frac, 1.0 - p, sigma);
    }
    x[6] = NAN, x[7] = -0.0f;
    ctx->ops->dropout_forward(ctx, x, y, N, PER, 0, 0.0f, SEED, 9, &step);
    EXPECT(t, memcmp(x, y, total * 4) == 0, "dropout p = 0 must copy x bit for bit (NaN, -0 included)");
    memcpy(tmp, x, total * 4);
    ctx->ops->dropout_forward(ctx, tmp, tmp, N, PER, 0, 0.0f, SEED, 9, &step);
    EXPECT(t, memcmp(x, tmp, total * 4) == 0, "dropout p = 0 in place must leave x as it is");
    ctx->ops->dropout_backward(ctx, dy, dx, N, PER, 0, 0.0f, SEED, 9, &step);
    EXPECT(t, memcmp(dy, dx, total * 4) == 0, "dropout_backward p = 0 must copy dy");
    ctx->ops->dropout_forward(ctx, x, y, N, PER, 0, 1.0f, SEED, 9, &step);
    int zeros = 1;
    for (size_t i = 0; i < total; i++) zeros &= y[i] == 0.0f;
    EXPECT(t, zeros, "dropout p = 1 must give zeros (even where x is NaN)");
    free(x), free(y), free(dy), free(dx), free(tmp);
}

typedef struct {
    OpsContext *ctx;
    int n, dim;
    const int32_t *step;
    float *mean, *logvar, *z, *eps, *w;
} ReparamRun;

static double reparam_loss(void *state) {
    ReparamRun *r = state;
    r->ctx->ops->reparam_forward(r->ctx, r->mean, r->logvar, r->n, r->dim, 10, SEED, 1, r->step, r->z, r->eps);
    return grad_dot(r->z, r->w, (size_t)r->n * r->dim);
}

static void test_reparam_numbers(OpsContext *ctx, TestCounts *t) {
    enum { N = 8, DIM = 8192 };
    const size_t total = (size_t)N * DIM;
    const int32_t step = 0;
    float *mean = xcalloc(total, 4), *logvar = xcalloc(total, 4), *z = xmalloc(total * 4), *eps = xmalloc(total * 4);
    float *z2 = xmalloc(total * 4), *eps2 = xmalloc(total * 4);
    ctx->ops->reparam_forward(ctx, mean, logvar, N, DIM, 0, SEED, 3, &step, z, eps);
    int layout = 1;
    double sum = 0.0, sum2 = 0.0;
    for (size_t i = 0; i < total; i++) {
        const int s = (int)(i / DIM), e = (int)(i % DIM);
        uint32_t bits[4];
        doc_block(PHILOX_PURPOSE_NORMAL, 3, 0, (uint32_t)s, (uint32_t)(e / 2), bits);
        double u1 = ((bits[2 * (e % 2)] >> 8) + 1.0) / 16777216.0, u2 = (bits[2 * (e % 2) + 1] >> 8) / 16777216.0;
        layout &= eps[i] == (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2)) && z[i] == eps[i];
        sum += eps[i], sum2 += (double)eps[i] * eps[i];
    }
    EXPECT(t, layout, "reparam_forward's eps does not follow the layout in src/core/philox.h (or z != eps at 0, 0)");
    const double m = sum / total, var = sum2 / total - m * m;
    EXPECT(t, fabs(m) < 5.0 / sqrt(total) && fabs(var - 1.0) < 5.0 * sqrt(2.0 / total),
           "eps is not N(0, 1): mean %.4f variance %.4f over %zu draws", m, var, total);
    printf("reparam: eps mean %.4f variance %.4f over %zu draws\n", m, var, total);
    // Sliced: samples 1..3 as their own batch starting at global index 1.
    ctx->ops->reparam_forward(ctx, mean, logvar, N - 1, DIM, 1, SEED, 3, &step, z2, eps2);
    EXPECT(t, memcmp(eps2, eps + DIM, (N - 1) * DIM * 4) == 0, "eps depends on the batch slice");
    ctx->ops->reparam_forward(ctx, mean, logvar, 1, 7, 2, SEED, 3, &step, z2, eps2);   // odd dim: a half block
    EXPECT(t, memcmp(eps2, eps + 2 * DIM, 7 * 4) == 0, "eps of a short row differs from the start of the long row");
    const int32_t next = 1;
    ctx->ops->reparam_forward(ctx, mean, logvar, N, DIM, 0, SEED, 3, &next, z2, eps2);
    EXPECT(t, memcmp(eps2, eps, total * 4) != 0, "eps unchanged by the step");
    free(mean), free(logvar), free(z), free(eps), free(z2), free(eps2);
}

static void test_reparam_grad(OpsContext *ctx, TestCounts *t) {
    enum { N = 3, DIM = 16 };
    const size_t total = (size_t)N * DIM;
    const int32_t step = 5;
    ReparamRun r = {ctx, N, DIM, &step, xmalloc(total * 4), xmalloc(total * 4), xmalloc(total * 4),
                    xmalloc(total * 4), xmalloc(total * 4)};
    grad_fill_normal(r.mean, total, 0.0f, 1.0f, 5);
    grad_fill_normal(r.logvar, total, 0.0f, 1.0f, 6);
    grad_fill_normal(r.w, total, 0.0f, 1.0f, 7);
    reparam_loss(&r);
    double *want_z = xmalloc(total * 8), *want_dlv = xmalloc(total * 8), *want_dm = xmalloc(total * 8);
    for (size_t i = 0; i < total; i++) {
        const double sd = exp(0.5 * r.logvar[i]);
        want_z[i] = r.mean[i] + (double)r.eps[i] * sd;
        want_dm[i] = r.w[i];
        want_dlv[i] = r.w[i] * (double)r.eps[i] * 0.5 * sd;
    }
    EXPECT(t, grad_error(r.z, want_z, total) <= 1e-6, "reparam_forward z vs double: %.3g",
           grad_error(r.z, want_z, total));
    float *dm = xmalloc(total * 4), *dlv = xmalloc(total * 4), *dz = xmalloc(total * 4);
    ctx->ops->reparam_backward(ctx, r.logvar, r.eps, r.w, N, DIM, dm, dlv);
    double e = fmax(grad_error(dm, want_dm, total), grad_error(dlv, want_dlv, total));
    EXPECT(t, e <= 1e-6, "reparam_backward vs double: %.3g", e);
    memcpy(dz, r.w, total * 4);
    ctx->ops->reparam_backward(ctx, r.logvar, r.eps, dz, N, DIM, dz, dlv);   // dmean aliases dz
    EXPECT(t, memcmp(dz, dm, total * 4) == 0, "reparam_backward with dmean = dz differs");
    double e_fd = fmax(grad_fd_error(reparam_loss, &r, r.mean, total, dm, 1, 1e-2f),
                       grad_fd_error(reparam_loss, &r, r.logvar, total, dlv, 1, 1e-2f));
    EXPECT(t, e_fd <= 1e-3, "reparam gradients vs finite differences: %.3g", e_fd);
    printf("reparam: backward vs double %.2g, finite differences %.2g\n", e, e_fd);
    free(r.mean), free(r.logvar), free(r.z), free(r.eps), free(r.w), free(want_z), free(want_dlv), free(want_dm);
    free(dm), free(dlv), free(dz);
}

typedef struct {
    OpsContext *ctx;
    float *mean, *logvar, *out;
    size_t count;
} KlRun;

static double kl_loss(void *state) {
    KlRun *r = state;
    r->ctx->ops->kl_forward(r->ctx, r->mean, r->logvar, r->count, r->out);
    return *r->out;
}

static void test_kl(OpsContext *ctx, TestCounts *t) {
    enum { COUNT = 517 };
    const float scale = 0.25f;
    float mean[COUNT], logvar[COUNT], out, dm[COUNT], dlv[COUNT], dm0[COUNT], dlv0[COUNT];
    grad_fill_normal(mean, COUNT, 0.0f, 1.0f, 8);
    grad_fill_normal(logvar, COUNT, 0.0f, 1.0f, 9);
    grad_fill_normal(dm0, COUNT, 0.0f, 1.0f, 10);   // the reparam gradient already there
    grad_fill_normal(dlv0, COUNT, 0.0f, 1.0f, 11);
    double want = 0.0, want_dm[COUNT], want_dlv[COUNT];
    for (int i = 0; i < COUNT; i++) {
        want += -0.5 * (1.0 + logvar[i] - (double)mean[i] * mean[i] - exp(logvar[i]));
        want_dm[i] = dm0[i] + (double)scale * mean[i];
        want_dlv[i] = dlv0[i] + (double)scale * 0.5 * (exp(logvar[i]) - 1.0);
    }
    ctx->ops->kl_forward(ctx, mean, logvar, COUNT, &out);
    const double e_fwd = fabs(out - want) / fabs(want);
    EXPECT(t, e_fwd <= 1e-6, "kl_forward %.9g vs double %.9g", out, want);
    memcpy(dm, dm0, sizeof dm), memcpy(dlv, dlv0, sizeof dlv);
    ctx->ops->kl_backward(ctx, mean, logvar, COUNT, scale, dm, dlv);
    double e = fmax(grad_error(dm, want_dm, COUNT), grad_error(dlv, want_dlv, COUNT));
    EXPECT(t, e <= 1e-6, "kl_backward must add scale * dKL onto what is there: %.3g vs double", e);
    memset(dm, 0, sizeof dm), memset(dlv, 0, sizeof dlv);
    ctx->ops->kl_backward(ctx, mean, logvar, COUNT, 1.0f, dm, dlv);
    KlRun r = {ctx, mean, logvar, &out, COUNT};
    double e_fd = fmax(grad_fd_error(kl_loss, &r, mean, COUNT, dm, 3, 1e-2f),
                       grad_fd_error(kl_loss, &r, logvar, COUNT, dlv, 3, 1e-2f));
    EXPECT(t, e_fd <= 1e-3, "kl gradients vs finite differences: %.3g", e_fd);
    printf("kl: forward rel %.2g, backward %.2g, finite differences %.2g\n", e_fwd, e, e_fd);
    float zero_mean = 0.0f, zero_lv = 0.0f;   // N(0, 1) itself: KL = 0 exactly
    ctx->ops->kl_forward(ctx, &zero_mean, &zero_lv, 1, &out);
    EXPECT(t, out == 0.0f, "kl_forward of N(0, 1) should be 0, got %g", out);
    ctx->ops->kl_forward(ctx, NULL, NULL, 0, &out);
    EXPECT(t, out == 0.0f, "kl_forward over 0 elements should be 0, got %g", out);
}

int main(void) {
    TestCounts t = {0, 0};
    OpsContext ctx;
    memset(&ctx, 0, sizeof ctx);
    cpu_context_init(&ctx, 1);
    test_dropout_layout(&ctx, &t);
    test_dropout_invariance(&ctx, &t);
    test_dropout_values(&ctx, &t);
    test_reparam_numbers(&ctx, &t);
    test_reparam_grad(&ctx, &t);
    test_kl(&ctx, &t);
    cpu_context_destroy(&ctx);
    return test_finish("test_ops_random", &t);
}
