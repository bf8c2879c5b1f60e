// test_ops_threads.c: every CPU op but the convolutions (test_ops_conv_engines covers those) gives
// the same bits with 1, 2 and 3 threads, on inputs long enough to be split (kernels/cpu: element-
// wise loops split statically, reductions in fixed blocks, the quantizer by rows or by codes).
// The quantizer's sizes are the CIFAR model's at batch 256 (m = 256 * 8 * 8 latents, k = 512, d = 64).
#include <stdint.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "test_util.h"

enum { N = 200003, BATCH = 256, CHANNELS = 64, HW = 64, M = BATCH * HW, K = 512, D = 64, IMAGE = 3 * 32 * 32 };

static void fill_uniform(float *x, size_t n, uint64_t a, float lo, float hi) {
    Rng r = rng_stream(99, RNG_PURPOSE_TEST, a, 0);
    for (size_t i = 0; i < n; i++) x[i] = rng_uniform_range(&r, lo, hi);
}

// The inputs, and every op's outputs for one thread count.
typedef struct {
    float *x, *y, *dy, *codebook, *z, *params, *grads, *m, *v;
    uint8_t *pixels;
    int32_t *perm;
} Inputs;

typedef struct {
    float *relu, *drelu, *sum, *scaled, *filled, *nhwc, *nchw, *dmse, *gathered, *counts, *sums, *dcodebook;
    float *cluster, *ema_w, *ema_codebook, *params, *m, *v, *images;
    float mse, sumsq;
    int32_t *codes;
} Outputs;

static Inputs make_inputs(void) {
    Inputs in;
    in.x = xmalloc(N * sizeof(float)), in.y = xmalloc(N * sizeof(float)), in.dy = xmalloc(N * sizeof(float));
    fill_uniform(in.x, N, 1, -1.0f, 1.0f), fill_uniform(in.y, N, 2, -1.0f, 1.0f), fill_uniform(in.dy, N, 3, -1.0f, 1.0f);
    in.codebook = xmalloc((size_t)K * D * sizeof(float)), in.z = xmalloc((size_t)M * D * sizeof(float));
    fill_uniform(in.codebook, (size_t)K * D, 4, -1.0f, 1.0f), fill_uniform(in.z, (size_t)M * D, 5, -1.0f, 1.0f);
    in.params = xmalloc(N * sizeof(float)), in.grads = xmalloc(N * sizeof(float));
    in.m = xmalloc(N * sizeof(float)), in.v = xmalloc(N * sizeof(float));
    fill_uniform(in.params, N, 6, -1.0f, 1.0f), fill_uniform(in.grads, N, 7, -1.0f, 1.0f);
    fill_uniform(in.m, N, 8, -0.1f, 0.1f), fill_uniform(in.v, N, 9, 0.0f, 0.01f);
    in.pixels = xmalloc((size_t)2 * BATCH * IMAGE), in.perm = xmalloc((size_t)2 * BATCH * sizeof(int32_t));
    for (size_t i = 0; i < (size_t)2 * BATCH * IMAGE; i++) in.pixels[i] = (uint8_t)(i * 2654435761u >> 24);
    for (int i = 0; i < 2 * BATCH; i++) in.perm[i] = (i * 37) % (2 * BATCH);
    return in;
}

static float *copy_of(const float *x, size_t n) {
    float *c = xmalloc(n * sizeof(float));
    memcpy(c, x, n * sizeof(float));
    return c;
}

static Outputs run_ops(int threads, const Inputs *in) {
    OpsContext ctx;
    ops_context_init(&ctx, "cpu", 0, threads, PRECISION_FP32, 0);
    const Ops *ops = ctx.ops;
    ops->reserve_workspace(&ctx, ops->vq_workspace_bytes(&ctx, M, K, D));
    Outputs o;
    size_t kd = (size_t)K * D;
    o.relu = xmalloc(N * sizeof(float)), o.drelu = xmalloc(N * sizeof(float)), o.sum = xmalloc(N * sizeof(float));
    ops->relu_forward(&ctx, in->x, o.relu, N);
    ops->relu_backward(&ctx, in->x, in->dy, o.drelu, N);
    ops->add(&ctx, in->x, in->y, o.sum, N);
    o.scaled = copy_of(in->x, N), o.filled = xmalloc(N * sizeof(float));
    ops->scale(&ctx, o.scaled, 0.37f, N);
    ops->fill(&ctx, o.filled, 1.5f, N);
    o.nhwc = xmalloc((size_t)BATCH * CHANNELS * HW * sizeof(float)), o.nchw = xmalloc((size_t)M * D * sizeof(float));
    ops->nchw_to_nhwc(&ctx, in->z, o.nhwc, BATCH, CHANNELS, HW);
    ops->nhwc_to_nchw(&ctx, in->z, o.nchw, BATCH, D, HW);
    ops->mse_forward(&ctx, in->x, in->y, N, &o.mse);
    o.dmse = copy_of(in->dy, N);
    ops->mse_backward(&ctx, in->x, in->y, N, 0.25f, 1, o.dmse);
    ops->sum_squares(&ctx, in->x, N, &o.sumsq);
    o.codes = xmalloc((size_t)M * sizeof(int32_t)), o.gathered = xmalloc((size_t)M * D * sizeof(float));
    ops->vq_nearest(&ctx, in->z, in->codebook, M, K, D, o.codes);
    ops->vq_gather(&ctx, in->codebook, o.codes, M, D, o.gathered);
    o.counts = xmalloc(K * sizeof(float)), o.sums = xmalloc(kd * sizeof(float)), o.dcodebook = xmalloc(kd * sizeof(float));
    ops->vq_code_stats(&ctx, in->z, o.codes, M, K, D, o.counts, o.sums);
    ops->vq_codebook_grad(&ctx, in->codebook, o.counts, o.sums, K, D, 2.0f / (M * D), o.dcodebook);
    o.cluster = xmalloc(K * sizeof(float)), o.ema_w = copy_of(in->codebook, kd), o.ema_codebook = xmalloc(kd * sizeof(float));
    ops->fill(&ctx, o.cluster, 1.0f, K);
    ops->ema_update(&ctx, o.cluster, o.ema_w, o.ema_codebook, o.counts, o.sums, K, D, 0.99f, 1e-5f, NULL);
    StepState state;
    memset(&state, 0, sizeof state);
    AdamHyper hyper = {1e-3, 0.9, 0.999, 1e-8, 1e-4};
    float sumsq = 1.0f;
    ops->step_commit(&ctx, &state, &sumsq, &hyper);
    o.params = copy_of(in->params, N), o.m = copy_of(in->m, N), o.v = copy_of(in->v, N);
    ops->adam_update(&ctx, o.params, in->grads, o.m, o.v, N, &state);
    o.images = xmalloc((size_t)BATCH * IMAGE * sizeof(float));
    ops->gather_images(&ctx, in->pixels, in->perm, BATCH / 2, BATCH, IMAGE, PIXELS_SYMMETRIC, o.images);
    ops_context_destroy(&ctx);
    return o;
}

static void expect_same(TestCounts *c, const void *a, const void *b, size_t bytes, const char *what, int threads) {
    EXPECT(c, memcmp(a, b, bytes) == 0, "%s: %d threads differ from 1 thread", what, threads);
}

static void compare(TestCounts *c, const Outputs *a, const Outputs *b, int threads) {
    size_t f = sizeof(float), kd = (size_t)K * D;
    expect_same(c, a->relu, b->relu, N * f, "relu_forward", threads);
    expect_same(c, a->drelu, b->drelu, N * f, "relu_backward", threads);
    expect_same(c, a->sum, b->sum, N * f, "add", threads);
    expect_same(c, a->scaled, b->scaled, N * f, "scale", threads);
    expect_same(c, a->filled, b->filled, N * f, "fill", threads);
    expect_same(c, a->nhwc, b->nhwc, (size_t)M * D * f, "nchw_to_nhwc", threads);
    expect_same(c, a->nchw, b->nchw, (size_t)M * D * f, "nhwc_to_nchw", threads);
    expect_same(c, &a->mse, &b->mse, f, "mse_forward", threads);
    expect_same(c, a->dmse, b->dmse, N * f, "mse_backward", threads);
    expect_same(c, &a->sumsq, &b->sumsq, f, "sum_squares", threads);
    expect_same(c, a->codes, b->codes, (size_t)M * sizeof(int32_t), "vq_nearest", threads);
    expect_same(c, a->gathered, b->gathered, (size_t)M * D * f, "vq_gather", threads);
    expect_same(c, a->counts, b->counts, K * f, "vq_code_stats counts", threads);
    expect_same(c, a->sums, b->sums, kd * f, "vq_code_stats sums", threads);
    expect_same(c, a->dcodebook, b->dcodebook, kd * f, "vq_codebook_grad", threads);
    expect_same(c, a->cluster, b->cluster, K * f, "ema_update cluster sizes", threads);
    expect_same(c, a->ema_w, b->ema_w, kd * f, "ema_update ema_w", threads);
    expect_same(c, a->ema_codebook, b->ema_codebook, kd * f, "ema_update codebook", threads);
    expect_same(c, a->params, b->params, N * f, "adam_update params", threads);
    expect_same(c, a->m, b->m, N * f, "adam_update exp_avg", threads);
    expect_same(c, a->v, b->v, N * f, "adam_update exp_avg_sq", threads);
    expect_same(c, a->images, b->images, (size_t)BATCH * IMAGE * f, "gather_images", threads);
}

static void free_outputs(Outputs *o) {
    void *all[] = {o->relu, o->drelu, o->sum, o->scaled, o->filled, o->nhwc, o->nchw, o->dmse, o->gathered, o->counts,
                   o->sums, o->dcodebook, o->cluster, o->ema_w, o->ema_codebook, o->params, o->m, o->v, o->images,
                   o->codes};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

int main(void) {
    TestCounts c = {0, 0};
    Inputs in = make_inputs();
    Outputs one = run_ops(1, &in);
    // The sums are not trivially equal: make sure the codes use much of the codebook.
    int used = 0;
    for (int j = 0; j < K; j++) used += one.counts[j] > 0.0f;
    EXPECT(&c, used > K / 2, "only %d of %d codes used: the quantizer inputs are too uniform to test", used, K);
    for (int threads = 2; threads <= 3; threads++) {
        Outputs more = run_ops(threads, &in);
        compare(&c, &one, &more, threads);
        free_outputs(&more);
    }
    free_outputs(&one);
    void *inputs[] = {in.x, in.y, in.dy, in.codebook, in.z, in.params, in.grads, in.m, in.v, in.pixels, in.perm};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) free(inputs[i]);
    return test_finish("test_ops_threads", &c);
}
