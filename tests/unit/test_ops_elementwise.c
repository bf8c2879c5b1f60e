// test_ops_elementwise.c: the CPU element-wise ops, layout permutes, MSE and sum of squares against
// naive loops (double where it matters), gradients against central finite differences, and the
// edge cases: n = 0, in-place calls, NaN / inf, shapes that are not multiples of the tile.
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "test_util.h"

static void fill_normal(float *x, size_t n, uint64_t stream) {
    Rng rng = rng_stream(11, RNG_PURPOSE_TEST, stream, 0);
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(&rng);
}

static int bits_equal(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

static void test_relu(OpsContext *ctx, TestCounts *c) {
    enum { N = 1031 };
    float *x = xmalloc(N * sizeof(float)), *y = xmalloc(N * sizeof(float)), *dy = xmalloc(N * sizeof(float));
    float *dx = xmalloc(N * sizeof(float)), *want = xmalloc(N * sizeof(float));
    fill_normal(x, N, 1);
    fill_normal(dy, N, 2);
    x[0] = 0.0f;
    x[1] = -0.0f;
    x[2] = INFINITY;
    x[3] = -INFINITY;

    ctx->ops->relu_forward(ctx, x, y, N);
    int ok = 1;
    for (int i = 0; i < N; i++) ok &= y[i] == (x[i] > 0.0f ? x[i] : 0.0f);
    EXPECT(c, ok, "relu_forward differs from max(x, 0)");
    float nan_in = NAN, nan_out = 0.0f;
    ctx->ops->relu_forward(ctx, &nan_in, &nan_out, 1);
    EXPECT(c, isnan(nan_out), "relu_forward should pass NaN through (as torch.relu), got %g", nan_out);

    // in place: y aliases x
    memcpy(want, y, N * sizeof(float));
    memcpy(dx, x, N * sizeof(float));
    ctx->ops->relu_forward(ctx, dx, dx, N);
    EXPECT(c, bits_equal(dx, want, N), "relu_forward in place differs from out of place");

    ctx->ops->relu_backward(ctx, y, dy, dx, N);
    ok = 1;
    for (int i = 0; i < N; i++) ok &= dx[i] == (y[i] > 0.0f ? dy[i] : 0.0f);
    EXPECT(c, ok, "relu_backward differs from y > 0 ? dy : 0");
    // the input works as well as the output (same sign test)
    ctx->ops->relu_backward(ctx, x, dy, want, N);
    EXPECT(c, bits_equal(dx, want, N), "relu_backward with x instead of y differs");
    // in place: dx aliases dy
    memcpy(want, dy, N * sizeof(float));
    ctx->ops->relu_backward(ctx, y, want, want, N);
    EXPECT(c, bits_equal(dx, want, N), "relu_backward in place differs from out of place");

    // Finite differences of L(x) = sum_i w_i relu(x_i) (w = dy), away from the kink at 0.
    const float h = 1e-2f;
    double worst = 0.0;
    int checked = 0;
    ctx->ops->relu_backward(ctx, x, dy, dx, N);
    for (int i = 4; i < N; i += 7) {
        if (fabsf(x[i]) < 2.0f * h) continue;
        float xp = x[i] + h, xm = x[i] - h, yp, ym;
        ctx->ops->relu_forward(ctx, &xp, &yp, 1);
        ctx->ops->relu_forward(ctx, &xm, &ym, 1);
        double fd = (double)dy[i] * ((double)yp - (double)ym) / ((double)xp - (double)xm);
        double e = fabs(fd - dx[i]) / (fabs(dy[i]) + 1e-6);
        if (e > worst) worst = e;
        checked++;
    }
    EXPECT(c, checked > 100 && worst < 1e-6, "relu gradient vs finite differences: %.3g over %d points", worst, checked);
    printf("relu: exact vs naive; finite differences max rel %.2g\n", worst);

    free(x);
    free(y);
    free(dy);
    free(dx);
    free(want);
}

static void test_add_scale_fill(OpsContext *ctx, TestCounts *c) {
    enum { N = 517 };
    float a[N], b[N], out[N], copy[N];
    fill_normal(a, N, 3);
    fill_normal(b, N, 4);
    ctx->ops->add(ctx, a, b, out, N);
    int ok = 1;
    for (int i = 0; i < N; i++) ok &= out[i] == a[i] + b[i];
    EXPECT(c, ok, "add differs from a + b");
    memcpy(copy, a, sizeof a);
    ctx->ops->add(ctx, copy, b, copy, N);   // out aliases a
    EXPECT(c, bits_equal(copy, out, N), "add with out = a differs");
    memcpy(copy, b, sizeof b);
    ctx->ops->add(ctx, a, copy, copy, N);   // out aliases b
    EXPECT(c, bits_equal(copy, out, N), "add with out = b differs");

    memcpy(copy, a, sizeof a);
    ctx->ops->scale(ctx, copy, -0.375f, N);
    ok = 1;
    for (int i = 0; i < N; i++) ok &= copy[i] == a[i] * -0.375f;
    EXPECT(c, ok, "scale differs from x * alpha");

    ctx->ops->fill(ctx, copy, 2.5f, N - 1);
    ok = 1;
    for (int i = 0; i < N - 1; i++) ok &= copy[i] == 2.5f;
    EXPECT(c, ok && copy[N - 1] == a[N - 1] * -0.375f, "fill wrote the wrong values or past n");

    // n = 0: nothing is read or written (NULL is fine)
    ctx->ops->add(ctx, NULL, NULL, NULL, 0);
    ctx->ops->scale(ctx, NULL, 2.0f, 0);
    ctx->ops->fill(ctx, NULL, 1.0f, 0);
    ctx->ops->relu_forward(ctx, NULL, NULL, 0);
    ctx->ops->relu_backward(ctx, NULL, NULL, NULL, 0);
    EXPECT(c, 1, "n = 0 calls returned");
}

static void test_permute(OpsContext *ctx, TestCounts *c) {
    // shapes around the 32-wide tile: smaller, not a multiple, and degenerate
    const int shapes[][3] = {{2, 64, 64}, {3, 37, 70}, {1, 1, 5}, {4, 5, 1}, {1, 33, 33}, {0, 3, 4}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int n = shapes[s][0], ch = shapes[s][1], hw = shapes[s][2];
        size_t count = (size_t)n * ch * hw;
        float *in = xmalloc(count * sizeof(float) + 1), *out = xmalloc(count * sizeof(float) + 1);
        float *back = xmalloc(count * sizeof(float) + 1);
        for (size_t i = 0; i < count; i++) in[i] = (float)i;   // every value distinct
        ctx->ops->nchw_to_nhwc(ctx, in, out, n, ch, hw);
        int ok = 1;
        for (int b = 0; b < n; b++)
            for (int q = 0; q < ch; q++)
                for (int p = 0; p < hw; p++)
                    ok &= out[((size_t)b * hw + p) * ch + q] == in[((size_t)b * ch + q) * hw + p];
        EXPECT(c, ok, "nchw_to_nhwc wrong for [%d, %d, %d]", n, ch, hw);
        ctx->ops->nhwc_to_nchw(ctx, out, back, n, ch, hw);
        EXPECT(c, bits_equal(back, in, count), "nhwc_to_nchw does not invert nchw_to_nhwc for [%d, %d, %d]", n, ch, hw);
        free(in);
        free(out);
        free(back);
    }
}

static double naive_mse(const float *p, const float *t, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += ((double)p[i] - t[i]) * ((double)p[i] - t[i]);
    return s / (double)n;
}

static void test_mse(OpsContext *ctx, TestCounts *c) {
    const size_t sizes[] = {1, 7, 8, 1000, 65539};
    double worst_fwd = 0.0, worst_bwd = 0.0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        float *p = xmalloc(n * sizeof(float)), *t = xmalloc(n * sizeof(float)), *d = xmalloc(n * sizeof(float));
        fill_normal(p, n, 10 + s);
        fill_normal(t, n, 20 + s);
        float loss;
        ctx->ops->mse_forward(ctx, p, t, n, &loss);
        double want = naive_mse(p, t, n), e = fabs(loss - want) / want;
        if (e > worst_fwd) worst_fwd = e;
        EXPECT(c, e < 3e-7, "mse_forward n=%zu: %.9g vs double %.9g (rel %.3g)", n, loss, want, e);

        const float scale = 3.7f;
        ctx->ops->mse_backward(ctx, p, t, n, scale, 0, d);
        double eb = 0.0;
        for (size_t i = 0; i < n; i++) {
            double w = scale * 2.0 * ((double)p[i] - t[i]) / (double)n;
            double r = fabs(d[i] - w) / (fabs(w) + 1e-30);
            if (r > eb) eb = r;
        }
        if (eb > worst_bwd) worst_bwd = eb;
        EXPECT(c, eb < 1e-6, "mse_backward n=%zu differs from scale 2 (p - t) / n by %.3g", n, eb);
        // accumulate adds onto what is there
        float *acc = xmalloc(n * sizeof(float));
        fill_normal(acc, n, 30 + s);
        float *before = xmalloc(n * sizeof(float));
        memcpy(before, acc, n * sizeof(float));
        ctx->ops->mse_backward(ctx, p, t, n, scale, 1, acc);
        int ok = 1;
        for (size_t i = 0; i < n; i++) ok &= acc[i] == before[i] + d[i];
        EXPECT(c, ok, "mse_backward accumulate=1 is not dpred + gradient (n=%zu)", n);
        free(acc);
        free(before);
        free(p);
        free(t);
        free(d);
    }
    printf("mse: forward vs double max rel %.2g, backward max rel %.2g\n", worst_fwd, worst_bwd);
}

// The gradient against finite differences, the accumulation in double, n = 0 and NaN.
static void test_mse_edge_cases(OpsContext *ctx, TestCounts *c) {
    {   // Central finite differences of L = scale * mse_forward on a small case (L is quadratic in
        // each element, so the central difference is exact up to the float rounding of L).
        enum { N = 16 };
        float p[N], t[N], d[N];
        fill_normal(p, N, 40);
        fill_normal(t, N, 41);
        const float scale = 0.5f, h = 1e-2f;
        ctx->ops->mse_backward(ctx, p, t, N, scale, 0, d);
        double worst = 0.0, dmax = 0.0;
        for (int i = 0; i < N; i++) dmax = fmax(dmax, fabs(d[i]));
        for (int i = 0; i < N; i++) {
            float keep = p[i], lp, lm;
            p[i] = keep + h;
            ctx->ops->mse_forward(ctx, p, t, N, &lp);
            p[i] = keep - h;
            ctx->ops->mse_forward(ctx, p, t, N, &lm);
            p[i] = keep;
            double fd = scale * ((double)lp - (double)lm) / (2.0 * h);
            worst = fmax(worst, fabs(fd - d[i]) / dmax);
        }
        EXPECT(c, worst < 1e-3, "mse gradient vs finite differences: %.3g relative to max |grad|", worst);
        printf("mse: finite differences max rel %.2g\n", worst);
    }
    {   // Double accumulation: 2^22 equal errors of 1/3 sum to a mean a float accumulator gets wrong.
        size_t n = (size_t)1 << 22;
        float *p = xmalloc(n * sizeof(float)), *t = xcalloc(n, sizeof(float));
        for (size_t i = 0; i < n; i++) p[i] = 1.0f / 3.0f;
        float loss;
        ctx->ops->mse_forward(ctx, p, t, n, &loss);
        double want = (double)p[0] * p[0];
        EXPECT(c, fabs(loss - want) / want < 1e-7, "mse_forward over 2^22 equal values: %.9g want %.9g", loss, want);
        free(p);
        free(t);
    }
    {   // n = 0: the mean of nothing is NaN (as PyTorch); backward writes nothing
        float loss = 0.0f;
        ctx->ops->mse_forward(ctx, NULL, NULL, 0, &loss);
        EXPECT(c, isnan(loss), "mse_forward n = 0 should be NaN, got %g", loss);
        ctx->ops->mse_backward(ctx, NULL, NULL, 0, 1.0f, 0, NULL);
    }
    {   // NaN in the prediction reaches the loss
        float p[3] = {1.0f, NAN, 2.0f}, t[3] = {0.0f, 0.0f, 0.0f}, loss;
        ctx->ops->mse_forward(ctx, p, t, 3, &loss);
        EXPECT(c, isnan(loss), "mse_forward should propagate NaN, got %g", loss);
    }
}

static void test_sum_squares(OpsContext *ctx, TestCounts *c) {
    const size_t sizes[] = {1, 3, 8, 9, 4097, 100003};
    double worst = 0.0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        float *x = xmalloc(n * sizeof(float));
        fill_normal(x, n, 50 + s);
        double want = 0.0;
        for (size_t i = 0; i < n; i++) want += (double)x[i] * x[i];
        float got, again;
        ctx->ops->sum_squares(ctx, x, n, &got);
        ctx->ops->sum_squares(ctx, x, n, &again);
        double e = fabs(got - want) / want;
        if (e > worst) worst = e;
        EXPECT(c, e < 1e-7, "sum_squares n=%zu: %.9g vs double %.9g", n, got, want);
        EXPECT(c, got == again, "sum_squares is not deterministic");
        // a NaN or an inf anywhere, in the vector part or the tail, makes the result non-finite
        size_t where[2] = {0, n - 1};
        for (int w = 0; w < 2; w++) {
            float keep = x[where[w]];
            x[where[w]] = NAN;
            ctx->ops->sum_squares(ctx, x, n, &got);
            EXPECT(c, isnan(got), "sum_squares with a NaN at %zu of %zu gave %g", where[w], n, got);
            x[where[w]] = -INFINITY;
            ctx->ops->sum_squares(ctx, x, n, &got);
            EXPECT(c, isinf(got), "sum_squares with -inf at %zu of %zu gave %g", where[w], n, got);
            x[where[w]] = keep;
        }
        free(x);
    }
    printf("sum_squares: vs double max rel %.2g\n", worst);
    float got = -1.0f, big[2] = {1e20f, 1.0f};
    ctx->ops->sum_squares(ctx, NULL, 0, &got);
    EXPECT(c, got == 0.0f, "sum_squares n = 0 should be 0, got %g", got);
    ctx->ops->sum_squares(ctx, big, 2, &got);   // 1e40 does not fit a float: reported as inf
    EXPECT(c, isinf(got), "sum_squares beyond FLT_MAX should be inf, got %g", got);
}

int main(void) {
    TestCounts c = {0, 0};
    OpsContext ctx;
    memset(&ctx, 0, sizeof ctx);
    cpu_context_init(&ctx, 1);
    test_relu(&ctx, &c);
    test_add_scale_fill(&ctx, &c);
    test_permute(&ctx, &c);
    test_mse(&ctx, &c);
    test_mse_edge_cases(&ctx, &c);
    test_sum_squares(&ctx, &c);
    cpu_context_destroy(&ctx);
    return test_finish("test_ops_elementwise", &c);
}
