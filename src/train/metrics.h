// metrics.h: the figures of a logged step or an evaluation, and how they are formed.
#pragma once
#include <stdint.h>

#include "../model/spec.h"

// Already reduced over ranks.
typedef struct {
    double loss;          // recon_weight * recon_mse + quantizer loss
    double recon_mse;
    double nmse;          // recon_mse * recon_weight (recon_mse / data variance for the resnet)
    double vq_loss;       // quantizer loss (codebook + commitment, or commitment only for ema)
    double perplexity;    // exp(entropy of the global code histogram)
    double usage;         // fraction of codes used (log: over the last log.usage_window steps)
    double grad_norm;     // L2 norm of the averaged gradient (training only)
    int64_t images;       // images evaluated (evaluation only)
    int dead_codes;       // codes unused (log: over the last log.usage_window steps)
    int64_t restarts;     // dead-code restarts so far (training only)
} StepMetrics;

double perplexity_from_counts(const float *counts, int k);
// vq: codebook loss + beta * commitment loss, both equal to mean((q - z)^2) in value; ema: the
// commitment loss only.
double quantizer_loss(const ModelSpec *spec, double latent_mse);
// recon, nmse, vq_loss and loss from the two mean squared errors.
void metrics_fill_losses(StepMetrics *sm, const ModelSpec *spec, double recon_mse, double latent_mse);
