// cpu_codebook.c: dead-code restart (ops.h vq_restart_pick / vq_restart_apply).
#include <string.h>

#include "../../src/core/rng.h"
#include "cpu_internal.h"

void cpu_vq_restart_pick(OpsContext *ctx, const float *cluster_size, float threshold, const float *z, int m, int k,
                         int d, int64_t first_latent, int64_t global_m, uint64_t seed, float *out,
                         const StepState *state) {
    (void)ctx;
    size_t row = (size_t)d + 1;
    memset(out, 0, (size_t)k * row * sizeof(float));
    if (!state->finite) return;
    for (int j = 0; j < k; j++) {
        if (!(cluster_size[j] < threshold)) continue;
        Rng rng = rng_stream(seed, RNG_PURPOSE_RESTART, (uint64_t)state->steps, (uint32_t)j);
        int64_t id = (int64_t)rng_below(&rng, (uint32_t)global_m);
        if (id < first_latent || id >= first_latent + m) continue;
        memcpy(out + (size_t)j * row, z + (size_t)(id - first_latent) * d, (size_t)d * sizeof(float));
        out[(size_t)j * row + d] = 1.0f;
    }
}

void cpu_vq_restart_apply(OpsContext *ctx, float *cluster_size, float *ema_w, float *codebook, const float *picked,
                          int k, int d, float threshold, StepState *state) {
    (void)ctx;
    if (!state->finite) return;
    size_t row = (size_t)d + 1;
    for (int j = 0; j < k; j++) {
        const float *v = picked + (size_t)j * row;
        if (v[d] == 0.0f) continue;
        cluster_size[j] = threshold;
        for (int i = 0; i < d; i++) {
            codebook[(size_t)j * d + i] = v[i];
            ema_w[(size_t)j * d + i] = threshold * v[i];
        }
        state->restarts++;
    }
}
