// test_gpu_quantizer.c: the CUDA vector-quantizer ops against the CPU's (the oracle): vq_nearest,
// vq_gather, vq_code_stats, vq_codebook_grad and ema_update, at the model's k and d over several
// 4096-row GPU chunks and at small odd shapes. Tolerances as test_gpu_ops.c says (gather and code
// counts bit-identical; code_stats sums relative 1e-5; codebook gradient and EMA 1e-6; vq_nearest
// identical but for near-ties, and exactly on integer data). Exits 77 (SKIP) without a GPU.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "gpu_ops_common.h"
#include "gpu_test.h"

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

// vq_nearest at one shape: the GPU's codes identical to the CPU's (cpu_codes, filled here) but for
// near-ties.
static void check_nearest(TestCounts *t, OpsContext *cpu, OpsContext *gpu, const float *z, const float *e, int m,
                          int k, int d, int32_t *cpu_codes) {
    int32_t *gpu_codes = xmalloc((size_t)m * sizeof(int32_t));
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
    free(gpu_codes);
}

// gather, code stats, codebook gradient and three EMA updates at one shape, from the CPU's codes,
// so that both backends see the same input.
static void check_codebook_ops(TestCounts *t, Worst *w, OpsContext *cpu, OpsContext *gpu, const float *z,
                               const float *e, const int32_t *cpu_codes, int m, int k, int d) {
    const size_t zn = (size_t)m * d, en = (size_t)k * d;
    char what[128];
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
    void *host_buffers[] = {ref, counts, sums, first, grad, size, ema_w, book};
    for (size_t i = 0; i < sizeof host_buffers / sizeof host_buffers[0]; i++) free(host_buffers[i]);
}

static void test_quantizer(TestCounts *t, Worst *w, OpsContext *cpu, OpsContext *gpu) {
    // {m, k, d}: several 4096-row GPU chunks plus a partial one at the model's k and d, and small
    // odd shapes.
    const int shapes[][3] = {{8492, 512, 64}, {4096, 512, 64}, {1, 7, 3}, {300, 1, 16}, {257, 33, 1}, {785, 512, 64}};
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
        const int m = shapes[sh][0], k = shapes[sh][1], d = shapes[sh][2];
        const size_t zn = (size_t)m * d, en = (size_t)k * d;
        float *z = alloc_floats(zn), *e = alloc_floats(en);
        fill_normal(z, zn, 1.0f, 40 + sh);
        fill_normal(e, en, 0.5f, 50 + sh);
        int32_t *cpu_codes = xmalloc((size_t)m * sizeof(int32_t));
        check_nearest(t, cpu, gpu, z, e, m, k, d, cpu_codes);
        check_codebook_ops(t, w, cpu, gpu, z, e, cpu_codes, m, k, d);
        free(z);
        free(e);
        free(cpu_codes);
    }
}

int main(void) {
    if (gpu_test_unavailable()) return TEST_SKIP_CODE;
    TestCounts t = {0, 0};
    Worst w = {0};
    OpsContext cpu, gpu;
    gpu_ops_contexts(&cpu, &gpu);
    test_nearest_special(&t, &cpu, &gpu);
    test_quantizer(&t, &w, &cpu, &gpu);
    printf("worst errors vs CPU: quantizer %.3g; %d of %d near-exact tensors bit-identical\n", w.quantizer,
           w.bit_identical, w.compared);
    ops_context_destroy(&gpu);
    ops_context_destroy(&cpu);
    return test_finish("test_gpu_quantizer", &t);
}
