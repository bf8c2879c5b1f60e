// codebook_init.c: see codebook_init.h.
#include "codebook_init.h"

#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../core/rng.h"

// Latent ids of the global batch for the K codes: a partial Fisher-Yates over [0, global), so
// the picks are distinct when there are enough latents.
static void pick_latents(uint64_t seed, int64_t global, int k, int64_t *picks) {
    int64_t *pool = xmalloc((size_t)global * sizeof(int64_t));
    for (int64_t i = 0; i < global; i++) pool[i] = i;
    Rng rng = rng_stream(seed, RNG_PURPOSE_CODEBOOK, 0, 0);
    for (int j = 0; j < k; j++) {
        if (global >= k) {
            int64_t r = j + (int64_t)rng_below(&rng, (uint32_t)(global - j));
            int64_t tmp = pool[j];
            pool[j] = pool[r];
            pool[r] = tmp;
            picks[j] = pool[j];
        } else {
            picks[j] = (int64_t)rng_below(&rng, (uint32_t)global);
        }
    }
    free(pool);
}

void codebook_init_from_data(Session *s, TrainState *st, const Dataset *train_set) {
    Model *m = &s->model;
    OpsContext *ctx = &s->ctx;
    int k = m->spec.num_embeddings, d = m->spec.embedding_dim;
    int64_t local = model_latent_count(m);
    int64_t global = local * s->dist->world;
    size_t codebook_floats = (size_t)k * d;

    SamplerPosition first = st->position;   // peek: the first step trains on this same batch
    sampler_next_batch(&st->sampler, &first, m->spec.batch, s->dist->world, s->dist->rank, st->batch_indices);
    dataset_fill_batch(train_set, st->batch_indices, m->spec.batch, st->batch_host);
    ctx->ops->to_device(ctx, m->input, st->batch_host, model_input_count(m) * sizeof(float));
    model_encode(m);

    float *z_host = xmalloc((size_t)local * d * sizeof(float));
    ctx->ops->to_host(ctx, z_host, m->z_flat, (size_t)local * d * sizeof(float));
    int64_t *picks = xmalloc((size_t)k * sizeof(int64_t));
    pick_latents(s->cfg.seed, global, k, picks);
    float *codebook = xcalloc(codebook_floats, sizeof(float));
    int64_t lo = local * s->dist->rank, hi = lo + local;
    for (int j = 0; j < k; j++)
        if (picks[j] >= lo && picks[j] < hi)
            memcpy(codebook + (size_t)j * d, z_host + (size_t)(picks[j] - lo) * d, d * sizeof(float));
    ctx->ops->to_device(ctx, m->codebook, codebook, codebook_floats * sizeof(float));
    dist_allreduce(s->dist, ctx, m->codebook, codebook_floats, 0);
    if (m->spec.quantizer == QUANTIZER_EMA) {
        ctx->ops->copy(ctx, m->ema_w, m->codebook, codebook_floats * sizeof(float));
        ctx->ops->fill(ctx, m->ema_cluster_size, 1.0f, (size_t)k);
    }
    free(codebook);
    free(picks);
    free(z_host);
}
