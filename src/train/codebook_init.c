// codebook_init.c: see codebook_init.h.
#include "codebook_init.h"

#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../core/rng.h"
#include "kmeans.h"

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

// This rank's encoder outputs for the next `batches` global batches, batch by batch.
static float *encode_batches(Session *s, TrainState *st, const Dataset *ds, int64_t batches) {
    Model *m = &s->model;
    OpsContext *ctx = &s->ctx;
    size_t slice_floats = (size_t)model_latent_count(m) * m->spec.embedding_dim;
    float *z = xmalloc((size_t)batches * slice_floats * sizeof(float));
    SamplerPosition pos = st->position;   // peek: training goes on from the same position
    for (int64_t b = 0; b < batches; b++) {
        sampler_next_batch(&st->sampler, &pos, m->spec.batch, s->dist->world, s->dist->rank, st->batch_indices);
        dataset_fill_batch(ds, st->batch_indices, m->spec.batch, st->batch_host);
        ctx->ops->to_device(ctx, m->input, st->batch_host, model_input_count(m) * sizeof(float));
        model_encode(m);
        ctx->ops->to_host(ctx, z + (size_t)b * slice_floats, m->z_flat, slice_floats * sizeof(float));
    }
    return z;
}

// The EMA state of k-means clusters, per step: a step sees one of the sample's `batches` batches.
static void ema_from_clusters(Model *m, const float *centers, const double *counts, int64_t batches) {
    int k = m->spec.num_embeddings, d = m->spec.embedding_dim;
    float *size = xmalloc((size_t)k * sizeof(float)), *w = xmalloc((size_t)k * d * sizeof(float));
    for (int j = 0; j < k; j++) {
        size[j] = counts[j] > 0.0 ? (float)(counts[j] / (double)batches) : 1.0f;
        for (int i = 0; i < d; i++) w[(size_t)j * d + i] = size[j] * centers[(size_t)j * d + i];
    }
    m->ctx->ops->to_device(m->ctx, m->ema_cluster_size, size, (size_t)k * sizeof(float));
    m->ctx->ops->to_device(m->ctx, m->ema_w, w, (size_t)k * d * sizeof(float));
    free(size);
    free(w);
}

void codebook_init_kmeans(Session *s, TrainState *st, const Dataset *train_set) {
    Model *m = &s->model;
    int k = m->spec.num_embeddings, d = m->spec.embedding_dim;
    int64_t slice = model_latent_count(m), global = slice * s->dist->world;
    int64_t samples = s->cfg.kmeans_samples > 0 ? s->cfg.kmeans_samples : (int64_t)64 * k;
    int64_t batches = (samples + global - 1) / global;
    double t0 = wall_time_seconds();
    float *z = encode_batches(s, st, train_set, batches);
    KmeansDevice dev = {.ctx = &s->ctx, .dist = s->dist, .z_dev = m->z_flat, .codes = m->codes,
                        .stats = m->code_stats, .centers_dev = m->codebook};
    KmeansSample ks = {.z = z, .batches = batches, .slice = slice, .d = d};
    float *centers = xmalloc((size_t)k * d * sizeof(float));
    double *counts = xmalloc((size_t)k * sizeof(double)), *sums = xmalloc((size_t)k * d * sizeof(double));
    KmeansReport r = kmeans_fit(&dev, &ks, k, s->cfg.kmeans_iters, s->cfg.seed, centers, counts, sums);
    s->ctx.ops->to_device(&s->ctx, m->codebook, centers, (size_t)k * d * sizeof(float));
    if (m->spec.quantizer == QUANTIZER_EMA) ema_from_clusters(m, centers, counts, batches);
    log_info("kmeans: %d codes from %lld encoder outputs (%lld global batches) at step %lld: k-means++ then %d Lloyd "
             "iterations, mean squared distance %.5g -> %.5g, %d empty clusters, %.1fs", k, (long long)(batches * global),
             (long long)batches, (long long)st->step, s->cfg.kmeans_iters, r.seed_inertia, r.final_inertia, r.empty,
             wall_time_seconds() - t0);
    free(z);
    free(centers);
    free(counts);
    free(sums);
}
