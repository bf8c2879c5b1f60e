// model_spec.c: see model_spec.h.
#include "model_spec.h"

#include <string.h>

#include "../core/common.h"

static CodebookInit codebook_init_of(const Config *cfg) {
    if (strcmp(cfg->codebook_init, "uniform") == 0) return CODEBOOK_INIT_UNIFORM;
    if (strcmp(cfg->codebook_init, "normal") == 0) return CODEBOOK_INIT_NORMAL;
    if (strcmp(cfg->codebook_init, "data") == 0) return CODEBOOK_INIT_DATA;
    if (strcmp(cfg->codebook_init, "kmeans") == 0) return CODEBOOK_INIT_KMEANS;
    // auto: the notebook's EMA init collapses onto a few codes for hundreds of steps (DESIGN §2)
    return strcmp(cfg->quantizer, "ema") == 0 ? CODEBOOK_INIT_DATA : CODEBOOK_INIT_UNIFORM;
}

int model_spec_from_config(const Config *cfg, int channels, int height, int width, double variance, ModelSpec *spec,
                           char *err, size_t err_len) {
    memset(spec, 0, sizeof *spec);
    if (strcmp(cfg->arch, "resnet") != 0)
        return set_error(err, err_len, "model.arch '%s' is not built; use resnet", cfg->arch);
    if (height != width)
        return set_error(err, err_len, "the images are %dx%d, but model.arch resnet needs square images", height, width);
    if (height % 4 != 0)
        return set_error(err, err_len, "the images are %dx%d, but the resnet VQ-VAE halves the size twice: height and "
                         "width must be multiples of 4 (data.image_size for synthetic data)", height, width);
    if (cfg->num_hiddens % 2 != 0)
        return set_error(err, err_len, "model.num_hiddens is %d; it must be even (the first conv has half as many "
                         "channels)", cfg->num_hiddens);
    if (!(variance > 0.0))
        return set_error(err, err_len, "the training images have variance %g; the loss divides by it, so the data "
                         "must not be constant", variance);
    spec->arch = ARCH_RESNET;
    spec->batch = cfg->batch_size;
    spec->in_channels = channels;
    spec->height = height;
    spec->width = width;
    spec->hiddens = cfg->num_hiddens;
    spec->residual_hiddens = cfg->num_residual_hiddens;
    spec->residual_layers = cfg->num_residual_layers;
    spec->quantizer = strcmp(cfg->quantizer, "ema") == 0 ? QUANTIZER_EMA : QUANTIZER_VQ;
    spec->num_embeddings = cfg->num_embeddings;
    spec->embedding_dim = cfg->embedding_dim;
    spec->commitment_cost = cfg->commitment_cost;
    spec->decay = cfg->decay;
    spec->epsilon = cfg->epsilon;
    spec->codebook_init = codebook_init_of(cfg);
    spec->recon_weight = 1.0f / (float)variance;
    spec->data_variance = variance;   // the notebook's loss: mse / data variance
    return 0;
}
