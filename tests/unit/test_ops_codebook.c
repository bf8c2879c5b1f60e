// test_ops_codebook.c: dead-code restart ops (kernels/cpu/cpu_codebook.c):
// - exactly the codes whose cluster size is below the threshold are marked, each with the latent
//   the documented draw names, and apply replaces exactly those (codebook, EMA sums and sizes)
//   and counts them;
// - the global batch split over 1, 2 or 3 "ranks" (first_latent) and summed gives the same picks
//   as one rank: the draw is over the global index space;
// - a skipped step (state->finite = 0) picks and applies nothing.
#include <stdlib.h>
#include <string.h>

#include "../../src/core/common.h"
#include "../../src/core/rng.h"
#include "kernels/ops.h"
#include "test_util.h"

enum { K = 12, D = 3, M = 60 };

static void fill(float *x, size_t n, uint64_t stream) {
    Rng rng = rng_stream(5, RNG_PURPOSE_TEST, stream, 0);
    for (size_t i = 0; i < n; i++) x[i] = rng_uniform_range(&rng, -1.0f, 1.0f);
}

// The picks of a global batch of M latents held by `world` ranks in equal contiguous slices.
static void picks_over_ranks(OpsContext *ctx, const float *sizes, const float *z, int world, StepState *st, float *sum) {
    size_t row = D + 1;
    float *out = xmalloc(K * row * sizeof(float));
    memset(sum, 0, K * row * sizeof(float));
    int slice = M / world;
    for (int r = 0; r < world; r++) {
        ctx->ops->vq_restart_pick(ctx, sizes, 0.5f, z + (size_t)r * slice * D, slice, K, D, (int64_t)r * slice, M, 77,
                                  out, st);
        for (size_t i = 0; i < K * row; i++) sum[i] += out[i];
    }
    free(out);
}

int main(void) {
    TestCounts c = {0, 0};
    OpsContext ctx;
    ops_context_init(&ctx, "cpu", 0, 1, PRECISION_FP32, 1);
    float sizes[K], z[M * D], one[K * (D + 1)], split[K * (D + 1)];
    fill(z, M * D, 1);
    int dead = 0;
    for (int j = 0; j < K; j++) {
        sizes[j] = j % 3 == 0 ? 0.1f * j / K : 1.0f + j;   // codes 0, 3, 6, 9 are below 0.5
        dead += sizes[j] < 0.5f;
    }
    StepState st = {.steps = 41, .finite = 1};

    picks_over_ranks(&ctx, sizes, z, 1, &st, one);
    int marked = 0;
    for (int j = 0; j < K; j++) {
        const float *row = one + (size_t)j * (D + 1);
        int is_dead = sizes[j] < 0.5f;
        EXPECT(&c, row[D] == (is_dead ? 1.0f : 0.0f), "code %d: mark %g, dead %d", j, row[D], is_dead);
        if (!is_dead) continue;
        marked++;
        Rng rng = rng_stream(77, RNG_PURPOSE_RESTART, 41, (uint32_t)j);
        uint32_t id = rng_below(&rng, M);
        EXPECT(&c, memcmp(row, z + (size_t)id * D, D * sizeof(float)) == 0, "code %d: not latent %u", j, id);
    }
    EXPECT(&c, marked == dead && dead == 4, "%d codes marked, %d dead", marked, dead);
    for (int world = 2; world <= 3; world++) {
        picks_over_ranks(&ctx, sizes, z, world, &st, split);
        EXPECT(&c, memcmp(split, one, sizeof one) == 0, "picks over %d ranks differ from one rank's", world);
    }

    float codebook[K * D], ema_w[K * D], before_cb[K * D], before_w[K * D], new_sizes[K];
    fill(codebook, K * D, 2);
    fill(ema_w, K * D, 3);
    memcpy(before_cb, codebook, sizeof codebook);
    memcpy(before_w, ema_w, sizeof ema_w);
    memcpy(new_sizes, sizes, sizeof sizes);
    ctx.ops->vq_restart_apply(&ctx, new_sizes, ema_w, codebook, one, K, D, 0.5f, &st);
    EXPECT(&c, st.restarts == dead, "restarts counted %d, expected %d", st.restarts, dead);
    for (int j = 0; j < K; j++) {
        int is_dead = sizes[j] < 0.5f;
        const float *v = one + (size_t)j * (D + 1);
        for (int i = 0; i < D; i++) {
            float want_cb = is_dead ? v[i] : before_cb[j * D + i], want_w = is_dead ? 0.5f * v[i] : before_w[j * D + i];
            EXPECT(&c, codebook[j * D + i] == want_cb && ema_w[j * D + i] == want_w, "code %d dim %d replaced wrongly",
                   j, i);
        }
        EXPECT(&c, new_sizes[j] == (is_dead ? 0.5f : sizes[j]), "code %d: size %g", j, new_sizes[j]);
    }

    StepState skipped = {.steps = 41, .finite = 0};
    picks_over_ranks(&ctx, sizes, z, 1, &skipped, split);
    int any = 0;
    for (size_t i = 0; i < K * (D + 1); i++) any |= split[i] != 0.0f;
    EXPECT(&c, !any, "a skipped step picked replacements");
    memcpy(new_sizes, sizes, sizeof sizes);
    ctx.ops->vq_restart_apply(&ctx, new_sizes, ema_w, codebook, one, K, D, 0.5f, &skipped);
    EXPECT(&c, skipped.restarts == 0 && memcmp(new_sizes, sizes, sizeof sizes) == 0, "a skipped step applied restarts");
    ops_context_destroy(&ctx);
    return test_finish("test_ops_codebook", &c);
}
