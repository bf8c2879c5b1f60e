// model_spec.c: see model_spec.h.
#include "model_spec.h"

#include <string.h>

#include "../core/common.h"
#include "../io/dataset.h"

static CodebookInit codebook_init_of(const Config *cfg) {
    if (strcmp(cfg->codebook_init, "uniform") == 0) return CODEBOOK_INIT_UNIFORM;
    if (strcmp(cfg->codebook_init, "normal") == 0) return CODEBOOK_INIT_NORMAL;
    if (strcmp(cfg->codebook_init, "data") == 0) return CODEBOOK_INIT_DATA;
    if (strcmp(cfg->codebook_init, "kmeans") == 0) return CODEBOOK_INIT_KMEANS;
    // auto: the notebook's EMA init collapses onto a few codes for hundreds of steps (DESIGN §2)
    return strcmp(cfg->quantizer, "ema") == 0 ? CODEBOOK_INIT_DATA : CODEBOOK_INIT_UNIFORM;
}

// ---- the groupnorm arch -------------------------------------------------------------------------

// Every GroupNorm's channels divide by norm_num_groups; every block but the last halves the size.
static int groupnorm_check(const Config *cfg, int height, int width, char *err, size_t err_len) {
    const ConfigIntList *blocks = &cfg->block_out_channels;
    if (blocks->count < 1 || blocks->count > GN_MAX_BLOCKS)
        return set_error(err, err_len, "model.block_out_channels has %d entries; give 1 to %d", blocks->count,
                         GN_MAX_BLOCKS);
    for (int i = 0; i < blocks->count; i++)
        if (blocks->values[i] % cfg->norm_num_groups != 0)
            return set_error(err, err_len, "model.block_out_channels[%d] = %d is not divisible by "
                             "model.norm_num_groups = %d (every GroupNorm splits its channels into that many "
                             "groups); change one of the two", i, blocks->values[i], cfg->norm_num_groups);
    int f = 1 << (blocks->count - 1);
    if (height % f != 0 || width % f != 0)
        return set_error(err, err_len, "the images are %dx%d, but model.block_out_channels has %d blocks, and every "
                         "block but the last halves the size: height and width must be multiples of %d", height,
                         width, blocks->count, f);
    if (cfg->dropout < 0.0f || cfg->dropout >= 1.0f)
        return set_error(err, err_len, "model.dropout is %g; it must be in [0, 1)", cfg->dropout);
    return 0;
}

// The loss is MSE(recon, x) (weight 1, not divided by the variance) + the quantizer loss, as a
// diffusers VQModel is usually trained; the images are in [-1, 1] (data.range auto = symmetric).
static int groupnorm_spec(const Config *cfg, int height, int width, ModelSpec *spec, char *err, size_t err_len) {
    if (groupnorm_check(cfg, height, width, err, err_len) != 0) return -1;
    spec->arch = ARCH_GROUPNORM;
    spec->gn_blocks = cfg->block_out_channels.count;
    for (int i = 0; i < spec->gn_blocks; i++) spec->gn_block_channels[i] = cfg->block_out_channels.values[i];
    spec->gn_layers_per_block = cfg->layers_per_block;
    spec->gn_groups = cfg->norm_num_groups;
    spec->gn_eps = cfg->norm_eps;
    spec->gn_dropout = cfg->dropout;
    spec->gn_mid_attention = cfg->mid_attention;
    spec->gn_latent_channels = cfg->latent_channels ? cfg->latent_channels : cfg->embedding_dim;
    spec->recon_weight = 1.0f;
    return 0;
}

// ---- the small arch ------------------------------------------------------------------------------

// Two k3 s2 p1 convs quarter the size and the k7 conv needs at least 7x7 left; the decoder's
// output_padding 1 gives back exactly 4x, so the size must be a multiple of 4. The groups are
// derived: latent channels (model.channels[2]) / model.embedding_dim.
static int small_spec(const Config *cfg, int height, int width, ModelSpec *spec, char *err, size_t err_len) {
    const ConfigIntList *ch = &cfg->channels;
    if (ch->count != 3)
        return set_error(err, err_len, "model.channels has %d entries; model.arch small needs the three encoder "
                         "conv widths, e.g. [16, 32, 64]", ch->count);
    if (height % 4 != 0 || width % 4 != 0 || height < 28 || width < 28)
        return set_error(err, err_len, "the images are %dx%d, but model.arch small needs height and width "
                         "multiples of 4 and at least 28 (two stride-2 convs, then a 7x7 conv)", height, width);
    if (ch->values[2] % cfg->embedding_dim != 0)
        return set_error(err, err_len, "model.channels[2] = %d latent channels are not a multiple of "
                         "model.embedding_dim = %d (every latent position holds channels / embedding_dim code "
                         "vectors); change one of the two", ch->values[2], cfg->embedding_dim);
    if (cfg->in_channels != 0 && cfg->in_channels != spec->in_channels)
        return set_error(err, err_len, "model.in_channels is %d, but the images have %d channels; set it to 0 (the "
                         "data's) or to %d", cfg->in_channels, spec->in_channels, spec->in_channels);
    spec->arch = ARCH_SMALL;
    for (int i = 0; i < 3; i++) spec->small_channels[i] = ch->values[i];
    spec->groups = ch->values[2] / cfg->embedding_dim;
    spec->recon_weight = 1.0f;   // the blog's loss: plain MSE(recon, x) + the quantizer loss
    return 0;
}

// model.type vae: the small encoder must reach 1x1 (the linears read its 64 channels), so the
// images are 28x28 with the default convs; nothing of the quantizer applies.
static int vae_spec(const Config *cfg, int height, int width, ModelSpec *spec, char *err, size_t err_len) {
    if (strcmp(cfg->arch, "small") != 0)
        return set_error(err, err_len, "model.type vae is built on model.arch small (the blog's Gaussian VAE), not "
                         "'%s'; set model.arch: small", cfg->arch);
    if (small_spec(cfg, height, width, spec, err, err_len) != 0) return -1;
    if (height != 28 || width != 28)
        return set_error(err, err_len, "the images are %dx%d, but model.type vae needs 28x28 images (its encoder "
                         "must reach 1x1 before the linears)", height, width);
    if (cfg->pretrain_steps > 0 || cfg->dead_code_threshold > 0 || strcmp(cfg->codebook_init, "data") == 0 ||
        strcmp(cfg->codebook_init, "kmeans") == 0)
        return set_error(err, err_len, "model.type vae has no codebook: train.pretrain_steps, "
                         "quantizer.dead_code_threshold and quantizer.init data|kmeans do not apply; remove them");
    spec->type = MODEL_VAE;
    spec->groups = 1;
    spec->codebook_init = CODEBOOK_INIT_UNIFORM;   // no codebook: nothing waits for data
    spec->vae_latent_dim = cfg->vae_latent_dim;
    spec->kl_weight = cfg->vae_kl_weight;
    spec->recon_weight = cfg->vae_recon_weight;
    return 0;
}

const char *model_data_range(const Config *cfg) { return dataset_range_name(dataset_range_of(cfg)); }

// ---- every arch ---------------------------------------------------------------------------------

// The quantizer and the fields every arch shares.
static void common_spec(const Config *cfg, int channels, int height, int width, double variance, ModelSpec *spec) {
    spec->batch = cfg->batch_size;
    spec->in_channels = channels;
    spec->height = height;
    spec->width = width;
    spec->quantizer = strcmp(cfg->quantizer, "ema") == 0 ? QUANTIZER_EMA : QUANTIZER_VQ;
    spec->num_embeddings = cfg->num_embeddings;
    spec->embedding_dim = cfg->embedding_dim;
    spec->groups = 1;
    spec->commitment_cost = cfg->commitment_cost;
    spec->decay = cfg->decay;
    spec->epsilon = cfg->epsilon;
    spec->codebook_init = codebook_init_of(cfg);
    spec->data_variance = variance;
    spec->world = 1;   // session_open sets the real world size
}

int model_spec_from_config(const Config *cfg, int channels, int height, int width, double variance, ModelSpec *spec,
                           char *err, size_t err_len) {
    memset(spec, 0, sizeof *spec);
    if (strcmp(cfg->arch, "groupnorm") == 0 && strcmp(cfg->model_type, "vqvae") == 0) {
        common_spec(cfg, channels, height, width, variance, spec);
        return groupnorm_spec(cfg, height, width, spec, err, err_len);
    }
    if (strcmp(cfg->arch, "small") == 0 && strcmp(cfg->model_type, "vqvae") == 0) {
        common_spec(cfg, channels, height, width, variance, spec);
        return small_spec(cfg, height, width, spec, err, err_len);
    }
    if (strcmp(cfg->model_type, "vae") == 0) {
        common_spec(cfg, channels, height, width, variance, spec);
        return vae_spec(cfg, height, width, spec, err, err_len);
    }
    if (strcmp(cfg->arch, "resnet") != 0)
        return set_error(err, err_len, "model.arch '%s' (model.type %s) is not built; use resnet, small or groupnorm",
                         cfg->arch, cfg->model_type);
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
    common_spec(cfg, channels, height, width, variance, spec);
    spec->arch = ARCH_RESNET;
    spec->hiddens = cfg->num_hiddens;
    spec->residual_hiddens = cfg->num_residual_hiddens;
    spec->residual_layers = cfg->num_residual_layers;
    spec->recon_weight = 1.0f / (float)variance;   // the notebook's loss: mse / data variance
    return 0;
}
