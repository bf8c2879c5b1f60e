// test_gpu_layers.c: the CUDA GroupNorm, SiLU, Sigmoid, upsampling, padding, attention and Linear
// against the CPU backend (the oracle). Exits 77 (SKIP) when the build has no CUDA backend or no
// GPU is visible. Outputs start as NaN, so an op that misses a value is caught.
//
// Tolerances (normwise, max|gpu - cpu| / max|cpu|; both contexts fp32):
// - upsampling, padding: bit-identical (copies; the upsampling's four-term sum in the CPU's order).
// - GroupNorm (forward, saved statistics, all gradients): 1e-6. The double sums differ only in
//   order, so the floats are expected to be bit-identical nearly always (the count is printed).
// - SiLU, Sigmoid: 1e-6 (CUDA's expf is within 2 ulp, glibc's within 1).
// - attention, Linear: 1e-5 (cuBLAS and OpenBLAS sgemm sum in different orders).
// - deterministic: GroupNorm's and attention's backward twice on the GPU are bit-identical.
#include <math.h>
#include <stdint.h>

#include "core/common.h"
#include "gpu_compare.h"
#include "grad_check.h"
#include "kernels/ops.h"
#include "test_util.h"

static const double NORM_TOL = 1e-6, ACT_TOL = 1e-6, GEMM_TOL = 1e-5;

static float *host_normal(size_t n, float mean, float scale, uint64_t stream) {
    float *x = xmalloc((n ? n : 1) * sizeof(float));
    grad_fill_normal(x, n, mean, scale, stream);
    return x;
}

static void free_all(void **p, size_t n) {
    for (size_t i = 0; i < n; i++) free(p[i]);
}

static void release_all(GpuCompare *g, float **p, size_t n) {
    for (size_t i = 0; i < n; i++) g->gpu.ops->release(&g->gpu, p[i]);
}

static void test_group_norm(GpuCompare *g, int n, int c, int hw, int groups) {
    OpsContext *cpu = &g->cpu, *gpu = &g->gpu;
    const size_t count = (size_t)n * c * hw, stats = (size_t)n * groups;
    float *x = host_normal(count, 2.0f, 1.0f, 1), *gamma = host_normal(c, 1.0f, 0.5f, 2);
    float *beta = host_normal(c, 0.0f, 0.5f, 3), *dy = host_normal(count, 0.0f, 1.0f, 4);
    float *y = xmalloc(count * 4), *mean = xmalloc(stats * 4), *rstd = xmalloc(stats * 4), *dx = xmalloc(count * 4);
    float *dg = xmalloc(c * 4), *db = xmalloc(c * 4);
    cpu->ops->group_norm_forward(cpu, x, gamma, beta, n, c, hw, groups, 1e-6f, y, mean, rstd);
    cpu->ops->group_norm_backward(cpu, x, gamma, mean, rstd, dy, n, c, hw, groups, dx, dg, db);

    float *d[] = {gpu_upload(g, x, count), gpu_upload(g, gamma, c), gpu_upload(g, beta, c), gpu_upload(g, dy, count),
                  gpu_poisoned(g, count), gpu_poisoned(g, stats), gpu_poisoned(g, stats), gpu_poisoned(g, count),
                  gpu_poisoned(g, c), gpu_poisoned(g, c)};
    gpu->ops->group_norm_forward(gpu, d[0], d[1], d[2], n, c, hw, groups, 1e-6f, d[4], d[5], d[6]);
    gpu_expect_close(g, "group_norm_forward y", d[4], y, count, NORM_TOL);
    gpu_expect_close(g, "group_norm_forward mean", d[5], mean, stats, NORM_TOL);
    gpu_expect_close(g, "group_norm_forward rstd", d[6], rstd, stats, NORM_TOL);
    // The backward from the CPU's statistics, so that it is compared on its own.
    gpu->ops->to_device(gpu, d[5], mean, stats * 4);
    gpu->ops->to_device(gpu, d[6], rstd, stats * 4);
    gpu->ops->group_norm_backward(gpu, d[0], d[1], d[5], d[6], d[3], n, c, hw, groups, d[7], d[8], d[9]);
    gpu_expect_close(g, "group_norm_backward dx", d[7], dx, count, NORM_TOL);
    gpu_expect_close(g, "group_norm_backward dgamma", d[8], dg, c, NORM_TOL);
    gpu_expect_close(g, "group_norm_backward dbeta", d[9], db, c, NORM_TOL);
    float *first = gpu_download(g, d[7], count);
    gpu->ops->group_norm_backward(gpu, d[0], d[1], d[5], d[6], d[3], n, c, hw, groups, d[7], d[8], d[9]);
    gpu_expect_identical(g, "group_norm_backward run twice", d[7], first, count);
    release_all(g, d, sizeof d / sizeof d[0]);
    void *h[] = {x, gamma, beta, dy, y, mean, rstd, dx, dg, db, first};
    free_all(h, sizeof h / sizeof h[0]);
}

typedef void (*UnaryOp)(OpsContext *ctx, const float *x, float *y, size_t n);
typedef void (*UnaryGrad)(OpsContext *ctx, const float *in, const float *dy, float *dx, size_t n);

// SiLU and Sigmoid, out of place and in place, over values that include saturation.
static void test_activations(GpuCompare *g) {
    OpsContext *cpu = &g->cpu, *gpu = &g->gpu;
    const size_t n = 100003;
    float *x = host_normal(n, 0.0f, 4.0f, 5), *dy = host_normal(n, 0.0f, 1.0f, 6);
    x[0] = 100.0f, x[1] = -100.0f, x[2] = 0.0f, x[3] = -0.0f, x[4] = 20.0f, x[5] = -20.0f;
    float *y = xmalloc(n * 4), *dx = xmalloc(n * 4);
    float *dxv = gpu_upload(g, x, n), *ddy = gpu_upload(g, dy, n), *dy_out = gpu_poisoned(g, n);
    float *dtmp = gpu_poisoned(g, n);
    for (int sig = 0; sig < 2; sig++) {
        const char *name = sig ? "sigmoid" : "silu";
        UnaryOp fwd = sig ? cpu->ops->sigmoid_forward : cpu->ops->silu_forward;
        UnaryOp gfwd = sig ? gpu->ops->sigmoid_forward : gpu->ops->silu_forward;
        UnaryGrad bwd = sig ? cpu->ops->sigmoid_backward : cpu->ops->silu_backward;
        UnaryGrad gbwd = sig ? gpu->ops->sigmoid_backward : gpu->ops->silu_backward;
        char what[64];
        fwd(cpu, x, y, n);
        gfwd(gpu, dxv, dy_out, n);
        snprintf(what, sizeof what, "%s_forward", name);
        gpu_expect_close(g, what, dy_out, y, n, ACT_TOL);
        gpu->ops->copy(gpu, dtmp, dxv, n * 4);
        gfwd(gpu, dtmp, dtmp, n);
        snprintf(what, sizeof what, "%s_forward in place", name);
        gpu_expect_close(g, what, dtmp, y, n, ACT_TOL);
        // silu's backward reads x, sigmoid's its output: the GPU gets the CPU's output, so that
        // the backward is compared on its own.
        gpu->ops->to_device(gpu, dy_out, y, n * 4);
        const float *in = sig ? y : x, *din = sig ? dy_out : dxv;
        bwd(cpu, in, dy, dx, n);
        gbwd(gpu, din, ddy, dtmp, n);
        snprintf(what, sizeof what, "%s_backward", name);
        gpu_expect_close(g, what, dtmp, dx, n, ACT_TOL);
        gpu->ops->copy(gpu, dtmp, ddy, n * 4);
        gbwd(gpu, din, dtmp, dtmp, n);
        snprintf(what, sizeof what, "%s_backward in place", name);
        gpu_expect_close(g, what, dtmp, dx, n, ACT_TOL);
    }
    float *d[] = {dxv, ddy, dy_out, dtmp};
    release_all(g, d, 4);
    free(x), free(dy), free(y), free(dx);
}

static void test_resample(GpuCompare *g, int n, int c, int h, int w, int top, int bottom, int left, int right) {
    OpsContext *cpu = &g->cpu, *gpu = &g->gpu;
    const size_t in = (size_t)n * c * h * w, up = 4 * in;
    const size_t padded = (size_t)n * c * (h + top + bottom) * (w + left + right);
    float *x = host_normal(in, 0.0f, 1.0f, 7), *dup = host_normal(up, 0.0f, 1.0f, 8);
    float *dpad = host_normal(padded, 0.0f, 1.0f, 9);
    float *y = xmalloc(up * 4), *ypad = xmalloc(padded * 4), *dx = xmalloc(in * 4), *dxp = xmalloc(in * 4);
    cpu->ops->upsample2x_forward(cpu, x, n, c, h, w, y);
    cpu->ops->upsample2x_backward(cpu, dup, n, c, h, w, dx);
    cpu->ops->pad2d_forward(cpu, x, n, c, h, w, top, bottom, left, right, ypad);
    cpu->ops->pad2d_backward(cpu, dpad, n, c, h, w, top, bottom, left, right, dxp);
    float *d[] = {gpu_upload(g, x, in), gpu_upload(g, dup, up), gpu_upload(g, dpad, padded), gpu_poisoned(g, up),
                  gpu_poisoned(g, in), gpu_poisoned(g, padded), gpu_poisoned(g, in)};
    gpu->ops->upsample2x_forward(gpu, d[0], n, c, h, w, d[3]);
    gpu->ops->upsample2x_backward(gpu, d[1], n, c, h, w, d[4]);
    gpu->ops->pad2d_forward(gpu, d[0], n, c, h, w, top, bottom, left, right, d[5]);
    gpu->ops->pad2d_backward(gpu, d[2], n, c, h, w, top, bottom, left, right, d[6]);
    gpu_expect_identical(g, "upsample2x_forward", d[3], y, up);
    gpu_expect_identical(g, "upsample2x_backward", d[4], dx, in);
    gpu_expect_identical(g, "pad2d_forward", d[5], ypad, padded);
    gpu_expect_identical(g, "pad2d_backward", d[6], dxp, in);
    release_all(g, d, sizeof d / sizeof d[0]);
    void *hb[] = {x, dup, dpad, y, ypad, dx, dxp};
    free_all(hb, sizeof hb / sizeof hb[0]);
}

static void test_attention(GpuCompare *g, int n, int c, int hw) {
    OpsContext *cpu = &g->cpu, *gpu = &g->gpu;
    const size_t plane = (size_t)n * c * hw, square = (size_t)n * hw * hw;
    const float scale = 1.0f / sqrtf((float)c);
    float *q = host_normal(plane, 0.0f, 1.0f, 10), *k = host_normal(plane, 0.0f, 1.0f, 11);
    float *v = host_normal(plane, 0.0f, 1.0f, 12), *dout = host_normal(plane, 0.0f, 1.0f, 13);
    float *probs = xmalloc(square * 4), *out = xmalloc(plane * 4);
    float *dq = xmalloc(plane * 4), *dk = xmalloc(plane * 4), *dv = xmalloc(plane * 4);
    cpu->ops->reserve_workspace(cpu, cpu->ops->attention_workspace_bytes(cpu, n, c, hw));
    gpu->ops->reserve_workspace(gpu, gpu->ops->attention_workspace_bytes(gpu, n, c, hw));
    cpu->ops->attention_forward(cpu, q, k, v, n, c, hw, scale, probs, out);
    cpu->ops->attention_backward(cpu, q, k, v, probs, dout, n, c, hw, scale, dq, dk, dv);
    float *d[] = {gpu_upload(g, q, plane), gpu_upload(g, k, plane), gpu_upload(g, v, plane), gpu_upload(g, dout, plane),
                  gpu_poisoned(g, square), gpu_poisoned(g, plane), gpu_poisoned(g, plane), gpu_poisoned(g, plane),
                  gpu_poisoned(g, plane)};
    gpu->ops->attention_forward(gpu, d[0], d[1], d[2], n, c, hw, scale, d[4], d[5]);
    gpu_expect_close(g, "attention_forward probs", d[4], probs, square, GEMM_TOL);
    gpu_expect_close(g, "attention_forward out", d[5], out, plane, GEMM_TOL);
    gpu->ops->to_device(gpu, d[4], probs, square * 4);   // the backward on its own
    gpu->ops->attention_backward(gpu, d[0], d[1], d[2], d[4], d[3], n, c, hw, scale, d[6], d[7], d[8]);
    gpu_expect_close(g, "attention_backward dq", d[6], dq, plane, GEMM_TOL);
    gpu_expect_close(g, "attention_backward dk", d[7], dk, plane, GEMM_TOL);
    gpu_expect_close(g, "attention_backward dv", d[8], dv, plane, GEMM_TOL);
    float *first = gpu_download(g, d[6], plane);
    gpu->ops->attention_backward(gpu, d[0], d[1], d[2], d[4], d[3], n, c, hw, scale, d[6], d[7], d[8]);
    gpu_expect_identical(g, "attention_backward run twice", d[6], first, plane);
    release_all(g, d, sizeof d / sizeof d[0]);
    void *h[] = {q, k, v, dout, probs, out, dq, dk, dv, first};
    free_all(h, sizeof h / sizeof h[0]);
}

static void test_linear(GpuCompare *g, int n, int in, int out, int bias) {
    OpsContext *cpu = &g->cpu, *gpu = &g->gpu;
    const size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
    float *x = host_normal(nx, 0.0f, 1.0f, 14), *w = host_normal(nw, 0.0f, 0.3f, 15), *b = host_normal(out, 0, 1, 16);
    float *dy = host_normal(ny, 0.0f, 1.0f, 17), *y = xmalloc(ny * 4), *dx = xmalloc(nx * 4), *dw = xmalloc(nw * 4);
    float *db = xmalloc(out * 4);
    cpu->ops->linear_forward(cpu, x, w, bias ? b : NULL, n, in, out, y);
    cpu->ops->linear_backward(cpu, x, w, dy, n, in, out, dx, dw, bias ? db : NULL);
    float *d[] = {gpu_upload(g, x, nx), gpu_upload(g, w, nw), gpu_upload(g, b, out), gpu_upload(g, dy, ny),
                  gpu_poisoned(g, ny), gpu_poisoned(g, nx), gpu_poisoned(g, nw), gpu_poisoned(g, out)};
    gpu->ops->linear_forward(gpu, d[0], d[1], bias ? d[2] : NULL, n, in, out, d[4]);
    gpu->ops->linear_backward(gpu, d[0], d[1], d[3], n, in, out, d[5], d[6], bias ? d[7] : NULL);
    gpu_expect_close(g, "linear_forward", d[4], y, ny, GEMM_TOL);
    gpu_expect_close(g, "linear_backward dx", d[5], dx, nx, GEMM_TOL);
    gpu_expect_close(g, "linear_backward dw", d[6], dw, nw, GEMM_TOL);
    if (bias) gpu_expect_close(g, "linear_backward db", d[7], db, out, GEMM_TOL);
    gpu->ops->linear_backward(gpu, d[0], d[1], d[3], n, in, out, NULL, d[6], NULL);   // dx not wanted
    gpu_expect_close(g, "linear_backward dw (dx NULL)", d[6], dw, nw, GEMM_TOL);
    release_all(g, d, sizeof d / sizeof d[0]);
    void *h[] = {x, w, b, dy, y, dx, dw, db};
    free_all(h, sizeof h / sizeof h[0]);
}

int main(void) {
    GpuCompare g;
    if (!gpu_compare_init(&g)) return TEST_SKIP_CODE;
    test_group_norm(&g, 4, 128, 256, 32);   // a VQModel block at 16x16
    test_group_norm(&g, 3, 6, 7, 3);
    test_group_norm(&g, 2, 64, 1, 64);
    test_activations(&g);
    test_resample(&g, 4, 64, 16, 16, 0, 1, 0, 1);   // Downsample2D's pad
    test_resample(&g, 2, 3, 5, 7, 2, 1, 3, 0);
    test_attention(&g, 4, 128, 64);   // the mid block at 8x8
    test_attention(&g, 2, 32, 257);   // rows longer than a warp, not a multiple of 32
    test_attention(&g, 3, 1, 1);
    test_linear(&g, 512, 64, 16, 1);   // the VAE's latent_mean at batch 512
    test_linear(&g, 7, 16, 64, 1);
    test_linear(&g, 5, 9, 3, 0);
    return gpu_compare_finish(&g, "test_gpu_layers");
}
