// eval.c: see eval.h.
#include "eval.h"

#include <stdlib.h>
#include <string.h>

#include "../core/common.h"

// Fills the model input with this rank's part of global batch b; returns how many are real images.
static int load_eval_batch(Session *s, const Dataset *ds, int64_t images, int64_t b, int64_t *indices, float *host) {
    Model *m = &s->model;
    int batch = m->spec.batch;
    int64_t first = b * batch * s->dist->world + (int64_t)s->dist->rank * batch;
    int64_t left = images - first;
    int n = left <= 0 ? 0 : left < batch ? (int)left : batch;
    if (n == 0) return 0;
    for (int i = 0; i < batch; i++) indices[i] = first + (i < n ? i : 0);   // padding repeats the first
    dataset_fill_batch(ds, indices, batch, host);
    s->ctx.ops->to_device(&s->ctx, m->input, host, model_input_count(m) * sizeof(float));
    return n;
}

StepMetrics evaluate(Session *s, const Dataset *ds, int max_batches) {
    Model *m = &s->model;
    OpsContext *ctx = &s->ctx;
    int k = m->spec.num_embeddings;
    int64_t global = (int64_t)m->spec.batch * s->dist->world;
    int64_t images = ds->count;
    if (max_batches > 0 && images > (int64_t)max_batches * global) images = (int64_t)max_batches * global;
    int64_t batches = (images + global - 1) / global;

    dist_sync(s->dist, ctx);   // the training step's collectives are done before the waits below
    int64_t *indices = xmalloc((size_t)m->spec.batch * sizeof(int64_t));
    float *host = xmalloc(model_input_count(m) * sizeof(float));
    float *counts = xmalloc((size_t)k * sizeof(float));
    double *sums = xcalloc((size_t)k + 2, sizeof(double));   // [recon, latent, counts...], one reduction
    model_set_training(m, 0);   // dropout off
    for (int64_t b = 0; b < batches; b++) {
        int n = load_eval_batch(s, ds, images, b, indices, host);
        if (n == 0) continue;
        model_forward(m);
        if (n < m->spec.batch) model_restrict_metrics(m, n);
        float scalars[SCALAR_COUNT];
        ctx->ops->to_host(ctx, scalars, m->scalars, sizeof scalars);
        if (model_has_codebook(m)) ctx->ops->to_host(ctx, counts, m->code_stats, (size_t)k * sizeof(float));
        else memset(counts, 0, (size_t)k * sizeof(float));
        sums[0] += (double)scalars[SCALAR_RECON_MSE] * n;   // per-image weights: a partial batch counts less
        sums[1] += (double)scalars[SCALAR_LATENT_LOSS] * n;
        for (int j = 0; j < k; j++) sums[2 + j] += counts[j];
    }
    model_set_training(m, 1);
    dist_allreduce_host_f64(s->dist, sums, (size_t)k + 2);

    StepMetrics sm;
    memset(&sm, 0, sizeof sm);
    double n = images > 0 ? (double)images : 1.0;
    metrics_fill_losses(&sm, &m->spec, sums[0] / n, sums[1] / n);
    sm.images = images;
    int used = 0;
    for (int j = 0; j < k; j++) {
        counts[j] = (float)sums[2 + j];
        used += sums[2 + j] > 0.0;
    }
    sm.perplexity = perplexity_from_counts(counts, k);
    sm.usage = (double)used / k;
    sm.dead_codes = k - used;
    free(indices);
    free(host);
    free(counts);
    free(sums);
    return sm;
}
