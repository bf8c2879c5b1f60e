// test_ops_quantizer.c: the CPU vector-quantizer ops against brute-force loops: nearest code
// (exact distances in double; exact ties with integer data; several chunks; NaN like torch.argmin),
// gather, code statistics (and their determinism), the codebook gradient (also against central
// finite differences) and the EMA update (a hand-computed case and a naive double loop over steps).
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/common.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "test_util.h"

static void fill_normal(float *x, size_t n, float scale, uint64_t stream) {
    Rng rng = rng_stream(23, RNG_PURPOSE_TEST, stream, 0);
    for (size_t i = 0; i < n; i++) x[i] = scale * rng_normal(&rng);
}

static double exact_dist(const float *a, const float *b, int d) {
    double s = 0.0;
    for (int t = 0; t < d; t++) s += ((double)a[t] - b[t]) * ((double)a[t] - b[t]);
    return s;
}

// Brute-force argmin with exact distances; ties to the lowest index.
static int brute_nearest(const float *zi, const float *codebook, int k, int d) {
    int best = 0;
    double best_d = exact_dist(zi, codebook, d);
    for (int j = 1; j < k; j++) {
        double dj = exact_dist(zi, codebook + (size_t)j * d, d);
        if (dj < best_d) best_d = dj, best = j;
    }
    return best;
}

static void nearest(OpsContext *ctx, const float *z, const float *codebook, int m, int k, int d, int32_t *codes) {
    ctx->ops->reserve_workspace(ctx, ctx->ops->vq_workspace_bytes(ctx, m, k, d));
    ctx->ops->vq_nearest(ctx, z, codebook, m, k, d, codes);
}

static void test_nearest_random(OpsContext *ctx, TestCounts *c) {
    // m spans three full 256-row chunks and a partial one
    const int shapes[][3] = {{785, 512, 64}, {1, 7, 3}, {300, 1, 16}, {257, 33, 1}, {64, 512, 64}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int m = shapes[s][0], k = shapes[s][1], d = shapes[s][2];
        float *z = xmalloc((size_t)m * d * sizeof(float)), *e = xmalloc((size_t)k * d * sizeof(float));
        int32_t *codes = xmalloc((size_t)m * sizeof(int32_t));
        fill_normal(z, (size_t)m * d, 1.0f, 100 + s);
        fill_normal(e, (size_t)k * d, 0.5f, 200 + s);
        nearest(ctx, z, e, m, k, d, codes);
        // A different code than brute force is allowed only for a near-tie the float32 formula
        // cannot resolve: its exact distance within float rounding of the best one.
        int mismatches = 0, bad = 0;
        for (int i = 0; i < m; i++) {
            const float *zi = z + (size_t)i * d;
            int want = brute_nearest(zi, e, k, d);
            if (codes[i] == want) continue;
            mismatches++;
            if (codes[i] < 0 || codes[i] >= k) {
                bad++;
                continue;
            }
            double got_d = exact_dist(zi, e + (size_t)codes[i] * d, d), best_d = exact_dist(zi, e + (size_t)want * d, d);
            double zz = 0.0, scale = 0.0;
            for (int t = 0; t < d; t++) zz += (double)zi[t] * zi[t];
            for (int t = 0; t < d; t++) scale += (double)e[(size_t)want * d + t] * e[(size_t)want * d + t];
            if (got_d - best_d > 1e-5 * (zz + scale)) bad++;
        }
        EXPECT(c, bad == 0 && mismatches <= m / 100, "vq_nearest m=%d k=%d d=%d: %d codes differ from brute force, "
               "%d of them not near-ties", m, k, d, mismatches, bad);
        if (s == 0) printf("vq_nearest 785x512x64: %d of %d codes differ from exact brute force (near-ties)\n", mismatches, m);

        // Any row range gives the same codes as the whole call: chunk boundaries change nothing.
        if (m > 300) {
            int32_t *part = xmalloc((size_t)m * sizeof(int32_t));
            ctx->ops->vq_nearest(ctx, z + (size_t)100 * d, e, 300, k, d, part);
            EXPECT(c, memcmp(part, codes + 100, 300 * sizeof(int32_t)) == 0, "vq_nearest rows 100..399 alone differ");
            free(part);
        }
        free(z);
        free(e);
        free(codes);
    }
}

// Small integers make every distance exact in float, so ties are real ties: the lowest index must
// win, exactly as brute force (and torch.argmin) picks it.
static void test_nearest_ties(OpsContext *ctx, TestCounts *c) {
    enum { M = 600, K = 40, D = 5 };   // M crosses a chunk boundary
    float z[M * D], e[K * D];
    int32_t codes[M];
    Rng rng = rng_stream(5, RNG_PURPOSE_TEST, 300, 0);
    for (int i = 0; i < M * D; i++) z[i] = (float)((int)rng_below(&rng, 7) - 3);
    for (int i = 0; i < K * D; i++) e[i] = (float)((int)rng_below(&rng, 3) - 1);
    nearest(ctx, z, e, M, K, D, codes);
    int wrong = 0, ties = 0;
    for (int i = 0; i < M; i++) {
        int want = brute_nearest(z + i * D, e, K, D);
        wrong += codes[i] != want;
        double best = exact_dist(z + i * D, e + want * D, D);
        for (int j = want + 1; j < K; j++) ties += exact_dist(z + i * D, e + j * D, D) == best;
    }
    EXPECT(c, ties >= 100, "the tie test has too few ties (%d) to mean anything", ties);
    EXPECT(c, wrong == 0, "vq_nearest with exact ties: %d of %d codes are not the lowest tied index", wrong, M);
    printf("vq_nearest ties: %d exact ties among the best codes, %d wrong\n", ties, wrong);

    // All codes equal: code 0. K = 1: code 0.
    for (int i = 0; i < K * D; i++) e[i] = 0.25f;
    nearest(ctx, z, e, M, K, D, codes);
    int nonzero = 0;
    for (int i = 0; i < M; i++) nonzero += codes[i] != 0;
    EXPECT(c, nonzero == 0, "identical codebook rows: %d codes are not 0", nonzero);
    nearest(ctx, z, e, M, 1, D, codes);
    nonzero = 0;
    for (int i = 0; i < M; i++) nonzero += codes[i] != 0;
    EXPECT(c, nonzero == 0, "K = 1: %d codes are not 0", nonzero);

    // NaN: torch.argmin returns the first NaN. A NaN codebook row wins every row; a NaN z row gets 0.
    for (int i = 0; i < K * D; i++) e[i] = (float)(i % 3);
    e[5 * D + 2] = NAN;
    z[3 * D] = NAN;
    nearest(ctx, z, e, 10, K, D, codes);
    int not5 = 0;
    for (int i = 0; i < 10; i++) not5 += i != 3 && codes[i] != 5;
    EXPECT(c, not5 == 0 && codes[3] == 0, "NaN handling differs from torch.argmin (row 3 got %d, %d rows not 5)",
           codes[3], not5);

    // m = 0: nothing to do and no workspace needed
    EXPECT(c, ctx->ops->vq_workspace_bytes(ctx, 0, K, D) == 0, "vq_workspace_bytes(m = 0) should be 0");
    ctx->ops->vq_nearest(ctx, z, e, 0, K, D, codes);
}

// Too small a workspace must stop with a message, not write past it. Run in a child process.
static void test_workspace_check(OpsContext *ctx, TestCounts *c) {
    enum { M = 300, K = 64, D = 8 };
    size_t need = ctx->ops->vq_workspace_bytes(ctx, M, K, D);
    EXPECT(c, need >= (size_t)256 * K * sizeof(float), "vq_workspace_bytes %zu cannot hold a 256-row block", need);
    EXPECT(c, ctx->ops->vq_workspace_bytes(ctx, 10 * M, K, D) == need, "workspace should not grow past one chunk");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        static float z[M * D], e[K * D];
        static int32_t codes[M];
        OpsContext small = *ctx;
        small.workspace_bytes = need - 1;
        if (!freopen("/dev/null", "w", stderr)) _exit(3);
        small.ops->vq_nearest(&small, z, e, M, K, D, codes);
        _exit(0);   // reached only if the check did not fire
    }
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT(c, WIFEXITED(status) && WEXITSTATUS(status) == EXIT_ERROR,
           "vq_nearest with a short workspace should exit %d, status was %d", EXIT_ERROR, status);
}

static void test_gather_and_stats(OpsContext *ctx, TestCounts *c) {
    enum { M = 1000, K = 37, D = 6 };
    static float z[M * D], e[K * D], out[M * D], counts[K], sums[K * D], counts2[K], sums2[K * D];
    static float want_sums[K * D];
    static double exact_sums[K * D], sum_abs[K * D];
    int32_t codes[M];
    fill_normal(z, M * D, 1.0f, 400);
    fill_normal(e, K * D, 1.0f, 401);
    Rng rng = rng_stream(5, RNG_PURPOSE_TEST, 402, 0);
    for (int i = 0; i < M; i++) codes[i] = (int32_t)rng_below(&rng, K - 3);   // 3 codes unused

    ctx->ops->vq_gather(ctx, e, codes, M, D, out);
    int ok = 1;
    for (int i = 0; i < M; i++) ok &= memcmp(out + i * D, e + codes[i] * D, D * sizeof(float)) == 0;
    EXPECT(c, ok, "vq_gather differs from codebook[codes[i]]");

    for (int j = 0; j < K * D; j++) sums[j] = 1234.0f;   // must be overwritten
    for (int j = 0; j < K; j++) counts[j] = 99.0f;
    ctx->ops->vq_code_stats(ctx, z, codes, M, K, D, counts, sums);
    int want_counts[K] = {0};
    memset(want_sums, 0, sizeof want_sums);
    memset(exact_sums, 0, sizeof exact_sums);
    memset(sum_abs, 0, sizeof sum_abs);
    for (int i = 0; i < M; i++) {
        want_counts[codes[i]]++;
        for (int t = 0; t < D; t++) {
            want_sums[codes[i] * D + t] += z[i * D + t];   // row order, float: the documented order
            exact_sums[codes[i] * D + t] += z[i * D + t];
            sum_abs[codes[i] * D + t] += fabs(z[i * D + t]);
        }
    }
    ok = 1;
    for (int j = 0; j < K; j++) ok &= counts[j] == (float)want_counts[j];
    EXPECT(c, ok, "vq_code_stats counts differ from a histogram");
    EXPECT(c, memcmp(sums, want_sums, sizeof sums) == 0, "vq_code_stats sums are not the row-order float sums");
    double worst = 0.0;
    for (int j = 0; j < K * D; j++) {
        if (sum_abs[j] == 0.0) continue;
        worst = fmax(worst, fabs(sums[j] - exact_sums[j]) / sum_abs[j]);
    }
    EXPECT(c, worst < 1e-6 && sums[(K - 1) * D] == 0.0f, "vq_code_stats sums vs double: %.3g (relative to sum |z|)", worst);
    printf("vq_code_stats: sums vs double max %.2g relative to sum |z|\n", worst);

    // deterministic: bitwise the same on a second call; sums = NULL gives the same counts
    ctx->ops->vq_code_stats(ctx, z, codes, M, K, D, counts2, sums2);
    EXPECT(c, memcmp(counts, counts2, sizeof counts) == 0 && memcmp(sums, sums2, sizeof sums) == 0,
           "vq_code_stats is not deterministic");
    memset(counts2, 0x7f, sizeof counts2);
    ctx->ops->vq_code_stats(ctx, z, codes, M, K, D, counts2, NULL);
    EXPECT(c, memcmp(counts, counts2, sizeof counts) == 0, "vq_code_stats with sums = NULL counts differently");

    // K = 1 and m = 0
    int32_t zeros[M] = {0};
    ctx->ops->vq_code_stats(ctx, z, zeros, M, 1, D, counts2, sums2);
    EXPECT(c, counts2[0] == (float)M, "K = 1: count %g, want %d", counts2[0], M);
    counts2[0] = 5.0f;
    sums2[0] = 5.0f;
    ctx->ops->vq_code_stats(ctx, z, codes, 0, K, D, counts2, sums2);
    EXPECT(c, counts2[0] == 0.0f && sums2[0] == 0.0f, "m = 0 should zero the stats");
    ctx->ops->vq_gather(ctx, e, codes, 0, D, out);
}

// L(E) = w mean_{i,t} (E[codes_i, t] - z_it)^2 in double.
static double codebook_loss(const float *z, const double *e, const int32_t *codes, int m, int d, double w) {
    double s = 0.0;
    for (int i = 0; i < m; i++)
        for (int t = 0; t < d; t++) {
            double diff = e[codes[i] * d + t] - z[i * d + t];
            s += diff * diff;
        }
    return w * s / ((double)m * d);
}

static void test_codebook_grad(OpsContext *ctx, TestCounts *c) {
    enum { M = 200, K = 9, D = 4 };
    float z[M * D], e[K * D], counts[K], sums[K * D], grad[K * D];
    double ed[K * D];
    int32_t codes[M];
    fill_normal(z, M * D, 1.0f, 500);
    fill_normal(e, K * D, 1.0f, 501);
    Rng rng = rng_stream(5, RNG_PURPOSE_TEST, 502, 0);
    for (int i = 0; i < M; i++) codes[i] = (int32_t)rng_below(&rng, K - 1);   // code K-1 unused
    const double w = 1.25;
    const float scale = (float)(w * 2.0 / (M * D));
    ctx->ops->vq_code_stats(ctx, z, codes, M, K, D, counts, sums);
    ctx->ops->vq_codebook_grad(ctx, e, counts, sums, K, D, scale, grad);

    double gmax = 0.0, worst_formula = 0.0, worst_fd = 0.0;
    for (int j = 0; j < K * D; j++) gmax = fmax(gmax, fabs(grad[j]));
    for (int j = 0; j < K; j++)
        for (int t = 0; t < D; t++) {
            double want = (double)scale * ((double)counts[j] * e[j * D + t] - sums[j * D + t]);
            worst_formula = fmax(worst_formula, fabs(grad[j * D + t] - want) / gmax);
        }
    for (int j = 0; j < K * D; j++) ed[j] = e[j];
    const double h = 1e-3;
    for (int j = 0; j < K * D; j++) {
        double keep = ed[j];
        ed[j] = keep + h;
        double lp = codebook_loss(z, ed, codes, M, D, w);
        ed[j] = keep - h;
        double lm = codebook_loss(z, ed, codes, M, D, w);
        ed[j] = keep;
        worst_fd = fmax(worst_fd, fabs((lp - lm) / (2 * h) - grad[j]) / gmax);
    }
    EXPECT(c, worst_formula < 1e-6, "vq_codebook_grad vs scale (counts e - sums): %.3g", worst_formula);
    EXPECT(c, worst_fd < 1e-5, "vq_codebook_grad vs finite differences: %.3g relative to max |grad|", worst_fd);
    int unused_zero = 1;
    for (int t = 0; t < D; t++) unused_zero &= grad[(K - 1) * D + t] == 0.0f;
    EXPECT(c, unused_zero, "an unused code should get a zero gradient");
    printf("vq_codebook_grad: formula %.2g, finite differences %.2g (relative to max |grad|)\n", worst_formula, worst_fd);
}

static void test_ema_hand(OpsContext *ctx, TestCounts *c) {
    // k = 2, d = 1, decay 0.5, eps 0.25:
    //   N = 0.5 [1, 0] + 0.5 [3, 1] = [2, 0.5];  n = 2.5;  N = ([2, 0.5] + 0.25) / (2.5 + 0.5) * 2.5
    //     = [1.875, 0.625];  w = 0.5 [2, 0] + 0.5 [6, -1] = [4, -0.5];  e = [4 / 1.875, -0.8]
    float size[2] = {1.0f, 0.0f}, w[2] = {2.0f, 0.0f}, e[2] = {7.0f, 7.0f};
    const float counts[2] = {3.0f, 1.0f}, sums[2] = {6.0f, -1.0f};
    ctx->ops->ema_update(ctx, size, w, e, counts, sums, 2, 1, 0.5f, 0.25f, NULL);
    EXPECT(c, size[0] == 1.875f && size[1] == 0.625f, "ema cluster sizes %g %g, want 1.875 0.625", size[0], size[1]);
    EXPECT(c, w[0] == 4.0f && w[1] == -0.5f, "ema_w %g %g, want 4 -0.5", w[0], w[1]);
    EXPECT(c, test_close(e[0], 4.0 / 1.875, 1e-7, 0) && test_close(e[1], -0.8, 1e-7, 0),
           "ema codebook %.9g %.9g, want %.9g -0.8", e[0], e[1], 4.0 / 1.875);
}

// The update in double, straight from the formula in ops.h.
static void naive_ema(double *size, double *w, double *e, const float *counts, const float *sums, int k, int d,
                      double decay, double eps) {
    double n = 0.0;
    for (int j = 0; j < k; j++) {
        size[j] = decay * size[j] + (1.0 - decay) * counts[j];
        n += size[j];
    }
    for (int j = 0; j < k; j++) size[j] = (size[j] + eps) / (n + k * eps) * n;
    for (int j = 0; j < k * d; j++) w[j] = decay * w[j] + (1.0 - decay) * sums[j];
    for (int j = 0; j < k; j++)
        for (int t = 0; t < d; t++) e[j * d + t] = w[j * d + t] / size[j];
}

static void test_ema_steps(OpsContext *ctx, TestCounts *c, int k, int d) {
    enum { M = 300, STEPS = 6 };
    float *z = xmalloc((size_t)M * d * sizeof(float)), *size = xmalloc((size_t)k * sizeof(float));
    float *w = xmalloc((size_t)k * d * sizeof(float)), *e = xmalloc((size_t)k * d * sizeof(float));
    float *counts = xmalloc((size_t)k * sizeof(float)), *sums = xmalloc((size_t)k * d * sizeof(float));
    double *sd = xmalloc((size_t)k * sizeof(double)), *wd = xmalloc((size_t)k * d * sizeof(double));
    double *ed = xmalloc((size_t)k * d * sizeof(double));
    int32_t *codes = xmalloc(M * sizeof(int32_t));
    // the notebook's init: zero cluster sizes, ema_w ~ N(0, 1)
    fill_normal(w, (size_t)k * d, 1.0f, 600 + k);
    for (int j = 0; j < k; j++) size[j] = 0.0f, sd[j] = 0.0;
    for (int j = 0; j < k * d; j++) wd[j] = w[j];
    const float decay = 0.99f, eps = 1e-5f;
    Rng rng = rng_stream(5, RNG_PURPOSE_TEST, 601, (uint32_t)k);
    double worst_size = 0.0, worst_w = 0.0, worst_e = 0.0;
    for (int step = 0; step < STEPS; step++) {
        fill_normal(z, (size_t)M * d, 1.0f, 700 + step);
        int used = k > 3 ? k - 3 : k;   // some codes never used: their N decays towards eps
        for (int i = 0; i < M; i++) codes[i] = (int32_t)rng_below(&rng, (uint32_t)used);
        ctx->ops->vq_code_stats(ctx, z, codes, M, k, d, counts, sums);
        ctx->ops->ema_update(ctx, size, w, e, counts, sums, k, d, decay, eps, NULL);
        naive_ema(sd, wd, ed, counts, sums, k, d, decay, eps);
        for (int j = 0; j < k; j++) worst_size = fmax(worst_size, fabs(size[j] - sd[j]) / sd[j]);
        double wmax = 0.0;
        for (int j = 0; j < k * d; j++) wmax = fmax(wmax, fabs(wd[j]));
        for (int j = 0; j < k * d; j++) {
            worst_w = fmax(worst_w, fabs(w[j] - wd[j]) / wmax);
            // e = w / N: relative to the size of its own row's scale |w|max / N_j
            worst_e = fmax(worst_e, fabs(e[j] - ed[j]) / (wmax / sd[j / d]));
        }
    }
    EXPECT(c, worst_size < 1e-5, "ema k=%d: cluster sizes differ from double by %.3g (relative)", k, worst_size);
    EXPECT(c, worst_w < 1e-6, "ema k=%d: ema_w differs from double by %.3g (relative to max |w|)", k, worst_w);
    EXPECT(c, worst_e < 1e-5, "ema k=%d: codebook differs from double by %.3g", k, worst_e);
    printf("ema_update k=%d d=%d, %d steps: sizes %.2g, ema_w %.2g, codebook %.2g (relative)\n", k, d, STEPS,
           worst_size, worst_w, worst_e);
    free(z);
    free(size);
    free(w);
    free(e);
    free(counts);
    free(sums);
    free(sd);
    free(wd);
    free(ed);
    free(codes);
}

int main(void) {
    TestCounts c = {0, 0};
    OpsContext ctx;
    memset(&ctx, 0, sizeof ctx);
    cpu_context_init(&ctx, 1);
    test_nearest_random(&ctx, &c);
    test_nearest_ties(&ctx, &c);
    test_workspace_check(&ctx, &c);
    test_gather_and_stats(&ctx, &c);
    test_codebook_grad(&ctx, &c);
    test_ema_hand(&ctx, &c);
    test_ema_steps(&ctx, &c, 37, 6);
    test_ema_steps(&ctx, &c, 1, 3);
    test_ema_steps(&ctx, &c, 512, 64);
    cpu_context_destroy(&ctx);
    return test_finish("test_ops_quantizer", &c);
}
