// test_ops_activation.c: the CPU SiLU and Sigmoid (kernels/cpu/cpu_activation.c), nearest x2
// upsampling and zero padding (kernels/cpu/cpu_resample.c): forward against naive loops in double,
// backward against the analytic formula in double and against central finite differences, the
// aliasing that ops.h allows, saturation at large |x|, and shapes with odd sides.
//
// Tolerances: SiLU / Sigmoid per value |got - want| <= 4e-7 |want| (a few float ulps; results
// below 1e-38 count as 0); gradients normwise 1e-6 vs double; finite differences (h = 1e-3) 1e-3
// of max|grad|. Upsampling and padding move values: exact against the naive loops; being linear,
// their backward is checked as the adjoint, <f(x), dy> = <x, f^T(dy)> in double, instead of by
// finite differences (which would check the same identity, less precisely).
#include <string.h>

#include "core/common.h"
#include "grad_check.h"
#include "kernels/ops.h"
#include "test_util.h"

typedef void (*Unary)(OpsContext *ctx, const float *x, float *y, size_t n);

typedef struct {
    OpsContext *ctx;
    Unary forward;
    float *x, *y, *w;
    size_t n;
} UnaryRun;

static double unary_loss(void *state) {
    UnaryRun *r = state;
    r->forward(r->ctx, r->x, r->y, r->n);
    return grad_dot(r->y, r->w, r->n);
}

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

// Per-value relative error over x, against f in double; returns the worst.
static double worst_per_value(const float *got, const float *x, size_t n, double (*f)(double)) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double want = f(x[i]), e = fabs(got[i] - want) / (fabs(want) + 1e-30);
        if (fabs(got[i] - want) <= 1e-38) e = 0.0;   // the float result underflowed to 0 (or a subnormal)
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

static double silu_d(double x) { return x * sigmoid_d(x); }

// silu (sigmoid = 0) or sigmoid (sigmoid = 1): forward, aliasing, backward vs double and FD.
static void test_unary(OpsContext *ctx, TestCounts *t, int sigmoid) {
    enum { N = 1031 };
    const char *name = sigmoid ? "sigmoid" : "silu";
    Unary fwd = sigmoid ? ctx->ops->sigmoid_forward : ctx->ops->silu_forward;
    float *x = xmalloc(N * 4), *y = xmalloc(N * 4), *w = xmalloc(N * 4), *dx = xmalloc(N * 4), *tmp = xmalloc(N * 4);
    grad_fill_normal(x, N, 0.0f, 3.0f, sigmoid ? 11 : 12);
    grad_fill_normal(w, N, 0.0f, 1.0f, 13);
    const float extremes[] = {0.0f, -0.0f, 80.0f, -80.0f, 100.0f, -100.0f, 1e-6f, -1e-6f, 30.0f, -30.0f};
    memcpy(x, extremes, sizeof extremes);

    fwd(ctx, x, y, N);
    double e = worst_per_value(y, x, N, sigmoid ? sigmoid_d : silu_d);
    EXPECT(t, e <= 4e-7, "%s_forward vs double: worst per-value relative error %.3g", name, e);
    int finite = 1;
    for (int i = 0; i < N; i++) finite &= isfinite(y[i]);
    EXPECT(t, finite, "%s_forward gave a non-finite value at a finite input (x up to +-100)", name);
    memcpy(tmp, x, N * 4);
    fwd(ctx, tmp, tmp, N);   // y aliases x
    EXPECT(t, memcmp(tmp, y, N * 4) == 0, "%s_forward in place differs from out of place", name);

    // silu's backward takes x; sigmoid's takes its output y.
    if (sigmoid) ctx->ops->sigmoid_backward(ctx, y, w, dx, N);
    else ctx->ops->silu_backward(ctx, x, w, dx, N);
    double *want = xmalloc(N * 8);
    for (int i = 0; i < N; i++) {
        double s = sigmoid_d(x[i]);
        want[i] = w[i] * (sigmoid ? s * (1.0 - s) : s * (1.0 + x[i] * (1.0 - s)));
    }
    double eg = grad_error(dx, want, N);
    EXPECT(t, eg <= 1e-6, "%s_backward vs double: %.3g", name, eg);
    memcpy(tmp, w, N * 4);
    if (sigmoid) ctx->ops->sigmoid_backward(ctx, y, tmp, tmp, N);   // dx aliases dy
    else ctx->ops->silu_backward(ctx, x, tmp, tmp, N);
    EXPECT(t, memcmp(tmp, dx, N * 4) == 0, "%s_backward in place differs from out of place", name);

    UnaryRun r = {ctx, fwd, x, y, w, N};
    double efd = grad_fd_error(unary_loss, &r, x, N, dx, 3, 1e-3f);
    EXPECT(t, efd <= 1e-3, "%s gradient vs finite differences: %.3g", name, efd);
    printf("%s: forward per-value %.2g, backward vs double %.2g, finite differences %.2g\n", name, e, eg, efd);

    fwd(ctx, NULL, NULL, 0);   // n = 0 touches nothing
    free(x), free(y), free(w), free(dx), free(tmp), free(want);
}

static void test_upsample(OpsContext *ctx, TestCounts *t) {
    const int shapes[][4] = {{2, 3, 4, 5}, {1, 1, 1, 1}, {3, 2, 7, 3}, {1, 4, 8, 8}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int n = shapes[s][0], c = shapes[s][1], h = shapes[s][2], w = shapes[s][3];
        const size_t in = (size_t)n * c * h * w, out = 4 * in;
        float *x = xmalloc(in * 4), *y = xmalloc(out * 4), *dy = xmalloc(out * 4), *dx = xmalloc(in * 4);
        grad_fill_normal(x, in, 0.0f, 1.0f, 20 + s);
        grad_fill_normal(dy, out, 0.0f, 1.0f, 30 + s);
        ctx->ops->upsample2x_forward(ctx, x, n, c, h, w, y);
        ctx->ops->upsample2x_backward(ctx, dy, n, c, h, w, dx);
        int ok_f = 1, ok_b = 1;
        for (size_t p = 0; p < (size_t)n * c; p++)
            for (int i = 0; i < 2 * h; i++)
                for (int j = 0; j < 2 * w; j++)
                    ok_f &= y[(p * 2 * h + i) * 2 * w + j] == x[(p * h + i / 2) * w + j / 2];
        for (size_t p = 0; p < (size_t)n * c; p++)
            for (int i = 0; i < h; i++)
                for (int j = 0; j < w; j++) {
                    const float *d = dy + (p * 2 * h + 2 * i) * 2 * w + 2 * j;
                    float want = 0.0f;   // PyTorch's order: output rows, then columns, into a zero
                    want += d[0], want += d[1], want += d[2 * w], want += d[2 * w + 1];
                    ok_b &= dx[(p * h + i) * w + j] == want;
                }
        EXPECT(t, ok_f, "upsample2x_forward [%d, %d, %d, %d] differs from y[i, j] = x[i / 2, j / 2]", n, c, h, w);
        EXPECT(t, ok_b, "upsample2x_backward [%d, %d, %d, %d] differs from the sum of the 2x2 block", n, c, h, w);
        // The adjoint: <up(x), dy> = <x, up^T(dy)>, in double.
        double lhs = grad_dot(y, dy, out), rhs = grad_dot(x, dx, in);
        EXPECT(t, test_close(lhs, rhs, 1e-6, 1e-9), "upsample2x backward is not the adjoint: %.9g vs %.9g", lhs, rhs);
        free(x), free(y), free(dy), free(dx);
    }
}

typedef struct {
    int n, c, h, w, top, bottom, left, right;
} PadCase;

static void test_pad(OpsContext *ctx, TestCounts *t) {
    const PadCase cases[] = {
        {2, 3, 4, 4, 0, 1, 0, 1}, {1, 2, 3, 5, 2, 1, 3, 0}, {1, 1, 1, 1, 1, 1, 1, 1}, {2, 2, 5, 3, 0, 0, 0, 0},
    };
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        const PadCase *pc = &cases[s];
        const int ho = pc->h + pc->top + pc->bottom, wo = pc->w + pc->left + pc->right;
        const size_t planes = (size_t)pc->n * pc->c, in = planes * pc->h * pc->w, out = planes * ho * wo;
        float *x = xmalloc(in * 4), *y = xmalloc(out * 4), *dy = xmalloc(out * 4), *dx = xmalloc(in * 4);
        grad_fill_normal(x, in, 0.0f, 1.0f, 40 + s);
        grad_fill_normal(dy, out, 0.0f, 1.0f, 50 + s);
        for (size_t i = 0; i < out; i++) y[i] = NAN;   // every value must be written
        ctx->ops->pad2d_forward(ctx, x, pc->n, pc->c, pc->h, pc->w, pc->top, pc->bottom, pc->left, pc->right, y);
        ctx->ops->pad2d_backward(ctx, dy, pc->n, pc->c, pc->h, pc->w, pc->top, pc->bottom, pc->left, pc->right, dx);
        int ok_f = 1, ok_b = 1;
        for (size_t p = 0; p < planes; p++)
            for (int i = 0; i < ho; i++)
                for (int j = 0; j < wo; j++) {
                    int si = i - pc->top, sj = j - pc->left;
                    int inside = si >= 0 && si < pc->h && sj >= 0 && sj < pc->w;
                    float want = inside ? x[(p * pc->h + si) * pc->w + sj] : 0.0f;
                    ok_f &= memcmp(&y[(p * ho + i) * wo + j], &want, 4) == 0;   // +0 in the border
                    if (inside) ok_b &= dx[(p * pc->h + si) * pc->w + sj] == dy[(p * ho + i) * wo + j];
                }
        EXPECT(t, ok_f, "pad2d_forward case %zu (top %d bottom %d left %d right %d) differs from the naive pad", s,
               pc->top, pc->bottom, pc->left, pc->right);
        EXPECT(t, ok_b, "pad2d_backward case %zu is not the crop of dy", s);
        double lhs = grad_dot(y, dy, out), rhs = grad_dot(x, dx, in);
        EXPECT(t, test_close(lhs, rhs, 1e-12, 1e-12), "pad2d backward is not the adjoint: %.9g vs %.9g", lhs, rhs);
        free(x), free(y), free(dy), free(dx);
    }
}

int main(void) {
    TestCounts t = {0, 0};
    OpsContext ctx;
    memset(&ctx, 0, sizeof ctx);
    cpu_context_init(&ctx, 1);
    test_unary(&ctx, &t, 0);
    test_unary(&ctx, &t, 1);
    test_upsample(&ctx, &t);
    test_pad(&ctx, &t);
    cpu_context_destroy(&ctx);
    return test_finish("test_ops_activation", &t);
}
