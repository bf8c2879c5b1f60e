// test_gpu_ops.c: the CUDA backend's memory, elementwise ops, permutes, loss, reductions, Adam,
// step bookkeeping and data ops against the CPU backend, the oracle (its own tests check it
// against naive loops, finite differences and PyTorch). The quantizer: test_gpu_quantizer.c; the
// convolutions: test_gpu_conv.c; both use the tolerances below (gpu_ops_common.h). Exits 77
// (SKIP) when the build has no CUDA backend or no GPU is visible.
//
// Inputs are random (Philox, RNG_PURPOSE_TEST) plus special values where an op defines them.
// Tolerances, with err = max|gpu - cpu| / max|cpu| over a tensor (test_max_rel_error):
// - relu, add, scale, fill, layout permutes, gather, code counts: bit-identical (NaN == NaN,
//   -0 != +0), as both backends compute them the same way.
// - mse_backward, vq_codebook_grad, ema_update, adam_update: err <= 1e-6 (the CUDA kernels repeat
//   the CPU's rounding step by step, so they are expected to be bit-identical; the count of
//   bit-identical tensors is printed).
// - mse_forward, sum_squares, code_stats sums: relative 1e-5 (different summation order).
// - convolutions (test_gpu_conv.c) at the model's shapes, batch 4: fp32 (cuDNN FMA-only
//   algorithms) err <= 1e-4; tf32 err <= 2e-2, bf16 err <= 3e-2 (normwise bf16 error ~5-8e-3: 7
//   stored bits; per-value bounds are in test_gpu_conv_precision). Outputs are poisoned with NaN
//   first, so an op that fails to overwrite them is caught.
// - vq_nearest: codes identical except for near-ties: the GPU's code may differ only when its
//   exact (double) distance is within 1e-4 + 1e-6 (|z|^2 + |e|^2) of the CPU code's, and on at
//   most 1% of rows. Integer data (every distance exact in float): identical codes, ties to the
//   lowest index. A NaN row: code 0 (torch.argmin's first NaN), as the CPU.
// - deterministic mode: the reductions and code_stats repeat bit for bit (the convolutions:
//   test_gpu_conv.c).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "gpu_ops_common.h"
#include "gpu_test.h"
#ifdef VQ_HAVE_CUDA
#include "kernels/cuda/cuda_api.h"
#endif

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

// The inputs of the elementwise tests: a and b uniform in [-1, 1], special = a with NaN, -0, +0,
// +inf, -inf and -NaN first; their device copies, a device output and a host reference.
typedef struct {
    size_t n;
    float *a, *b, *special, *ref;
    float *ga, *gb, *gs, *gout;
} ElementwiseInputs;

static void elementwise_setup(ElementwiseInputs *x, OpsContext *gpu) {
    const size_t n = 100003;   // not a multiple of any block size
    const size_t bytes = n * sizeof(float);
    x->n = n;
    x->a = alloc_floats(n), x->b = alloc_floats(n), x->special = alloc_floats(n), x->ref = alloc_floats(n);
    fill_uniform(x->a, n, -1.0f, 1.0f, 10);
    fill_uniform(x->b, n, -1.0f, 1.0f, 11);
    memcpy(x->special, x->a, bytes);
    float *special = x->special;
    special[0] = NAN, special[1] = -0.0f, special[2] = 0.0f, special[3] = INFINITY, special[4] = -INFINITY;
    special[5] = -NAN;
    x->ga = upload(gpu, x->a, bytes), x->gb = upload(gpu, x->b, bytes), x->gs = upload(gpu, special, bytes);
    x->gout = gpu->ops->alloc(gpu, bytes);
}

static void elementwise_free(ElementwiseInputs *x, OpsContext *gpu) {
    gpu->ops->release(gpu, x->ga);
    gpu->ops->release(gpu, x->gb);
    gpu->ops->release(gpu, x->gs);
    gpu->ops->release(gpu, x->gout);
    free(x->a);
    free(x->b);
    free(x->special);
    free(x->ref);
}

// relu, add, scale and fill: bit-identical, out of place and in place.
static void test_pointwise(TestCounts *t, const ElementwiseInputs *x, OpsContext *cpu, OpsContext *gpu) {
    const size_t n = x->n, bytes = n * sizeof(float);
    float *a = x->a, *b = x->b, *special = x->special, *ref = x->ref;
    float *ga = x->ga, *gb = x->gb, *gs = x->gs, *gout = x->gout;
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
}

// The layout permutes: bit-identical.
static void test_permutes(TestCounts *t, const ElementwiseInputs *x, OpsContext *cpu, OpsContext *gpu) {
    float *a = x->a, *ref = x->ref;
    float *ga = x->ga, *gout = x->gout;
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
}

// mse_forward and sum_squares into device scalars: close to the CPU's, deterministic, NaN and inf.
static void test_reductions(TestCounts *t, Worst *w, const ElementwiseInputs *x, OpsContext *cpu,
                            OpsContext *gpu) {
    const size_t n = x->n;
    float *a = x->a, *b = x->b;
    float *ga = x->ga, *gb = x->gb, *gs = x->gs;
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
    gpu->ops->release(gpu, gscalar);
}

// mse_backward: overwrite, then accumulate onto it.
static void test_mse_backward(TestCounts *t, Worst *w, const ElementwiseInputs *x, OpsContext *cpu,
                              OpsContext *gpu) {
    const size_t n = x->n;
    float *a = x->a, *b = x->b, *ref = x->ref;
    float *ga = x->ga, *gb = x->gb, *gout = x->gout;
    cpu->ops->mse_backward(cpu, a, b, n, 0.7f, 0, ref);
    gpu->ops->fill(gpu, gout, NAN, n);
    gpu->ops->mse_backward(gpu, ga, gb, n, 0.7f, 0, gout);
    w->elementwise = max_d(w->elementwise, expect_close_device(t, w, "mse_backward", gpu, gout, ref, n, EXACTISH_TOL));
    cpu->ops->mse_backward(cpu, b, a, n, 1.3f, 1, ref);
    gpu->ops->mse_backward(gpu, gb, ga, n, 1.3f, 1, gout);
    w->elementwise = max_d(w->elementwise,
                           expect_close_device(t, w, "mse_backward accumulate", gpu, gout, ref, n, EXACTISH_TOL));
}

static void test_elementwise(TestCounts *t, Worst *w, OpsContext *cpu, OpsContext *gpu) {
    ElementwiseInputs x;
    elementwise_setup(&x, gpu);
    test_pointwise(t, &x, cpu, gpu);
    test_permutes(t, &x, cpu, gpu);
    test_reductions(t, w, &x, cpu, gpu);
    test_mse_backward(t, w, &x, cpu, gpu);
    elementwise_free(&x, gpu);
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
    for (int range = PIXELS_CENTERED; range <= PIXELS_SYMMETRIC; range++) {
        cpu->ops->gather_images(cpu, pixels, perm, 30, BATCH, IMAGE, (PixelRange)range, want);
        gpu->ops->gather_images(gpu, gpixels, gperm, 30, BATCH, IMAGE, (PixelRange)range, gout);
        gpu->ops->to_host(gpu, got, gout, (size_t)BATCH * IMAGE * sizeof(float));
        EXPECT(t, memcmp(got, want, (size_t)BATCH * IMAGE * sizeof(float)) == 0,
               "gather_images, range %d: the GPU batch differs from the CPU's (must be bit-identical)", range);
    }

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

int main(void) {
    if (gpu_test_unavailable()) return TEST_SKIP_CODE;
    TestCounts t = {0, 0};
    Worst w = {0};
    OpsContext cpu, gpu;
    gpu_ops_contexts(&cpu, &gpu);

    test_memory(&t, &gpu);
    test_elementwise(&t, &w, &cpu, &gpu);
    test_adam(&t, &w, &cpu, &gpu);
    test_data(&t, &cpu, &gpu);

    printf("worst errors vs CPU: elementwise %.3g, reductions %.3g, adam %.3g; "
           "%d of %d near-exact tensors bit-identical\n",
           w.elementwise, w.reduce, w.optimizer, w.bit_identical, w.compared);
    ops_context_destroy(&gpu);
    ops_context_destroy(&cpu);
    return test_finish("test_gpu_ops", &t);
}
