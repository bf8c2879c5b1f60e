// test_gpu_conv.c: the CUDA convolutions against the CPU's (the oracle) at the model's shapes,
// batch 4, in every algorithm-selection path: fp32 (cuDNN FMA-only algorithms) err <= 1e-4; tf32
// err <= 2e-2, bf16 err <= 3e-2 (normwise bf16 error ~5-8e-3: 7 stored bits; per-value bounds
// are in test_gpu_conv_precision), err = max|gpu - cpu| / max|cpu| over a tensor. Outputs are
// poisoned with NaN first, so an op that fails to overwrite them is caught. In deterministic mode
// the same convolutions twice on one context and once on a second context are bit-identical.
// Exits 77 (SKIP) when the build has no CUDA backend or no GPU is visible.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "gpu_conv_cases.h"
#include "gpu_ops_common.h"
#include "gpu_test.h"

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
    ConvResult res;                     // host results (din NULL for the first layer)
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
// layer (3 input channels) passes din = NULL, as the model does.
static void conv_run(OpsContext *ctx, const ConvRun *src, ConvRun *dst) {
    run_conv(ctx, src->shape, src->shape.in_channels != 3, src->in, src->weight, src->bias, src->dout, &dst->res);
    dst->shape = src->shape;
}

static void conv_free(ConvRun *r) {
    void *buffers[] = {r->in, r->weight, r->bias, r->dout};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) free(buffers[i]);
    result_free(&r->res);
    memset(r, 0, sizeof *r);
}

static double conv_compare(TestCounts *t, const char *mode, const char *name, const ConvRun *got,
                           const ConvRun *want, double tol) {
    const ConvShape *s = &want->shape;
    double err = test_max_rel_error(got->res.out, want->res.out, conv_out_count(s));
    double worst = err;
    EXPECT(t, err <= tol, "%s %s forward: error %.3g > %.3g", mode, name, err, tol);
    if (want->res.din) {
        err = test_max_rel_error(got->res.din, want->res.din, conv_in_count(s));
        worst = max_d(worst, err);
        EXPECT(t, err <= tol, "%s %s din: error %.3g > %.3g", mode, name, err, tol);
    }
    err = test_max_rel_error(got->res.dweight, want->res.dweight, conv_weight_count(s));
    worst = max_d(worst, err);
    EXPECT(t, err <= tol, "%s %s dweight: error %.3g > %.3g", mode, name, err, tol);
    if (want->res.dbias) {
        err = test_max_rel_error(got->res.dbias, want->res.dbias, (size_t)s->out_channels);
        worst = max_d(worst, err);
        EXPECT(t, err <= tol, "%s %s dbias: error %.3g > %.3g", mode, name, err, tol);
    }
    return worst;
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
            result_free(&got.res);
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
        EXPECT(t, results_identical(&first.shape, &first.res, &second.res), "tf32 deterministic %s: two runs differ", CONV_CASES[i].name);
        EXPECT(t, results_identical(&first.shape, &first.res, &other.res), "tf32 deterministic %s: two contexts differ", CONV_CASES[i].name);
        double err = conv_compare(t, "tf32 deterministic", CONV_CASES[i].name, &first, &ref[i], CONV_TF32_TOL);
        w->conv_tf32 = max_d(w->conv_tf32, err);
        result_free(&first.res);
        result_free(&second.res);
        result_free(&other.res);
    }
    ops_context_destroy(&a);
    ops_context_destroy(&b);
    for (int i = 0; i < CONV_CASE_COUNT; i++) conv_free(&ref[i]);
}

int main(void) {
    if (gpu_test_unavailable()) return TEST_SKIP_CODE;
    TestCounts t = {0, 0};
    Worst w = {0};
    OpsContext cpu;
    ops_context_init(&cpu, "cpu", 0, 1, PRECISION_FP32, 1);
    test_conv(&t, &w, &cpu);
    printf("worst errors vs CPU: conv fp32 %.3g, conv tf32 %.3g\n", w.conv_fp32, w.conv_tf32);
    ops_context_destroy(&cpu);
    return test_finish("test_gpu_conv", &t);
}
