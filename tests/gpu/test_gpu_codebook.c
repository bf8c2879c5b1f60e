// test_gpu_codebook.c: the CUDA dead-code restart ops (kernels/cuda/cuda_codebook.cu) against the
// CPU ones (the oracle, checked by tests/unit/test_ops_codebook.c against the documented draw).
// Exits 77 (SKIP) without a CUDA backend or a visible GPU. Both backends draw from the same
// Philox counters and copy floats, so every result must be bit-identical:
// - vq_restart_pick over a global batch split into 1, 2 and 3 rank slices, K above one block,
//   sizes below, at and above the threshold and a NaN size (not dead); the output poisoned first;
// - the draw itself where Lemire's rejection loop runs often (bound 2^31 + 1: about half the
//   first draws are rejected): one dead code at a time, the slice placed over the CPU's pick;
// - vq_restart_apply: codebook, EMA sums and sizes, and the restart count in the device StepState;
// - a skipped step (finite = 0) picks zeros and applies nothing;
// - pick and apply captured in a CUDA graph, replayed at two steps written into the device state.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/common.h"
#include "core/rng.h"
#include "gpu_compare.h"
#include "grad_check.h"
#include "kernels/ops.h"
#include "test_util.h"

enum { K = 300, D = 5, M = 1200 };
static const uint64_t SEED = 0x5eedc0deb00cull;
static const float THRESHOLD = 1.0f;

static StepState *upload_state(GpuCompare *g, const StepState *host) {
    StepState *d = g->gpu.ops->alloc(&g->gpu, sizeof *host);
    g->gpu.ops->to_device(&g->gpu, d, host, sizeof *host);
    return d;
}

// Cluster sizes in [0, 2): about half below THRESHOLD, one exactly at it, one NaN.
static void fill_sizes(float *sizes) {
    grad_fill_normal(sizes, K, 1.0f, 0.6f, 21);
    for (int j = 0; j < K; j++) sizes[j] = fabsf(sizes[j]);
    sizes[7] = THRESHOLD;
    sizes[8] = NAN;
}

// Every rank slice of the global batch: the GPU's picks bitwise the CPU's. want_sum gets the
// whole batch's picks (one rank); returns how many codes they mark.
static int test_pick_slices(GpuCompare *g, const float *sizes, const float *z, const StepState *st, float *want_sum) {
    OpsContext *cpu = &g->cpu, *gpu = &g->gpu;
    size_t rows = (size_t)K * (D + 1);
    float *want = xmalloc(rows * sizeof(float));
    float *dsizes = gpu_upload(g, sizes, K), *dout = gpu_poisoned(g, rows);
    StepState *dst = upload_state(g, st);
    for (int world = 1; world <= 3; world++) {
        int slice = M / world;
        for (int r = 0; r < world; r++) {
            const float *zr = z + (size_t)r * slice * D;
            cpu->ops->vq_restart_pick(cpu, sizes, THRESHOLD, zr, slice, K, D, (int64_t)r * slice, M, SEED, want, st);
            if (world == 1) memcpy(want_sum, want, rows * sizeof(float));
            float *dz = gpu_upload(g, zr, (size_t)slice * D);
            gpu->ops->vq_restart_pick(gpu, dsizes, THRESHOLD, dz, slice, K, D, (int64_t)r * slice, M, SEED, dout, dst);
            char what[96];
            snprintf(what, sizeof what, "vq_restart_pick, rank %d of %d, step %d", r, world, st->steps);
            gpu_expect_identical(g, what, dout, want, rows);
            gpu->ops->release(gpu, dz);
        }
    }
    int marked = 0;
    for (int j = 0; j < K; j++) marked += want_sum[(size_t)j * (D + 1) + D] != 0.0f;
    gpu->ops->release(gpu, dsizes), gpu->ops->release(gpu, dout), gpu->ops->release(gpu, dst);
    free(want);
    return marked;
}

// Bound 2^31 + 1: the slice [id - 2, id + 2) of the CPU's pick for one dead code at a time.
static void test_pick_rejection(GpuCompare *g) {
    OpsContext *cpu = &g->cpu, *gpu = &g->gpu;
    enum { CODES = 64, SLICE = 4, DIM = 2 };
    const int64_t bound = ((int64_t)1 << 31) + 1;
    float z[SLICE * DIM], sizes[CODES], want[CODES * (DIM + 1)];
    for (int i = 0; i < SLICE * DIM; i++) z[i] = (float)(i + 1);
    StepState st = {.steps = 2000000000, .finite = 1};
    float *dz = gpu_upload(g, z, SLICE * DIM), *dsizes = gpu_poisoned(g, CODES);
    float *dout = gpu_poisoned(g, CODES * (DIM + 1));
    StepState *dst = upload_state(g, &st);
    int rejected = 0;
    for (int j = 0; j < CODES; j++) {
        Rng rng = rng_stream(SEED, RNG_PURPOSE_RESTART, (uint64_t)st.steps, (uint32_t)j);
        uint64_t first = (uint64_t)rng_u32(&rng) * (uint64_t)bound;
        rejected += (uint32_t)first < (uint32_t)((1ull << 32) % (uint64_t)bound);
        Rng again = rng_stream(SEED, RNG_PURPOSE_RESTART, (uint64_t)st.steps, (uint32_t)j);
        int64_t id = (int64_t)rng_below(&again, (uint32_t)bound);
        int64_t first_latent = id - 2;
        for (int c = 0; c < CODES; c++) sizes[c] = c == j ? 0.0f : 2.0f;
        gpu->ops->to_device(gpu, dsizes, sizes, sizeof sizes);
        cpu->ops->vq_restart_pick(cpu, sizes, THRESHOLD, z, SLICE, CODES, DIM, first_latent, bound, SEED, want, &st);
        EXPECT(&g->t, want[j * (DIM + 1) + DIM] == 1.0f, "code %d: the CPU did not pick from its own slice", j);
        gpu->ops->vq_restart_pick(gpu, dsizes, THRESHOLD, dz, SLICE, CODES, DIM, first_latent, bound, SEED, dout, dst);
        char what[80];
        snprintf(what, sizeof what, "vq_restart_pick, bound 2^31 + 1, code %d", j);
        gpu_expect_identical(g, what, dout, want, CODES * (DIM + 1));
    }
    EXPECT(&g->t, rejected >= CODES / 4, "only %d of %d first draws rejected: the case misses the rejection loop",
           rejected, CODES);
    printf("bound 2^31 + 1: %d of %d codes needed a second draw\n", rejected, CODES);
    gpu->ops->release(gpu, dz), gpu->ops->release(gpu, dsizes), gpu->ops->release(gpu, dout);
    gpu->ops->release(gpu, dst);
}

typedef struct {
    float *sizes, *ema_w, *codebook;
} CodebookState;

static void expect_same_state(GpuCompare *g, const char *what, const CodebookState *dev, const CodebookState *host,
                              const StepState *dst, const StepState *st) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s: cluster sizes", what);
    gpu_expect_identical(g, buf, dev->sizes, host->sizes, K);
    snprintf(buf, sizeof buf, "%s: EMA sums", what);
    gpu_expect_identical(g, buf, dev->ema_w, host->ema_w, (size_t)K * D);
    snprintf(buf, sizeof buf, "%s: codebook", what);
    gpu_expect_identical(g, buf, dev->codebook, host->codebook, (size_t)K * D);
    StepState got;
    g->gpu.ops->to_host(&g->gpu, &got, dst, sizeof got);
    EXPECT(&g->t, got.restarts == st->restarts, "%s: restart count GPU %d, CPU %d", what, got.restarts, st->restarts);
}

static void test_apply(GpuCompare *g, const float *sizes, const float *picked, StepState st) {
    OpsContext *cpu = &g->cpu, *gpu = &g->gpu;
    float *w = xmalloc((size_t)K * D * sizeof(float)), *cb = xmalloc((size_t)K * D * sizeof(float));
    float *sz = xmalloc(K * sizeof(float));
    grad_fill_normal(w, (size_t)K * D, 0.0f, 1.0f, 22);
    grad_fill_normal(cb, (size_t)K * D, 0.0f, 1.0f, 23);
    memcpy(sz, sizes, K * sizeof(float));
    CodebookState dev = {gpu_upload(g, sz, K), gpu_upload(g, w, (size_t)K * D), gpu_upload(g, cb, (size_t)K * D)};
    CodebookState host = {sz, w, cb};
    float *dpicked = gpu_upload(g, picked, (size_t)K * (D + 1));
    st.restarts = 5;   // counts add up from where they are
    StepState *dst = upload_state(g, &st);
    gpu->ops->vq_restart_apply(gpu, dev.sizes, dev.ema_w, dev.codebook, dpicked, K, D, THRESHOLD, dst);
    cpu->ops->vq_restart_apply(cpu, sz, w, cb, picked, K, D, THRESHOLD, &st);
    expect_same_state(g, st.finite ? "vq_restart_apply" : "vq_restart_apply on a skipped step", &dev, &host, dst, &st);
    EXPECT(&g->t, st.finite ? st.restarts > 5 : st.restarts == 5, "the CPU counted %d restarts (finite %d)",
           st.restarts, st.finite);
    gpu->ops->release(gpu, dev.sizes), gpu->ops->release(gpu, dev.ema_w), gpu->ops->release(gpu, dev.codebook);
    gpu->ops->release(gpu, dpicked), gpu->ops->release(gpu, dst);
    free(w), free(cb), free(sz);
}

// Pick and apply captured once, replayed at steps 3 and 4 (one rank): each replay as the CPU's.
static void test_graph(GpuCompare *g, const float *sizes, const float *z) {
    OpsContext *cpu = &g->cpu, *gpu = &g->gpu;
    size_t rows = (size_t)K * (D + 1), kd = (size_t)K * D;
    float *w = xcalloc(kd, sizeof(float)), *cb = xcalloc(kd, sizeof(float)), *sz = xmalloc(K * sizeof(float));
    float *picked = xmalloc(rows * sizeof(float));
    memcpy(sz, sizes, K * sizeof(float));
    CodebookState dev = {gpu_upload(g, sz, K), gpu_upload(g, w, kd), gpu_upload(g, cb, kd)};
    CodebookState host = {sz, w, cb};
    float *dz = gpu_upload(g, z, (size_t)M * D), *dpicked = gpu_poisoned(g, rows);
    StepState st = {.steps = 3, .finite = 1};
    StepState *dst = upload_state(g, &st);
    gpu->ops->synchronize(gpu);
    gpu->ops->graph_begin(gpu);
    gpu->ops->vq_restart_pick(gpu, dev.sizes, THRESHOLD, dz, M, K, D, 0, M, SEED, dpicked, dst);
    gpu->ops->vq_restart_apply(gpu, dev.sizes, dev.ema_w, dev.codebook, dpicked, K, D, THRESHOLD, dst);
    gpu->ops->graph_end(gpu);
    for (int32_t step = 3; step <= 4; step++) {
        StepState now;
        gpu->ops->to_host(gpu, &now, dst, sizeof now);
        now.steps = step;   // the trainer's step_commit moves it on; here the test does
        gpu->ops->to_device(gpu, dst, &now, sizeof now);
        gpu->ops->graph_launch(gpu);
        st.steps = step;
        cpu->ops->vq_restart_pick(cpu, sz, THRESHOLD, z, M, K, D, 0, M, SEED, picked, &st);
        cpu->ops->vq_restart_apply(cpu, sz, w, cb, picked, K, D, THRESHOLD, &st);
        char what[64];
        snprintf(what, sizeof what, "restart in a CUDA graph, replay at step %d", step);
        expect_same_state(g, what, &dev, &host, dst, &st);
    }
    gpu->ops->graph_destroy(gpu);
    gpu->ops->release(gpu, dev.sizes), gpu->ops->release(gpu, dev.ema_w), gpu->ops->release(gpu, dev.codebook);
    gpu->ops->release(gpu, dz), gpu->ops->release(gpu, dpicked), gpu->ops->release(gpu, dst);
    free(w), free(cb), free(sz), free(picked);
}

int main(void) {
    GpuCompare g;
    if (!gpu_compare_init(&g)) return TEST_SKIP_CODE;
    float sizes[K], *z = xmalloc((size_t)M * D * sizeof(float)), *picked = xmalloc((size_t)K * (D + 1) * sizeof(float));
    fill_sizes(sizes);
    grad_fill_normal(z, (size_t)M * D, 0.0f, 1.0f, 24);
    StepState st = {.steps = 41, .finite = 1};
    int marked = test_pick_slices(&g, sizes, z, &st, picked);
    EXPECT(&g.t, marked > K / 4 && marked < K, "%d of %d codes marked: the case should mark many, not all", marked, K);
    test_apply(&g, sizes, picked, st);
    StepState skipped = {.steps = 42, .finite = 0};
    float *zeros = xmalloc((size_t)K * (D + 1) * sizeof(float));
    marked = test_pick_slices(&g, sizes, z, &skipped, zeros);
    EXPECT(&g.t, marked == 0, "a skipped step marked %d codes", marked);
    test_apply(&g, sizes, picked, skipped);
    test_pick_rejection(&g);
    test_graph(&g, sizes, z);
    free(z), free(picked), free(zeros);
    return gpu_compare_finish(&g, "test_gpu_codebook");
}
