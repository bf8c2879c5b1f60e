// metrics.c: see metrics.h.
#include "metrics.h"

#include <math.h>

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

void metrics_fill_losses(StepMetrics *sm, const ModelSpec *spec, double recon_mse, double latent_mse) {
    sm->recon_mse = recon_mse;
    sm->nmse = recon_mse * spec->recon_weight;
    sm->vq_loss = quantizer_loss(spec, latent_mse);
    sm->loss = sm->nmse + sm->vq_loss;
}
