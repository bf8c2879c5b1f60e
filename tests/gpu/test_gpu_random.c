// test_gpu_random.c: the CUDA dropout, reparameterization and KL ops against the CPU backend (the
// oracle), and a dropout captured in a CUDA graph drawing each replay's mask from the step in
// device memory. Exits 77 (SKIP) without a CUDA backend or a visible GPU.
//
// Tolerances: dropout masks and values bit-identical (both backends run the same Philox code on
// the same counters, and scale by the same float); eps: at most 1 ulp apart, on at most 1 in
// 1000 values (double log / cos on the device and on the host may round to different floats,
// vanishingly rarely); z, dlogvar normwise 1e-6; dmean = dz identical; kl_forward relative 1e-5
// (different summation order), kl_backward normwise 1e-6.
#include <math.h>
#include <stdint.h>

#include "core/common.h"
#include "gpu_compare.h"
#include "grad_check.h"
#include "kernels/ops.h"
#include "test_util.h"

static const uint64_t SEED = 0x5eed5eed12345678ull;

static int32_t *upload_step(GpuCompare *g, int32_t step) {
    int32_t *d = g->gpu.ops->alloc(&g->gpu, sizeof step);
    g->gpu.ops->to_device(&g->gpu, d, &step, sizeof step);
    return d;
}

static void test_dropout(GpuCompare *g, int n, size_t per_sample, int64_t first, float p) {
    OpsContext *cpu = &g->cpu, *gpu = &g->gpu;
    const size_t total = (size_t)n * per_sample;
    const int32_t step = 41;
    float *x = xmalloc(total * 4), *dy = xmalloc(total * 4), *y = xmalloc(total * 4), *dx = xmalloc(total * 4);
    grad_fill_normal(x, total, 0.0f, 1.0f, 1);
    grad_fill_normal(dy, total, 0.0f, 1.0f, 2);
    cpu->ops->dropout_forward(cpu, x, y, n, per_sample, first, p, SEED, 6, &step);
    cpu->ops->dropout_backward(cpu, dy, dx, n, per_sample, first, p, SEED, 6, &step);
    int32_t *dstep = upload_step(g, step);
    float *dxv = gpu_upload(g, x, total), *ddy = gpu_upload(g, dy, total), *dout = gpu_poisoned(g, total);
    char what[96];
    gpu->ops->dropout_forward(gpu, dxv, dout, n, per_sample, first, p, SEED, 6, dstep);
    snprintf(what, sizeof what, "dropout_forward p=%g n=%d per_sample=%zu", p, n, per_sample);
    gpu_expect_identical(g, what, dout, y, total);
    gpu->ops->dropout_backward(gpu, ddy, dout, n, per_sample, first, p, SEED, 6, dstep);
    snprintf(what, sizeof what, "dropout_backward p=%g", p);
    gpu_expect_identical(g, what, dout, dx, total);
    gpu->ops->dropout_forward(gpu, dxv, dxv, n, per_sample, first, p, SEED, 6, dstep);   // y aliases x
    snprintf(what, sizeof what, "dropout_forward in place p=%g", p);
    gpu_expect_identical(g, what, dxv, y, total);
    gpu->ops->release(gpu, dstep), gpu->ops->release(gpu, dxv), gpu->ops->release(gpu, ddy);
    gpu->ops->release(gpu, dout);
    free(x), free(dy), free(y), free(dx);
}

// One dropout captured once, replayed at steps 3 and 4 (written into the device step between
// replays): each replay must give the CPU's mask for its step.
static void test_dropout_graph(GpuCompare *g) {
    OpsContext *cpu = &g->cpu, *gpu = &g->gpu;
    enum { N = 4, PER = 1000 };
    float x[N * PER], want[N * PER];
    grad_fill_normal(x, N * PER, 0.0f, 1.0f, 3);
    int32_t *dstep = upload_step(g, 3);
    float *dxv = gpu_upload(g, x, N * PER), *dout = gpu_poisoned(g, N * PER);
    gpu->ops->synchronize(gpu);
    gpu->ops->graph_begin(gpu);
    gpu->ops->dropout_forward(gpu, dxv, dout, N, PER, 8, 0.25f, SEED, 2, dstep);
    gpu->ops->graph_end(gpu);
    for (int32_t step = 3; step <= 4; step++) {
        gpu->ops->to_device(gpu, dstep, &step, sizeof step);
        gpu->ops->graph_launch(gpu);
        cpu->ops->dropout_forward(cpu, x, want, N, PER, 8, 0.25f, SEED, 2, &step);
        char what[64];
        snprintf(what, sizeof what, "dropout in a CUDA graph, replay at step %d", step);
        gpu_expect_identical(g, what, dout, want, N * PER);
    }
    gpu->ops->graph_destroy(gpu);
    gpu->ops->release(gpu, dstep), gpu->ops->release(gpu, dxv), gpu->ops->release(gpu, dout);
}

// eps within 1 ulp everywhere and identical on all but 1 in 1000 values.
static void expect_eps(GpuCompare *g, const float *deps, const float *want, size_t n) {
    float *got = gpu_download(g, deps, n);
    size_t differ = 0;
    int within_ulp = 1;
    for (size_t i = 0; i < n; i++) {
        if (got[i] == want[i]) continue;
        differ++;
        within_ulp &= nextafterf(want[i], INFINITY) == got[i] || nextafterf(want[i], -INFINITY) == got[i];
    }
    EXPECT(&g->t, within_ulp && differ * 1000 <= n, "reparam eps: %zu of %zu values differ from the CPU's%s", differ,
           n, within_ulp ? "" : ", some by more than 1 ulp");
    printf("reparam eps: %zu of %zu values differ from the CPU's\n", differ, n);
    free(got);
}

static void test_reparam(GpuCompare *g, int n, int dim, int64_t first) {
    OpsContext *cpu = &g->cpu, *gpu = &g->gpu;
    const size_t total = (size_t)n * dim;
    const int32_t step = 1234;
    float *mean = xmalloc(total * 4), *logvar = xmalloc(total * 4), *dz = xmalloc(total * 4);
    float *z = xmalloc(total * 4), *eps = xmalloc(total * 4), *dm = xmalloc(total * 4), *dlv = xmalloc(total * 4);
    grad_fill_normal(mean, total, 0.0f, 1.0f, 4);
    grad_fill_normal(logvar, total, 0.0f, 1.0f, 5);
    grad_fill_normal(dz, total, 0.0f, 1.0f, 6);
    cpu->ops->reparam_forward(cpu, mean, logvar, n, dim, first, SEED, 0, &step, z, eps);
    cpu->ops->reparam_backward(cpu, logvar, eps, dz, n, dim, dm, dlv);
    int32_t *dstep = upload_step(g, step);
    float *d[] = {gpu_upload(g, mean, total), gpu_upload(g, logvar, total), gpu_upload(g, dz, total),
                  gpu_poisoned(g, total), gpu_poisoned(g, total), gpu_poisoned(g, total), gpu_poisoned(g, total)};
    gpu->ops->reparam_forward(gpu, d[0], d[1], n, dim, first, SEED, 0, dstep, d[3], d[4]);
    expect_eps(g, d[4], eps, total);
    gpu_expect_close(g, "reparam_forward z", d[3], z, total, 1e-6);
    gpu->ops->to_device(gpu, d[4], eps, total * 4);   // the backward on the CPU's eps
    gpu->ops->reparam_backward(gpu, d[1], d[4], d[2], n, dim, d[5], d[6]);
    gpu_expect_identical(g, "reparam_backward dmean", d[5], dm, total);
    gpu_expect_close(g, "reparam_backward dlogvar", d[6], dlv, total, 1e-6);
    gpu->ops->reparam_backward(gpu, d[1], d[4], d[2], n, dim, d[2], d[6]);   // dmean aliases dz
    gpu_expect_identical(g, "reparam_backward dmean = dz", d[2], dm, total);
    gpu->ops->release(gpu, dstep);
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) gpu->ops->release(gpu, d[i]);
    free(mean), free(logvar), free(dz), free(z), free(eps), free(dm), free(dlv);
}

static void test_kl(GpuCompare *g, size_t count) {
    OpsContext *cpu = &g->cpu, *gpu = &g->gpu;
    float *mean = xmalloc(count * 4), *logvar = xmalloc(count * 4), *dm = xmalloc(count * 4), *dlv = xmalloc(count * 4);
    grad_fill_normal(mean, count, 0.0f, 1.0f, 7);
    grad_fill_normal(logvar, count, 0.0f, 1.0f, 8);
    grad_fill_normal(dm, count, 0.0f, 1.0f, 9);
    grad_fill_normal(dlv, count, 0.0f, 1.0f, 10);
    float *d[] = {gpu_upload(g, mean, count), gpu_upload(g, logvar, count), gpu_upload(g, dm, count),
                  gpu_upload(g, dlv, count), gpu_poisoned(g, 1)};
    float want, got, again;
    cpu->ops->kl_forward(cpu, mean, logvar, count, &want);
    gpu->ops->kl_forward(gpu, d[0], d[1], count, d[4]);
    gpu->ops->to_host(gpu, &got, d[4], sizeof got);
    gpu->ops->kl_forward(gpu, d[0], d[1], count, d[4]);
    gpu->ops->to_host(gpu, &again, d[4], sizeof again);
    EXPECT(&g->t, test_close(got, want, 1e-5, 0), "kl_forward over %zu: GPU %.9g CPU %.9g", count, got, want);
    EXPECT(&g->t, memcmp(&got, &again, sizeof got) == 0, "kl_forward is not run-to-run identical");
    cpu->ops->kl_backward(cpu, mean, logvar, count, 0.5f, dm, dlv);
    gpu->ops->kl_backward(gpu, d[0], d[1], count, 0.5f, d[2], d[3]);
    gpu_expect_close(g, "kl_backward dmean (accumulated)", d[2], dm, count, 1e-6);
    gpu_expect_close(g, "kl_backward dlogvar (accumulated)", d[3], dlv, count, 1e-6);
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) gpu->ops->release(gpu, d[i]);
    free(mean), free(logvar), free(dm), free(dlv);
}

int main(void) {
    GpuCompare g;
    if (!gpu_compare_init(&g)) return TEST_SKIP_CODE;
    test_dropout(&g, 8, 128 * 16 * 16, 24, 0.1f);   // a VQModel resnet's dropout, rank 3 of 4 at batch 8
    test_dropout(&g, 3, 37, 0, 0.5f);               // a sample length that is not a multiple of 4
    test_dropout(&g, 2, 100, 5, 0.0f);
    test_dropout(&g, 2, 100, 5, 1.0f);
    test_dropout_graph(&g);
    test_reparam(&g, 512, 16, 512);   // the VAE's latent at batch 512, second rank
    test_reparam(&g, 3, 7, 0);        // odd dim
    test_kl(&g, 512 * 16);
    test_kl(&g, 3);
    return gpu_compare_finish(&g, "test_gpu_random");
}
