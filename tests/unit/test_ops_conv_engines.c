// test_ops_conv_engines.c: the two CPU convolution engines against each other and against
// themselves: oneDNN (train.cpu_conv=onednn) must agree with im2col + OpenBLAS (the reference,
// itself checked against naive loops by test_ops_conv) to 1e-5 relative (max |a - b| / max |b| per
// tensor) on every convolution the model presets use, and each engine must give the same bits with
// 1 and with 2 threads, twice (cpu_conv_internal.h says why it should).
//
// Shapes: every layer of the resnet arch for configs/cifar.yaml, configs/fashion_mnist.yaml and
// configs/smoke.yaml (src/model/arch_resnet.c builds them from these sizes), the small MNIST model
// (28 -> 14 -> 7 -> 1 and back, output_padding 1; the VAE preset uses the same convolutions), every
// distinct convolution of configs/cifar_groupnorm.yaml (read off `vqvae_dist layout`: 3x3 p1, the
// 1x1 shortcuts, quant convs and attention projections, the 3x3 s2 p0 downsampler on its padded
// 33x33 input), and 3x3 p1, 1x1 and 3x3 s2 p0 convolutions at 32x32 and 16x16 with 64-128 channels. Batch 10: chunks of 3 and a last one of 1, so both of a
// oneDNN plan's chunk sizes run.
//
// bf16 (train.precision=bf16, oneDNN only, on CPUs with AVX512-BF16; SKIP elsewhere): the same
// cases against im2col's fp32 to BF16_TOL, bit-identical with 1 and 2 threads, and the forward must
// differ from fp32 by more than 1e-6 (else the bf16 path did not run) on every layer oneDNN runs.
// Inputs in [-1, 1] rounded to 8 mantissa bits: each product is off by up to ~2^-8, the sums of
// up to 1152 products by ~2^-8 x sqrt(K) against a max of ~3 sqrt(K), so ~1e-3 relative to the max
// (measured 2026-12-07: up to 3.0e-3, the printed worst).
#include <stdint.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "kernels/cpu/cpu_conv_internal.h"
#include "kernels/ops.h"
#include "test_util.h"

static const double ENGINE_TOL = 1e-5, BF16_TOL = 1e-2;
enum { BATCH = 10, MAX_CASES = 64 };

typedef struct {
    char name[64];
    int cin, h, cout, k, stride, pad, transposed, bias, output_padding;
} Case;

typedef struct {
    Case items[MAX_CASES];
    int count;
} Cases;

static void add(Cases *cs, const char *name, int cin, int h, int cout, int k, int stride, int pad, int transposed,
                int bias, int output_padding) {
    CHECK(cs->count < MAX_CASES, "too many convolution cases");
    Case *c = &cs->items[cs->count++];
    snprintf(c->name, sizeof c->name, "%s %d->%d k%d s%d p%d%s on %d", name, cin, cout, k, stride, pad,
             output_padding ? " op1" : "", h);
    c->cin = cin, c->h = h, c->cout = cout, c->k = k, c->stride = stride, c->pad = pad;
    c->transposed = transposed, c->bias = bias, c->output_padding = output_padding;
}

// The resnet arch's layers for images of `channels` x size x size (src/model/arch_resnet.c).
static void add_resnet(Cases *cs, const char *preset, int channels, int size, int h, int rh, int d) {
    char n[32];
    snprintf(n, sizeof n, "%s", preset);
    add(cs, n, channels, size, h / 2, 4, 2, 1, 0, 1, 0);
    add(cs, n, h / 2, size / 2, h, 4, 2, 1, 0, 1, 0);
    add(cs, n, h, size / 4, h, 3, 1, 1, 0, 1, 0);
    add(cs, n, h, size / 4, rh, 3, 1, 1, 0, 0, 0);
    add(cs, n, rh, size / 4, h, 1, 1, 0, 0, 0, 0);
    add(cs, n, h, size / 4, d, 1, 1, 0, 0, 1, 0);
    add(cs, n, d, size / 4, h, 3, 1, 1, 0, 1, 0);
    add(cs, n, h, size / 4, h / 2, 4, 2, 1, 1, 1, 0);
    add(cs, n, h / 2, size / 2, channels, 4, 2, 1, 1, 1, 0);
}

// configs/cifar_groupnorm.yaml (block_out_channels [32, 64], embedding_dim 16, 32x32 images).
static void add_groupnorm(Cases *cs) {
    static const int k3[][3] = {{3, 32, 32}, {32, 32, 32}, {32, 64, 16}, {64, 64, 16}, {64, 16, 16},
                                {16, 64, 16}, {64, 64, 32}, {64, 32, 32}, {32, 3, 32}};   // cin, cout, size
    static const int k1[][3] = {{32, 64, 16}, {64, 64, 16}, {16, 16, 16}, {64, 32, 32}};
    for (size_t i = 0; i < sizeof k3 / sizeof k3[0]; i++) add(cs, "gn", k3[i][0], k3[i][2], k3[i][1], 3, 1, 1, 0, 1, 0);
    for (size_t i = 0; i < sizeof k1 / sizeof k1[0]; i++) add(cs, "gn", k1[i][0], k1[i][2], k1[i][1], 1, 1, 0, 0, 1, 0);
    add(cs, "gn", 32, 33, 32, 3, 2, 0, 0, 1, 0);   // the downsampler after its (0, 1, 0, 1) pad
}

static Cases all_cases(void) {
    Cases cs = {.count = 0};
    add_resnet(&cs, "cifar", 3, 32, 128, 32, 64);
    add_resnet(&cs, "fashion_mnist", 1, 28, 64, 32, 32);
    add_resnet(&cs, "smoke", 3, 16, 32, 16, 8);
    add_groupnorm(&cs);
    add(&cs, "mnist2", 1, 28, 16, 3, 2, 1, 0, 1, 0);
    add(&cs, "mnist2", 16, 14, 32, 3, 2, 1, 0, 1, 0);
    add(&cs, "mnist2", 32, 7, 64, 7, 1, 0, 0, 1, 0);
    add(&cs, "mnist2", 64, 1, 32, 7, 1, 0, 1, 1, 0);
    add(&cs, "mnist2", 32, 7, 16, 3, 2, 1, 1, 1, 1);
    add(&cs, "mnist2", 16, 14, 1, 3, 2, 1, 1, 1, 1);
    add(&cs, "wide", 64, 32, 64, 3, 1, 1, 0, 1, 0);
    add(&cs, "wide", 128, 16, 128, 3, 1, 1, 0, 0, 0);
    add(&cs, "wide", 64, 32, 128, 1, 1, 0, 0, 1, 0);
    add(&cs, "wide", 128, 16, 64, 1, 1, 0, 0, 0, 0);
    add(&cs, "wide", 64, 32, 128, 3, 2, 0, 0, 1, 0);
    add(&cs, "wide", 128, 16, 64, 3, 2, 0, 0, 1, 0);
    return cs;
}

static ConvShape case_shape(const Case *c) {
    ConvShape s = conv_shape(BATCH, c->cin, c->h, c->h, c->cout, c->k, c->stride, c->pad, c->transposed, c->bias);
    if (c->output_padding) conv_shape_set_output_padding(&s, c->output_padding);
    return s;
}

// One engine's results on one case: out, din, dweight, dbias.
typedef struct {
    float *out, *din, *dw, *db;
} Results;

typedef struct {
    float *in, *w, *bias, *dout;
} Inputs;

static void fill_uniform(float *x, size_t n, uint64_t a, uint32_t b) {
    Rng r = rng_stream(4321, RNG_PURPOSE_TEST, a, b);
    for (size_t i = 0; i < n; i++) x[i] = rng_uniform_range(&r, -1.0f, 1.0f);
}

static Inputs make_inputs(const ConvShape *s, uint64_t seed) {
    Inputs in;
    in.in = xmalloc(conv_in_count(s) * sizeof(float));
    in.w = xmalloc(conv_weight_count(s) * sizeof(float));
    in.bias = xmalloc((size_t)s->out_channels * sizeof(float));
    in.dout = xmalloc(conv_out_count(s) * sizeof(float));
    fill_uniform(in.in, conv_in_count(s), seed, 0);
    fill_uniform(in.w, conv_weight_count(s), seed, 1);
    fill_uniform(in.bias, (size_t)s->out_channels, seed, 2);
    fill_uniform(in.dout, conv_out_count(s), seed, 3);
    return in;
}

// Forward and backward of s on a fresh context of `engine` with `threads` threads.
static Results run(CpuConv engine, Precision precision, int threads, ConvShape s, const Inputs *in) {
    OpsContext ctx;
    ops_context_init_with_conv(&ctx, "cpu", 0, threads, precision, 0, engine);
    ctx.ops->reserve_workspace(&ctx, ctx.ops->conv_prepare(&ctx, &s));
    Results r;
    r.out = xmalloc(conv_out_count(&s) * sizeof(float));
    r.din = xmalloc(conv_in_count(&s) * sizeof(float));
    r.dw = xmalloc(conv_weight_count(&s) * sizeof(float));
    r.db = xcalloc((size_t)s.out_channels, sizeof(float));
    ctx.ops->conv_forward(&ctx, &s, in->in, in->w, s.has_bias ? in->bias : NULL, r.out);
    ctx.ops->conv_backward(&ctx, &s, in->in, in->w, in->dout, r.din, r.dw, s.has_bias ? r.db : NULL);
    ops_context_destroy(&ctx);
    return r;
}

static void free_results(Results *r) { free(r->out), free(r->din), free(r->dw), free(r->db); }

static int same_bits(const Results *a, const Results *b, const ConvShape *s) {
    return memcmp(a->out, b->out, conv_out_count(s) * sizeof(float)) == 0 &&
           memcmp(a->din, b->din, conv_in_count(s) * sizeof(float)) == 0 &&
           memcmp(a->dw, b->dw, conv_weight_count(s) * sizeof(float)) == 0 &&
           memcmp(a->db, b->db, (size_t)s->out_channels * sizeof(float)) == 0;
}

// 1 thread, 2 threads, 1 thread, 2 threads: the same bits every time. Returns the first run.
static Results check_deterministic(TestCounts *c, CpuConv engine, Precision precision, const ConvShape *s,
                                   const Inputs *in, const char *name) {
    Results first = run(engine, precision, 1, *s, in);
    for (int i = 1; i < 4; i++) {
        Results again = run(engine, precision, i % 2 ? 2 : 1, *s, in);
        EXPECT(c, same_bits(&first, &again, s), "%s: %s%s with %d thread(s) (run %d) differs from 1 thread", name,
               cpu_conv_name(engine), precision == PRECISION_BF16 ? " bf16" : "", i % 2 ? 2 : 1, i + 1);
        free_results(&again);
    }
    return first;
}

static double worst = 0.0, worst_bf16 = 0.0;

static double expect_close(TestCounts *c, const float *got, const float *want, size_t n, const char *what,
                           const char *name, int bf16) {
    double e = test_max_rel_error(got, want, n), tol = bf16 ? BF16_TOL : ENGINE_TOL;
    double *w = bf16 ? &worst_bf16 : &worst;
    if (e > *w || isnan(e)) *w = e;
    EXPECT(c, e <= tol, "%s: oneDNN%s %s differs from im2col by %.3g relative (> %.0e)", name, bf16 ? " bf16" : "",
           what, e, tol);
    return e;
}

static void expect_all_close(TestCounts *c, const Results *got, const Results *ref, const ConvShape *s,
                             const char *name, int bf16) {
    double e = expect_close(c, got->out, ref->out, conv_out_count(s), "forward", name, bf16);
    expect_close(c, got->din, ref->din, conv_in_count(s), "din", name, bf16);
    expect_close(c, got->dw, ref->dw, conv_weight_count(s), "dweight", name, bf16);
    if (s->has_bias) expect_close(c, got->db, ref->db, (size_t)s->out_channels, "dbias", name, bf16);
    // A dense layer (the kernel covers the image) runs as OpenBLAS gemms in fp32 whatever is asked.
    if (bf16 && !conv_is_dense(s)) EXPECT(c, e > 1e-6, "%s: bf16 forward equals fp32 to %.3g: the bf16 path did not run", name, e);
}

int main(void) {
    TestCounts c = {0, 0};
    Cases cs = all_cases();
    int have_onednn = onednn_compiled(), have_bf16 = have_onednn && onednn_bf16_supported(), skipped = 0;
    if (!have_onednn) TEST_SKIP(&skipped, "the oneDNN comparisons: this build has no oneDNN");
    if (have_onednn && !have_bf16)
        TEST_SKIP(&skipped, "the bf16 comparisons: oneDNN's ISA here is %s, bf16 needs AVX512-BF16", onednn_isa_name());
    for (int i = 0; i < cs.count; i++) {
        const Case *cc = &cs.items[i];
        ConvShape s = case_shape(cc);
        Inputs in = make_inputs(&s, (uint64_t)i + 1);
        Results ref = check_deterministic(&c, CPU_CONV_IM2COL, PRECISION_FP32, &s, &in, cc->name);
        for (int bf16 = 0; bf16 < 1 + have_bf16 && have_onednn; bf16++) {
            Results got = check_deterministic(&c, CPU_CONV_ONEDNN, bf16 ? PRECISION_BF16 : PRECISION_FP32, &s, &in,
                                              cc->name);
            expect_all_close(&c, &got, &ref, &s, cc->name, bf16);
            free_results(&got);
        }
        free_results(&ref);
        free(in.in), free(in.w), free(in.bias), free(in.dout);
    }
    printf("%d shapes, batch %d; worst oneDNN vs im2col relative difference %.2g, bf16 %.2g\n", cs.count, BATCH,
           worst, worst_bf16);
    return test_finish_skipped("test_ops_conv_engines", &c, skipped);
}
