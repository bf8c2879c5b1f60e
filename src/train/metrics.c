// metrics.c: see metrics.h.
#include "metrics.h"

#include <math.h>
#include <stdio.h>

double perplexity_from_counts(const float *counts, int k) {
    double total = 0.0;
    for (int j = 0; j < k; j++) total += counts[j];
    if (total <= 0.0) return 0.0;
    double entropy = 0.0;
    for (int j = 0; j < k; j++) {
        double p = counts[j] / total;
        entropy -= p * log(p + 1e-10);   // the notebook's epsilon
    }
    return exp(entropy);
}

double quantizer_loss(const ModelSpec *spec, double latent_mse) {
    double weight = spec->quantizer == QUANTIZER_VQ ? 1.0 + spec->commitment_cost : spec->commitment_cost;
    return weight * latent_mse;
}

void metrics_fill_losses(StepMetrics *sm, const ModelSpec *spec, double recon_mse, double latent_loss) {
    sm->recon_mse = recon_mse;
    if (spec->type == MODEL_VAE) {
        double pixels = (double)spec->batch * spec->world * spec->in_channels * spec->height * spec->width;
        sm->recon_loss = spec->recon_weight * recon_mse * pixels;
        sm->kl = latent_loss;
        sm->loss = sm->recon_loss + spec->kl_weight * latent_loss;
        return;
    }
    double latent_mse = latent_loss;
    sm->nmse = recon_mse * spec->recon_weight;
    sm->vq_loss = quantizer_loss(spec, latent_mse);
    sm->loss = sm->nmse + sm->vq_loss;
}

void metrics_format_eval(const ModelSpec *spec, const StepMetrics *sm, char *buf, size_t len) {
    if (spec->type == MODEL_VAE)
        snprintf(buf, len, "test loss %.2f | recon %.2f | kl %.4f | recon mse %.6f", sm->loss, sm->recon_loss, sm->kl,
                 sm->recon_mse);
    else
        snprintf(buf, len, "test nmse %.5f | recon mse %.6f | vq loss %.5f | perplexity %.1f | usage %.3f", sm->nmse,
                 sm->recon_mse, sm->vq_loss, sm->perplexity, sm->usage);
}
