// test_gpu_ops.c: every op of the CUDA backend against the CPU backend, the oracle (its own tests
// check it against naive loops, finite differences and PyTorch). Exits 77 (SKIP) when the build
// has no CUDA backend or no GPU is visible.
//
// Inputs are random (Philox, RNG_PURPOSE_TEST) plus special values where an op defines them.
// Tolerances, with err = max|gpu - cpu| / max|cpu| over a tensor (test_max_rel_error):
// - relu, add, scale, fill, layout permutes, gather, code counts: bit-identical (NaN == NaN,
//   -0 != +0), as both backends compute them the same way.
// - mse_backward, vq_codebook_grad, ema_update, adam_update: err <= 1e-6 (the CUDA kernels repeat
//   the CPU's rounding step by step, so they are expected to be bit-identical; the count of
//   bit-identical tensors is printed).
// - mse_forward, sum_squares, code_stats sums: relative 1e-5 (different summation order).
// - convolutions at the model's shapes, batch 4: fp32 (cuDNN FMA-only algorithms) err <= 1e-4;
//   tf32 err <= 2e-2, bf16 err <= 3e-2 (normwise bf16 error ~5-8e-3: 7 stored bits; per-value
//   bounds are in test_gpu_conv_precision). Outputs are poisoned with NaN first, so an op that
//   fails to overwrite them is caught.
// - vq_nearest: codes identical except for near-ties: the GPU's code may differ only when its
//   exact (double) distance is within 1e-4 + 1e-6 (|z|^2 + |e|^2) of the CPU code's, and on at
//   most 1% of rows. Integer data (every distance exact in float): identical codes, ties to the
//   lowest index. A NaN row: code 0 (torch.argmin's first NaN), as the CPU.
// - deterministic mode: the same convolutions twice on one context and once on a second context
//   are bit-identical; the reductions and code_stats repeat bit for bit.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "gpu_conv_cases.h"
#include "gpu_test.h"
#include "test_util.h"
#ifdef VQ_HAVE_CUDA
#include "kernels/cuda/cuda_api.h"
#endif

static const double EXACTISH_TOL = 1e-6, REDUCE_TOL = 1e-5, CONV_FP32_TOL = 1e-4, CONV_TF32_TOL = 2e-2,
                    CONV_BF16_TOL = 3e-2;

// Worst errors seen, printed at the end.
typedef struct {
    double elementwise, reduce, quantizer, optimizer, conv_fp32, conv_tf32;
    int bit_identical, compared;   // of the tensors checked with EXACTISH_TOL
} Worst;

static void fill_uniform(float *x, size_t n, float lo, float hi, uint64_t stream) {
    Rng r = rng_stream(77, RNG_PURPOSE_TEST, stream, 0);
    for (size_t i = 0; i < n; i++) x[i] = rng_uniform_range(&r, lo, hi);
}

static void fill_normal(float *x, size_t n, float scale, uint64_t stream) {
    Rng r = rng_stream(77, RNG_PURPOSE_TEST, stream, 1);
    for (size_t i = 0; i < n; i++) x[i] = scale * rng_normal(&r);
}

static float *alloc_floats(size_t n) { return xmalloc((n ? n : 1) * sizeof(float)); }

// Backend-neutral helpers: on the CPU backend "device" memory is host memory, so the same code
// runs an op on either context.
static void *upload(OpsContext *ctx, const void *host, size_t bytes) {
    void *d = ctx->ops->alloc(ctx, bytes);
    ctx->ops->to_device(ctx, d, host, bytes);
    return d;
}

static float *download(OpsContext *ctx, const float *d, size_t n) {
    float *h = alloc_floats(n);
    ctx->ops->to_host(ctx, h, d, n * sizeof(float));
    return h;
}

static float download_scalar(OpsContext *ctx, const float *d) {
    float v;
    ctx->ops->to_host(ctx, &v, d, sizeof v);
    return v;
}

// Bitwise equal, except that any NaN equals any NaN. Returns the first differing index or -1.
static long first_difference(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) && isnan(b[i])) continue;
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) return (long)i;
    }
    return -1;
}

static void expect_identical(TestCounts *t, const char *what, const float *got, const float *want, size_t n) {
    long i = first_difference(got, want, n);
    EXPECT(t, i < 0, "%s: GPU and CPU differ first at %ld: %.9g vs %.9g", what, i, i >= 0 ? got[i] : 0.0,
           i >= 0 ? want[i] : 0.0);
}

static void expect_identical_device(TestCounts *t, const char *what, OpsContext *gpu, const float *d,
                                    const float *want, size_t n) {
    float *got = download(gpu, d, n);
    expect_identical(t, what, got, want, n);
    free(got);
}

// err <= tol; returns err. Counts bit-identical results when tol is EXACTISH_TOL.
static double expect_close(TestCounts *t, Worst *w, const char *what, const float *got, const float *want, size_t n,
                           double tol) {
    double err = test_max_rel_error(got, want, n);
    EXPECT(t, err <= tol, "%s: max relative error %.3g > %.3g", what, err, tol);
    if (tol == EXACTISH_TOL) {
        w->compared++;
        if (first_difference(got, want, n) < 0) w->bit_identical++;
    }
    return err;
}

static double expect_close_device(TestCounts *t, Worst *w, const char *what, OpsContext *gpu, const float *d,
                                  const float *want, size_t n, double tol) {
    float *got = download(gpu, d, n);
    double err = expect_close(t, w, what, got, want, n, tol);
    free(got);
    return err;
}

static double max_d(double a, double b) { return a > b ? a : b; }

// ---- memory --------------------------------------------------------------------------------------

static void test_memory(TestCounts *t, OpsContext *gpu) {
    const size_t n = 10007;
    float *zeros = alloc_floats(n), *pattern = alloc_floats(n);
    memset(zeros, 0, n * sizeof(float));
    fill_uniform(pattern, n, -1.0f, 1.0f, 1);
    float *a = gpu->ops->alloc(gpu, n * sizeof(float));
    expect_identical_device(t, "alloc is zero-filled", gpu, a, zeros, n);
    gpu->ops->to_device(gpu, a, pattern, n * sizeof(float));
    float *b = gpu->ops->alloc(gpu, n * sizeof(float));
    gpu->ops->copy(gpu, b, a, n * sizeof(float));
    expect_identical_device(t, "to_device + copy + to_host", gpu, b, pattern, n);
    void *empty = gpu->ops->alloc(gpu, 0);
    EXPECT(t, empty != NULL, "alloc(0) returned NULL");
    gpu->ops->release(gpu, empty);
    gpu->ops->release(gpu, a);
    gpu->ops->release(gpu, b);
    gpu->ops->synchronize(gpu);
#ifdef VQ_HAVE_CUDA
    EXPECT(t, cuda_context_stream(gpu) != NULL, "cuda_context_stream returned NULL");
#endif
    free(zeros);
    free(pattern);
}

// ---- elementwise, permutes, loss, reductions -----------------------------------------------------

static void test_elementwise(TestCounts *t, Worst *w, OpsContext *cpu, OpsContext *gpu) {
    const size_t n = 100003;   // not a multiple of any block size
    const size_t bytes = n * sizeof(float);
    float *a = alloc_floats(n), *b = alloc_floats(n), *special = alloc_floats(n), *ref = alloc_floats(n);
    fill_uniform(a, n, -1.0f, 1.0f, 10);
    fill_uniform(b, n, -1.0f, 1.0f, 11);
    memcpy(special, a, bytes);
    special[0] = NAN, special[1] = -0.0f, special[2] = 0.0f, special[3] = INFINITY, special[4] = -INFINITY;
    special[5] = -NAN;
    float *ga = upload(gpu, a, bytes), *gb = upload(gpu, b, bytes), *gs = upload(gpu, special, bytes);
    float *gout = gpu->ops->alloc(gpu, bytes);

    cpu->ops->relu_forward(cpu, special, ref, n);
    gpu->ops->relu_forward(gpu, gs, gout, n);
    expect_identical_device(t, "relu_forward", gpu, gout, ref, n);
    gpu->ops->copy(gpu, gout, gs, bytes);
    gpu->ops->relu_forward(gpu, gout, gout, n);   // y aliases x
    expect_identical_device(t, "relu_forward in place", gpu, gout, ref, n);

    cpu->ops->relu_backward(cpu, special, b, ref, n);
    gpu->ops->relu_backward(gpu, gs, gb, gout, n);
    expect_identical_device(t, "relu_backward", gpu, gout, ref, n);
    gpu->ops->copy(gpu, gout, gb, bytes);
    gpu->ops->relu_backward(gpu, gs, gout, gout, n);   // dx aliases dy
    expect_identical_device(t, "relu_backward in place", gpu, gout, ref, n);

    cpu->ops->add(cpu, a, b, ref, n);
    gpu->ops->add(gpu, ga, gb, gout, n);
    expect_identical_device(t, "add", gpu, gout, ref, n);
    gpu->ops->copy(gpu, gout, ga, bytes);
    gpu->ops->add(gpu, gout, gb, gout, n);   // out aliases a
    expect_identical_device(t, "add in place", gpu, gout, ref, n);

    memcpy(ref, a, bytes);
    cpu->ops->scale(cpu, ref, 0.37f, n);
    gpu->ops->copy(gpu, gout, ga, bytes);
    gpu->ops->scale(gpu, gout, 0.37f, n);
    expect_identical_device(t, "scale", gpu, gout, ref, n);

    cpu->ops->fill(cpu, ref, -2.5f, n);
    gpu->ops->fill(gpu, gout, -2.5f, n);
    expect_identical_device(t, "fill", gpu, gout, ref, n);

    // Permutes: the model's shape, odd shapes crossing tile edges, and degenerate ones.
    const int perms[][3] = {{4, 64, 64}, {3, 3, 1000}, {2, 33, 65}, {5, 1, 7}, {1, 1, 1}, {7, 100, 1}};
    for (size_t p = 0; p < sizeof perms / sizeof perms[0]; p++) {
        int pn = perms[p][0], pc = perms[p][1], phw = perms[p][2];
        size_t count = (size_t)pn * pc * phw;
        char what[96];
        cpu->ops->nchw_to_nhwc(cpu, a, ref, pn, pc, phw);
        gpu->ops->nchw_to_nhwc(gpu, ga, gout, pn, pc, phw);
        snprintf(what, sizeof what, "nchw_to_nhwc [%d, %d, %d]", pn, pc, phw);
        expect_identical_device(t, what, gpu, gout, ref, count);
        cpu->ops->nhwc_to_nchw(cpu, a, ref, pn, pc, phw);
        gpu->ops->nhwc_to_nchw(gpu, ga, gout, pn, pc, phw);
        snprintf(what, sizeof what, "nhwc_to_nchw [%d, %d, %d]", pn, pc, phw);
        expect_identical_device(t, what, gpu, gout, ref, count);
    }

    // mse_forward / sum_squares: device scalars.
    float *gscalar = gpu->ops->alloc(gpu, 2 * sizeof(float));
    const size_t sizes[] = {n, 1, 31, 257, 3 * 32 * 32 * 256};   // the last: a CIFAR batch of 256
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t m = sizes[s];
        float *pa = a, *pb = b, *gpa = ga, *gpb = gb;
        float *big_a = NULL, *big_b = NULL;
        if (m > n) {   // a larger pair just for this size
            big_a = alloc_floats(m), big_b = alloc_floats(m);
            fill_uniform(big_a, m, -0.5f, 0.5f, 12);
            fill_uniform(big_b, m, -0.5f, 0.5f, 13);
            pa = big_a, pb = big_b;
            gpa = upload(gpu, big_a, m * sizeof(float)), gpb = upload(gpu, big_b, m * sizeof(float));
        }
        float want, got, again;
        cpu->ops->mse_forward(cpu, pa, pb, m, &want);
        gpu->ops->mse_forward(gpu, gpa, gpb, m, gscalar);
        got = download_scalar(gpu, gscalar);
        EXPECT(t, test_close(got, want, REDUCE_TOL, 0.0), "mse_forward n=%zu: GPU %.9g CPU %.9g", m, got, want);
        w->reduce = max_d(w->reduce, fabs((double)got - want) / fabs((double)want));
        gpu->ops->mse_forward(gpu, gpa, gpb, m, gscalar + 1);
        again = download_scalar(gpu, gscalar + 1);
        EXPECT(t, memcmp(&got, &again, sizeof got) == 0, "mse_forward n=%zu not deterministic", m);

        cpu->ops->sum_squares(cpu, pa, m, &want);
        gpu->ops->sum_squares(gpu, gpa, m, gscalar);
        got = download_scalar(gpu, gscalar);
        EXPECT(t, test_close(got, want, REDUCE_TOL, 0.0), "sum_squares n=%zu: GPU %.9g CPU %.9g", m, got, want);
        w->reduce = max_d(w->reduce, fabs((double)got - want) / fabs((double)want));
        gpu->ops->sum_squares(gpu, gpa, m, gscalar + 1);
        again = download_scalar(gpu, gscalar + 1);
        EXPECT(t, memcmp(&got, &again, sizeof got) == 0, "sum_squares n=%zu not deterministic", m);

        if (big_a) {
            gpu->ops->release(gpu, gpa);
            gpu->ops->release(gpu, gpb);
            free(big_a);
            free(big_b);
        }
    }
    // The mean of nothing is NaN; inf and NaN propagate through sum_squares.
    gpu->ops->mse_forward(gpu, ga, gb, 0, gscalar);
    EXPECT(t, isnan(download_scalar(gpu, gscalar)), "mse_forward of 0 elements is not NaN");
    gpu->ops->sum_squares(gpu, gs + 3, 2, gscalar);   // +inf and -inf
    float inf_sum = download_scalar(gpu, gscalar);
    EXPECT(t, isinf(inf_sum) && inf_sum > 0, "sum_squares with an inf gave %g", inf_sum);
    gpu->ops->sum_squares(gpu, gs, 10, gscalar);   // starts with a NaN
    EXPECT(t, isnan(download_scalar(gpu, gscalar)), "sum_squares with a NaN is not NaN");

    // mse_backward: overwrite, then accumulate onto it.
    cpu->ops->mse_backward(cpu, a, b, n, 0.7f, 0, ref);
    gpu->ops->fill(gpu, gout, NAN, n);
    gpu->ops->mse_backward(gpu, ga, gb, n, 0.7f, 0, gout);
    w->elementwise = max_d(w->elementwise, expect_close_device(t, w, "mse_backward", gpu, gout, ref, n, EXACTISH_TOL));
    cpu->ops->mse_backward(cpu, b, a, n, 1.3f, 1, ref);
    gpu->ops->mse_backward(gpu, gb, ga, n, 1.3f, 1, gout);
    w->elementwise = max_d(w->elementwise,
                           expect_close_device(t, w, "mse_backward accumulate", gpu, gout, ref, n, EXACTISH_TOL));

    gpu->ops->release(gpu, gscalar);
    gpu->ops->release(gpu, ga);
    gpu->ops->release(gpu, gb);
    gpu->ops->release(gpu, gs);
    gpu->ops->release(gpu, gout);
    free(a);
    free(b);
    free(special);
    free(ref);
}

// ---- quantizer -------------------------------------------------------------------------------------

static double exact_dist(const float *a, const float *b, int d) {
    double s = 0.0;
    for (int t = 0; t < d; t++) s += ((double)a[t] - b[t]) * ((double)a[t] - b[t]);
    return s;
}

static double sq_norm(const float *a, int d) {
    double s = 0.0;
    for (int t = 0; t < d; t++) s += (double)a[t] * a[t];
    return s;
}

static void nearest_both(OpsContext *cpu, OpsContext *gpu, const float *z, const float *e, int m, int k, int d,
                         int32_t *cpu_codes, int32_t *gpu_codes) {
    cpu->ops->reserve_workspace(cpu, cpu->ops->vq_workspace_bytes(cpu, m, k, d));
    cpu->ops->vq_nearest(cpu, z, e, m, k, d, cpu_codes);
    float *gz = upload(gpu, z, (size_t)m * d * sizeof(float)), *ge = upload(gpu, e, (size_t)k * d * sizeof(float));
    int32_t *gcodes = gpu->ops->alloc(gpu, (size_t)m * sizeof(int32_t));
    gpu->ops->reserve_workspace(gpu, gpu->ops->vq_workspace_bytes(gpu, m, k, d));
    gpu->ops->vq_nearest(gpu, gz, ge, m, k, d, gcodes);
    gpu->ops->to_host(gpu, gpu_codes, gcodes, (size_t)m * sizeof(int32_t));
    gpu->ops->release(gpu, gz);
    gpu->ops->release(gpu, ge);
    gpu->ops->release(gpu, gcodes);
}

static void test_nearest_special(TestCounts *t, OpsContext *cpu, OpsContext *gpu) {
    // Integer data: every distance is exact in float, whatever the summation order, so the codes
    // must be identical, including exact ties (rows 10.. of the codebook repeat rows 0..9).
    enum { M = 1000, K = 40, D = 8 };
    float *z = alloc_floats((size_t)M * D), *e = alloc_floats((size_t)K * D);
    int32_t cpu_codes[M], gpu_codes[M];
    Rng r = rng_stream(77, RNG_PURPOSE_TEST, 30, 0);
    for (size_t i = 0; i < (size_t)M * D; i++) z[i] = (float)((int)rng_below(&r, 7) - 3);
    for (int j = 0; j < K; j++)
        for (int x = 0; x < D; x++) e[j * D + x] = j < 10 ? (float)((int)rng_below(&r, 7) - 3) : e[(j % 10) * D + x];
    nearest_both(cpu, gpu, z, e, M, K, D, cpu_codes, gpu_codes);
    int same = 1, low = 1;
    for (int i = 0; i < M; i++) {
        same &= cpu_codes[i] == gpu_codes[i];
        low &= gpu_codes[i] < 10;
    }
    EXPECT(t, same, "vq_nearest on integer data: GPU codes differ from the CPU's");
    EXPECT(t, low, "vq_nearest: an exact tie did not go to the lowest index");

    // A NaN in z makes every distance of its row NaN: code 0, the first NaN (torch.argmin).
    enum { M2 = 5, K2 = 7, D2 = 3 };
    float z2[M2 * D2], e2[K2 * D2];
    int32_t c2[M2], g2[M2];
    fill_normal(z2, M2 * D2, 1.0f, 31);
    fill_normal(e2, K2 * D2, 1.0f, 32);
    z2[2 * D2 + 1] = NAN;
    nearest_both(cpu, gpu, z2, e2, M2, K2, D2, c2, g2);
    EXPECT(t, memcmp(c2, g2, sizeof c2) == 0 && g2[2] == 0, "vq_nearest with a NaN row: GPU code %d, CPU %d",
           (int)g2[2], (int)c2[2]);
    free(z);
    free(e);
}

static void test_quantizer(TestCounts *t, Worst *w, OpsContext *cpu, OpsContext *gpu) {
    // {m, k, d}: several 4096-row GPU chunks plus a partial one at the model's k and d, and small
    // odd shapes.
    const int shapes[][3] = {{8492, 512, 64}, {4096, 512, 64}, {1, 7, 3}, {300, 1, 16}, {257, 33, 1}, {785, 512, 64}};
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
        const int m = shapes[sh][0], k = shapes[sh][1], d = shapes[sh][2];
        const size_t zn = (size_t)m * d, en = (size_t)k * d;
        char what[128];
        float *z = alloc_floats(zn), *e = alloc_floats(en);
        fill_normal(z, zn, 1.0f, 40 + sh);
        fill_normal(e, en, 0.5f, 50 + sh);
        int32_t *cpu_codes = xmalloc((size_t)m * sizeof(int32_t)), *gpu_codes = xmalloc((size_t)m * sizeof(int32_t));

        // nearest: identical but for near-ties.
        nearest_both(cpu, gpu, z, e, m, k, d, cpu_codes, gpu_codes);
        int mismatches = 0, bad = 0;
        for (int i = 0; i < m; i++) {
            if (cpu_codes[i] == gpu_codes[i]) continue;
            mismatches++;
            const float *zi = z + (size_t)i * d;
            int gc = gpu_codes[i], cc = cpu_codes[i];
            if (gc < 0 || gc >= k) {
                bad++;
                continue;
            }
            double gap = fabs(exact_dist(zi, e + (size_t)gc * d, d) - exact_dist(zi, e + (size_t)cc * d, d));
            double allowed = 1e-4 + 1e-6 * (sq_norm(zi, d) + sq_norm(e + (size_t)cc * d, d));
            if (gap > allowed) bad++;
        }
        EXPECT(t, bad == 0 && mismatches <= m / 100 + 1,
               "vq_nearest m=%d k=%d d=%d: %d codes differ from the CPU's, %d of them not near-ties", m, k, d,
               mismatches, bad);

        // The rest from the CPU's codes, so that both backends see the same input.
        float *gz = upload(gpu, z, zn * sizeof(float)), *ge = upload(gpu, e, en * sizeof(float));
        int32_t *gcodes = upload(gpu, cpu_codes, (size_t)m * sizeof(int32_t));

        float *ref = alloc_floats(zn), *gout = gpu->ops->alloc(gpu, zn * sizeof(float));
        cpu->ops->vq_gather(cpu, e, cpu_codes, m, d, ref);
        gpu->ops->vq_gather(gpu, ge, gcodes, m, d, gout);
        snprintf(what, sizeof what, "vq_gather m=%d d=%d", m, d);
        expect_identical_device(t, what, gpu, gout, ref, zn);

        float *counts = alloc_floats(k), *sums = alloc_floats(en);
        float *gcounts = gpu->ops->alloc(gpu, k * sizeof(float)), *gsums = gpu->ops->alloc(gpu, en * sizeof(float));
        cpu->ops->vq_code_stats(cpu, z, cpu_codes, m, k, d, counts, sums);
        gpu->ops->fill(gpu, gcounts, NAN, k);
        gpu->ops->fill(gpu, gsums, NAN, en);
        gpu->ops->vq_code_stats(gpu, gz, gcodes, m, k, d, gcounts, gsums);
        snprintf(what, sizeof what, "vq_code_stats counts m=%d k=%d", m, k);
        expect_identical_device(t, what, gpu, gcounts, counts, k);
        snprintf(what, sizeof what, "vq_code_stats sums m=%d k=%d d=%d", m, k, d);
        w->quantizer = max_d(w->quantizer, expect_close_device(t, w, what, gpu, gsums, sums, en, REDUCE_TOL));
        float *first = download(gpu, gsums, en);
        gpu->ops->vq_code_stats(gpu, gz, gcodes, m, k, d, gcounts, gsums);
        snprintf(what, sizeof what, "vq_code_stats repeat m=%d", m);
        expect_identical_device(t, what, gpu, gsums, first, en);
        gpu->ops->fill(gpu, gcounts, NAN, k);
        gpu->ops->vq_code_stats(gpu, gz, gcodes, m, k, d, gcounts, NULL);
        snprintf(what, sizeof what, "vq_code_stats counts without sums m=%d", m);
        expect_identical_device(t, what, gpu, gcounts, counts, k);

        // codebook gradient from those stats
        const float scale = 2.0f / ((float)m * (float)d);
        float *grad = alloc_floats(en), *ggrad = gpu->ops->alloc(gpu, en * sizeof(float));
        cpu->ops->vq_codebook_grad(cpu, e, counts, sums, k, d, scale, grad);
        gpu->ops->vq_codebook_grad(gpu, ge, gcounts, gsums, k, d, scale, ggrad);
        snprintf(what, sizeof what, "vq_codebook_grad k=%d d=%d", k, d);
        w->quantizer = max_d(w->quantizer, expect_close_device(t, w, what, gpu, ggrad, grad, en, EXACTISH_TOL));

        // EMA: three steps from a stable start (sizes 1, ema_w = codebook), same stats each step.
        float *size = alloc_floats(k), *ema_w = alloc_floats(en), *book = alloc_floats(en);
        for (int j = 0; j < k; j++) size[j] = 1.0f;
        memcpy(ema_w, e, en * sizeof(float));
        memcpy(book, e, en * sizeof(float));
        float *gsize = upload(gpu, size, k * sizeof(float)), *gema = upload(gpu, e, en * sizeof(float));
        float *gbook = upload(gpu, e, en * sizeof(float));
        for (int step = 0; step < 3; step++) {
            cpu->ops->ema_update(cpu, size, ema_w, book, counts, sums, k, d, 0.99f, 1e-5f, NULL);
            gpu->ops->ema_update(gpu, gsize, gema, gbook, gcounts, gsums, k, d, 0.99f, 1e-5f, NULL);
        }
        snprintf(what, sizeof what, "ema_update cluster sizes k=%d", k);
        w->quantizer = max_d(w->quantizer, expect_close_device(t, w, what, gpu, gsize, size, k, EXACTISH_TOL));
        snprintf(what, sizeof what, "ema_update ema_w k=%d d=%d", k, d);
        w->quantizer = max_d(w->quantizer, expect_close_device(t, w, what, gpu, gema, ema_w, en, EXACTISH_TOL));
        snprintf(what, sizeof what, "ema_update codebook k=%d d=%d", k, d);
        w->quantizer = max_d(w->quantizer, expect_close_device(t, w, what, gpu, gbook, book, en, EXACTISH_TOL));

        void *gpu_buffers[] = {gz, ge, gcodes, gout, gcounts, gsums, ggrad, gsize, gema, gbook};
        for (size_t i = 0; i < sizeof gpu_buffers / sizeof gpu_buffers[0]; i++) gpu->ops->release(gpu, gpu_buffers[i]);
        void *host_buffers[] = {z, e, cpu_codes, gpu_codes, ref, counts, sums, first, grad, size, ema_w, book};
        for (size_t i = 0; i < sizeof host_buffers / sizeof host_buffers[0]; i++) free(host_buffers[i]);
    }
}

// ---- Adam ------------------------------------------------------------------------------------------

static void test_adam(TestCounts *t, Worst *w, OpsContext *cpu, OpsContext *gpu) {
    const size_t n = 100003, bytes = n * sizeof(float);
    const float decays[] = {0.0f, 0.01f};
    for (int dcase = 0; dcase < 2; dcase++) {
        float *p = alloc_floats(n), *g = alloc_floats(n), *m = alloc_floats(n), *v = alloc_floats(n);
        fill_uniform(p, n, -1.0f, 1.0f, 60);
        memset(m, 0, bytes);
        memset(v, 0, bytes);
        float *gp = upload(gpu, p, bytes), *gm = upload(gpu, m, bytes), *gv = upload(gpu, v, bytes);
        float *gg = gpu->ops->alloc(gpu, bytes);
        // Step bookkeeping on both sides; step 2 is skipped (non-finite gradient norm).
        AdamHyper hyper = {2e-4, 0.9, 0.999, 1e-8, decays[dcase]};
        StepState cpu_state;
        memset(&cpu_state, 0, sizeof cpu_state);
        StepState *gstate = gpu->ops->alloc(gpu, sizeof(StepState));
        float *gsumsq = gpu->ops->alloc(gpu, sizeof(float));
        for (long step = 1; step <= 4; step++) {
            fill_normal(g, n, 0.1f, 61 + (uint64_t)step);
            gpu->ops->to_device(gpu, gg, g, bytes);
            float sumsq = step == 2 ? NAN : 1.0f;
            gpu->ops->to_device(gpu, gsumsq, &sumsq, sizeof sumsq);
            cpu->ops->step_commit(cpu, &cpu_state, &sumsq, &hyper);
            gpu->ops->step_commit(gpu, gstate, gsumsq, &hyper);
            cpu->ops->adam_update(cpu, p, g, m, v, n, &cpu_state);
            gpu->ops->adam_update(gpu, gp, gg, gm, gv, n, gstate);
        }
        StepState gpu_state;
        gpu->ops->to_host(gpu, &gpu_state, gstate, sizeof gpu_state);
        EXPECT(t, gpu_state.steps == 4 && gpu_state.adam_steps == 3 && gpu_state.skipped == 1 &&
                      gpu_state.last_skipped == 2 && gpu_state.finite == 1,
               "step_commit counters on the GPU: steps %d adam %d skipped %d last %d finite %d", gpu_state.steps,
               gpu_state.adam_steps, gpu_state.skipped, gpu_state.last_skipped, gpu_state.finite);
        EXPECT(t, memcmp(&gpu_state.adam, &cpu_state.adam, sizeof cpu_state.adam) == 0,
               "step_commit: the GPU's Adam scalars differ from the CPU's (double pow/sqrt on the device)");
        gpu->ops->release(gpu, gstate);
        gpu->ops->release(gpu, gsumsq);
        char what[64];
        snprintf(what, sizeof what, "adam params (wd %g)", decays[dcase]);
        w->optimizer = max_d(w->optimizer, expect_close_device(t, w, what, gpu, gp, p, n, EXACTISH_TOL));
        snprintf(what, sizeof what, "adam exp_avg (wd %g)", decays[dcase]);
        w->optimizer = max_d(w->optimizer, expect_close_device(t, w, what, gpu, gm, m, n, EXACTISH_TOL));
        snprintf(what, sizeof what, "adam exp_avg_sq (wd %g)", decays[dcase]);
        w->optimizer = max_d(w->optimizer, expect_close_device(t, w, what, gpu, gv, v, n, EXACTISH_TOL));
        gpu->ops->release(gpu, gp);
        gpu->ops->release(gpu, gm);
        gpu->ops->release(gpu, gv);
        gpu->ops->release(gpu, gg);
        free(p);
        free(g);
        free(m);
        free(v);
    }
}

// ---- data and step flags ------------------------------------------------------------------------

// gather_images: bit-identical to the CPU (the same float ops); flag_nonfinite: 0 or NaN.
static void test_data(TestCounts *t, OpsContext *cpu, OpsContext *gpu) {
    enum { COUNT = 37, IMAGE = 3 * 8 * 8, BATCH = 5 };
    uint8_t *pixels = xmalloc((size_t)COUNT * IMAGE);
    int32_t perm[COUNT];
    for (size_t i = 0; i < (size_t)COUNT * IMAGE; i++) pixels[i] = (uint8_t)((i * 2654435761u) >> 13);
    for (int i = 0; i < COUNT; i++) perm[i] = (i * 11 + 3) % COUNT;
    float *want = alloc_floats((size_t)BATCH * IMAGE), *got = alloc_floats((size_t)BATCH * IMAGE);
    uint8_t *gpixels = upload(gpu, pixels, (size_t)COUNT * IMAGE);
    int32_t *gperm = upload(gpu, perm, sizeof perm);
    float *gout = gpu->ops->alloc(gpu, (size_t)BATCH * IMAGE * sizeof(float));
    cpu->ops->gather_images(cpu, pixels, perm, 30, BATCH, IMAGE, want);
    gpu->ops->gather_images(gpu, gpixels, gperm, 30, BATCH, IMAGE, gout);
    gpu->ops->to_host(gpu, got, gout, (size_t)BATCH * IMAGE * sizeof(float));
    EXPECT(t, memcmp(got, want, (size_t)BATCH * IMAGE * sizeof(float)) == 0,
           "gather_images: the GPU batch differs from the CPU's (must be bit-identical)");

    float values[2] = {1.0f, 2.0f}, flag = -1.0f;
    float *gvalues = upload(gpu, values, sizeof values);
    gpu->ops->flag_nonfinite(gpu, gvalues, 2, gout);
    gpu->ops->to_host(gpu, &flag, gout, sizeof flag);
    EXPECT(t, flag == 0.0f, "flag_nonfinite on finite values: got %g, want 0", flag);
    values[1] = NAN;
    gpu->ops->to_device(gpu, gvalues, values, sizeof values);
    gpu->ops->flag_nonfinite(gpu, gvalues, 2, gout);
    gpu->ops->to_host(gpu, &flag, gout, sizeof flag);
    EXPECT(t, isnan(flag), "flag_nonfinite with a NaN: got %g, want NaN", flag);

    gpu->ops->release(gpu, gvalues);
    gpu->ops->release(gpu, gpixels);
    gpu->ops->release(gpu, gperm);
    gpu->ops->release(gpu, gout);
    free(pixels);
    free(want);
    free(got);
}

// ---- convolutions ------------------------------------------------------------------------------

// The resnet arch at CIFAR size, the MNIST arch's k7 1x1-latent pair and the small MNIST model
// (output_padding 1).
static const ConvCase CONV_CASES[] = {
    RESNET_CIFAR_CONV_CASES,
    {"mnist conv 32->8 k7 7->1", 32, 7, 7, 8, 7, 1, 0, 0, 1, 0},
    {"mnist convT 8->32 k7 1->7", 8, 1, 1, 32, 7, 1, 0, 1, 1, 0},
    SMALL_MNIST_CONV_CASES,
};
enum { CONV_CASE_COUNT = sizeof CONV_CASES / sizeof CONV_CASES[0], CONV_BATCH = 4 };

typedef struct {
    float *in, *weight, *bias, *dout;   // host inputs
    float *out, *din, *dweight, *dbias; // host results (din NULL for the first layer)
    ConvShape shape;
} ConvRun;

static ConvShape case_shape(const ConvCase *cc) { return conv_case_shape(CONV_BATCH, cc); }

static void conv_inputs(ConvRun *r, const ConvCase *cc, uint64_t seed) {
    memset(r, 0, sizeof *r);
    r->shape = case_shape(cc);
    size_t nin = conv_in_count(&r->shape), nw = conv_weight_count(&r->shape), nout = conv_out_count(&r->shape);
    r->in = alloc_floats(nin), r->weight = alloc_floats(nw), r->dout = alloc_floats(nout);
    r->bias = alloc_floats((size_t)cc->cout);
    fill_uniform(r->in, nin, -1.0f, 1.0f, seed);
    fill_uniform(r->weight, nw, -0.2f, 0.2f, seed + 1);
    fill_uniform(r->bias, (size_t)cc->cout, -0.2f, 0.2f, seed + 2);
    fill_uniform(r->dout, nout, -1.0f, 1.0f, seed + 3);
}

// Forward and backward of `src`'s inputs on ctx (either backend) into `dst`'s results. The first
// layer (3 input channels) passes din = NULL, as the model does. Results are poisoned with NaN
// before each op so that an op that does not overwrite them fails.
static void conv_run(OpsContext *ctx, const ConvRun *src, ConvRun *dst) {
    ConvShape s = src->shape;
    size_t nin = conv_in_count(&s), nw = conv_weight_count(&s), nout = conv_out_count(&s);
    size_t nb = (size_t)s.out_channels;
    int want_din = s.in_channels != 3;
    size_t ws = ctx->ops->conv_prepare(ctx, &s);
    ctx->ops->reserve_workspace(ctx, ws);
    float *in = upload(ctx, src->in, nin * sizeof(float)), *weight = upload(ctx, src->weight, nw * sizeof(float));
    float *bias = upload(ctx, src->bias, nb * sizeof(float)), *dout = upload(ctx, src->dout, nout * sizeof(float));
    float *out = ctx->ops->alloc(ctx, nout * sizeof(float)), *din = ctx->ops->alloc(ctx, nin * sizeof(float));
    float *dweight = ctx->ops->alloc(ctx, nw * sizeof(float)), *dbias = ctx->ops->alloc(ctx, nb * sizeof(float));
    ctx->ops->fill(ctx, out, NAN, nout);
    ctx->ops->fill(ctx, din, NAN, nin);
    ctx->ops->fill(ctx, dweight, NAN, nw);
    ctx->ops->fill(ctx, dbias, NAN, nb);
    ctx->ops->conv_forward(ctx, &s, in, weight, s.has_bias ? bias : NULL, out);
    ctx->ops->conv_backward(ctx, &s, in, weight, dout, want_din ? din : NULL, dweight, s.has_bias ? dbias : NULL);
    dst->shape = s;
    dst->out = download(ctx, out, nout);
    dst->din = want_din ? download(ctx, din, nin) : NULL;
    dst->dweight = download(ctx, dweight, nw);
    dst->dbias = s.has_bias ? download(ctx, dbias, nb) : NULL;
    void *buffers[] = {in, weight, bias, dout, out, din, dweight, dbias};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) ctx->ops->release(ctx, buffers[i]);
}

static void conv_free(ConvRun *r) {
    void *buffers[] = {r->in, r->weight, r->bias, r->dout, r->out, r->din, r->dweight, r->dbias};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) free(buffers[i]);
    memset(r, 0, sizeof *r);
}

static double conv_compare(TestCounts *t, const char *mode, const char *name, const ConvRun *got,
                           const ConvRun *want, double tol) {
    const ConvShape *s = &want->shape;
    char what[160];
    double worst = 0.0;
    snprintf(what, sizeof what, "%s %s forward", mode, name);
    worst = max_d(worst, test_max_rel_error(got->out, want->out, conv_out_count(s)));
    EXPECT(t, test_max_rel_error(got->out, want->out, conv_out_count(s)) <= tol, "%s: error %.3g > %.3g", what,
           test_max_rel_error(got->out, want->out, conv_out_count(s)), tol);
    if (want->din) {
        double err = test_max_rel_error(got->din, want->din, conv_in_count(s));
        worst = max_d(worst, err);
        EXPECT(t, err <= tol, "%s %s din: error %.3g > %.3g", mode, name, err, tol);
    }
    double err = test_max_rel_error(got->dweight, want->dweight, conv_weight_count(s));
    worst = max_d(worst, err);
    EXPECT(t, err <= tol, "%s %s dweight: error %.3g > %.3g", mode, name, err, tol);
    if (want->dbias) {
        err = test_max_rel_error(got->dbias, want->dbias, (size_t)s->out_channels);
        worst = max_d(worst, err);
        EXPECT(t, err <= tol, "%s %s dbias: error %.3g > %.3g", mode, name, err, tol);
    }
    return worst;
}

static int conv_identical(const ConvRun *a, const ConvRun *b) {
    const ConvShape *s = &a->shape;
    return first_difference(a->out, b->out, conv_out_count(s)) < 0 &&
           (!a->din || first_difference(a->din, b->din, conv_in_count(s)) < 0) &&
           first_difference(a->dweight, b->dweight, conv_weight_count(s)) < 0 &&
           (!a->dbias || first_difference(a->dbias, b->dbias, (size_t)s->out_channels) < 0);
}

static void conv_free_results(ConvRun *r) {
    free(r->out);
    free(r->din);
    free(r->dweight);
    free(r->dbias);
    r->out = r->din = r->dweight = r->dbias = NULL;
}

static void test_conv(TestCounts *t, Worst *w, OpsContext *cpu) {
    // CPU references, once.
    ConvRun ref[CONV_CASE_COUNT];
    for (int i = 0; i < CONV_CASE_COUNT; i++) {
        conv_inputs(&ref[i], &CONV_CASES[i], 100 + 10 * (uint64_t)i);
        conv_run(cpu, &ref[i], &ref[i]);
    }

    // Accuracy: every algorithm-selection path (heuristics in deterministic mode, benchmarking
    // otherwise) in fp32 and tf32, and bf16 (operands rounded to bf16, fp32 accumulation).
    const struct {
        const char *mode;
        Precision precision;
        int deterministic;
        double tol;
    } modes[] = {
        {"fp32 deterministic", PRECISION_FP32, 1, CONV_FP32_TOL},
        {"fp32 benchmarked", PRECISION_FP32, 0, CONV_FP32_TOL},
        {"tf32 benchmarked", PRECISION_TF32, 0, CONV_TF32_TOL},
        {"bf16 deterministic", PRECISION_BF16, 1, CONV_BF16_TOL},
    };
    for (size_t mi = 0; mi < sizeof modes / sizeof modes[0]; mi++) {
        OpsContext gpu;
        ops_context_init(&gpu, "cuda", 0, 0, modes[mi].precision, modes[mi].deterministic);
        for (int i = 0; i < CONV_CASE_COUNT; i++) {
            ConvRun got;
            memset(&got, 0, sizeof got);
            conv_run(&gpu, &ref[i], &got);
            double err = conv_compare(t, modes[mi].mode, CONV_CASES[i].name, &got, &ref[i], modes[mi].tol);
            if (modes[mi].precision == PRECISION_FP32) w->conv_fp32 = max_d(w->conv_fp32, err);
            else w->conv_tf32 = max_d(w->conv_tf32, err);
            conv_free_results(&got);
        }
        ops_context_destroy(&gpu);
    }

    // Determinism: tf32 deterministic, twice on one context and once on another: same bits.
    OpsContext a, b;
    ops_context_init(&a, "cuda", 0, 0, PRECISION_TF32, 1);
    ops_context_init(&b, "cuda", 0, 0, PRECISION_TF32, 1);
    for (int i = 0; i < CONV_CASE_COUNT; i++) {
        ConvRun first, second, other;
        memset(&first, 0, sizeof first);
        memset(&second, 0, sizeof second);
        memset(&other, 0, sizeof other);
        conv_run(&a, &ref[i], &first);
        conv_run(&a, &ref[i], &second);
        conv_run(&b, &ref[i], &other);
        EXPECT(t, conv_identical(&first, &second), "tf32 deterministic %s: two runs differ", CONV_CASES[i].name);
        EXPECT(t, conv_identical(&first, &other), "tf32 deterministic %s: two contexts differ", CONV_CASES[i].name);
        double err = conv_compare(t, "tf32 deterministic", CONV_CASES[i].name, &first, &ref[i], CONV_TF32_TOL);
        w->conv_tf32 = max_d(w->conv_tf32, err);
        conv_free_results(&first);
        conv_free_results(&second);
        conv_free_results(&other);
    }
    ops_context_destroy(&a);
    ops_context_destroy(&b);
    for (int i = 0; i < CONV_CASE_COUNT; i++) conv_free(&ref[i]);
}

int main(void) {
    if (gpu_test_unavailable()) return TEST_SKIP_CODE;
    TestCounts t = {0, 0};
    Worst w;
    memset(&w, 0, sizeof w);
    OpsContext cpu, gpu;
    ops_context_init(&cpu, "cpu", 0, 1, PRECISION_FP32, 1);
    ops_context_init(&gpu, "cuda", 0, 0, PRECISION_FP32, 1);

    test_memory(&t, &gpu);
    test_elementwise(&t, &w, &cpu, &gpu);
    test_nearest_special(&t, &cpu, &gpu);
    test_quantizer(&t, &w, &cpu, &gpu);
    test_adam(&t, &w, &cpu, &gpu);
    test_data(&t, &cpu, &gpu);
    test_conv(&t, &w, &cpu);

    printf("worst errors vs CPU: elementwise %.3g, reductions %.3g, quantizer %.3g, adam %.3g, "
           "conv fp32 %.3g, conv tf32 %.3g; %d of %d near-exact tensors bit-identical\n",
           w.elementwise, w.reduce, w.quantizer, w.optimizer, w.conv_fp32, w.conv_tf32, w.bit_identical, w.compared);
    ops_context_destroy(&gpu);
    ops_context_destroy(&cpu);
    return test_finish("test_gpu_ops", &t);
}
