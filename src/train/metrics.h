// metrics.h: the figures of a logged step or an evaluation, and how they are formed.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "../model/spec.h"

// Already reduced over ranks.
typedef struct {
    double loss;          // VQ-VAE: nmse + vq_loss; VAE: recon_loss + kl_weight * kl
    double recon_mse;     // mean((x_hat - x)^2) per pixel
    double nmse;          // recon_mse * recon_weight (recon_mse / data variance for the resnet)
    double vq_loss;       // quantizer loss (codebook + commitment, or commitment only for ema)
    double recon_loss;    // VAE: recon_weight * squared error summed over a global batch
    double kl;            // VAE: the KLD, -0.5 mean(1 + logvar - mean^2 - exp(logvar))
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
// The loss terms from the two scalars: the reconstruction MSE and the latent loss (VQ-VAE:
// mean((q - z)^2); VAE: the KLD). A VAE's losses are those of a global training batch (train.batch_size
// x ranks images), also in evaluations, so the two are comparable.
void metrics_fill_losses(StepMetrics *sm, const ModelSpec *spec, double recon_mse, double latent_loss);
// An evaluation's figures for the console: "test nmse .. | recon mse .. | vq loss .. | perplexity ..
// | usage .." or, for a VAE, "test loss .. | recon .. | kl .. | recon mse ..".
void metrics_format_eval(const ModelSpec *spec, const StepMetrics *sm, char *buf, size_t len);
