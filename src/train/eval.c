// eval.c: reconstruction and codebook metrics on a dataset, sharded over ranks.
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "trainer.h"

StepMetrics trainer_evaluate(Trainer *t, const Dataset *ds) {
    Model *m = &t->model;
    OpsContext *ctx = &t->ctx;
    int k = m->spec.num_embeddings, batch = m->spec.batch, world = t->dist->world;
    int64_t global = (int64_t)batch * world;
    int64_t batches = ds->count / global;
    if (t->cfg.eval_batches > 0 && batches > t->cfg.eval_batches) batches = t->cfg.eval_batches;

    dist_sync(t->dist, ctx);   // the training step's collectives are done before the waits below
    // [recon_sum, latent_sum, counts...] reduced at the end in one call
    double *sums = xcalloc((size_t)k + 2, sizeof(double));
    for (int64_t b = 0; b < batches; b++) {
        int64_t first = b * global + (int64_t)t->dist->rank * batch;
        for (int i = 0; i < batch; i++) t->batch_indices[i] = first + i;
        dataset_fill_batch(ds, t->batch_indices, batch, t->batch_host);
        ctx->ops->to_device(ctx, m->input, t->batch_host, model_input_count(m) * sizeof(float));
        model_forward(m);
        float scalars[SCALAR_COUNT];
        ctx->ops->to_host(ctx, scalars, m->scalars, sizeof scalars);
        ctx->ops->to_host(ctx, t->host_counts, m->code_stats, (size_t)k * sizeof(float));
        sums[0] += scalars[SCALAR_RECON_MSE];
        sums[1] += scalars[SCALAR_LATENT_MSE];
        for (int j = 0; j < k; j++) sums[2 + j] += t->host_counts[j];
    }
    dist_allreduce_host_f64(t->dist, sums, (size_t)k + 2);

    StepMetrics sm;
    memset(&sm, 0, sizeof sm);
    double n = (double)(batches > 0 ? batches : 1) * world;
    sm.recon_mse = sums[0] / n;
    sm.nmse = sm.recon_mse * m->spec.recon_weight;
    double weight = m->spec.quantizer == QUANTIZER_VQ ? 1.0 + m->spec.commitment_cost : m->spec.commitment_cost;
    sm.vq_loss = weight * sums[1] / n;
    sm.loss = sm.nmse + sm.vq_loss;
    int used = 0;
    for (int j = 0; j < k; j++) {
        t->host_counts[j] = (float)sums[2 + j];
        used += sums[2 + j] > 0.0;
    }
    sm.perplexity = perplexity_from_counts(t->host_counts, k);
    sm.usage = (double)used / k;
    free(sums);
    return sm;
}
