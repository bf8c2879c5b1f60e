// vqvae.c: the resnet VQ-VAE: registry, buffers, forward and backward (see vqvae.h).
// Forward and backward of each block sit side by side.
#include "vqvae.h"

#include <stdio.h>
#include <string.h>

#include "../core/common.h"

#define NO_BIAS SIZE_MAX

// ---- building ------------------------------------------------------------------------------

// Layers are registered by key before offsets exist; their offsets are resolved after
// param_registry_finalize from these pending records.
typedef struct {
    ConvLayer *layer;
    char prefix[PARAM_KEY_MAX];
} PendingConv;

typedef struct {
    PendingConv items[64];
    int count;
} PendingConvs;

static void register_conv(Model *m, PendingConvs *pending, ConvLayer *layer, const char *prefix, ConvShape shape) {
    layer->shape = shape;
    int k = shape.kernel;
    char key[PARAM_KEY_MAX];
    int weight_shape[4];
    int fan_in;
    if (shape.transposed) {
        // ConvTranspose2d weight [in, out, k, k]; PyTorch's fan_in is size(1) * k * k.
        weight_shape[0] = shape.in_channels;
        weight_shape[1] = shape.out_channels;
        fan_in = shape.out_channels * k * k;
    } else {
        weight_shape[0] = shape.out_channels;
        weight_shape[1] = shape.in_channels;
        fan_in = shape.in_channels * k * k;
    }
    weight_shape[2] = k;
    weight_shape[3] = k;
    snprintf(key, sizeof key, "%s.weight", prefix);
    param_registry_add(&m->registry, key, 1, INIT_KAIMING_UNIFORM, fan_in, 4, weight_shape);
    if (shape.has_bias) {
        int bias_shape[1] = {shape.out_channels};
        snprintf(key, sizeof key, "%s.bias", prefix);
        param_registry_add(&m->registry, key, 1, INIT_BIAS_UNIFORM, fan_in, 1, bias_shape);
    }
    CHECK(pending->count < 64, "too many conv layers");
    pending->items[pending->count].layer = layer;
    copy_string(pending->items[pending->count].prefix, PARAM_KEY_MAX, prefix);
    pending->count++;
}

static size_t offset_of(const Model *m, const char *key) {
    const ParamEntry *e = param_registry_find(&m->registry, key);
    CHECK(e != NULL, "parameter '%s' missing from the registry", key);
    return e->offset;
}

static void resolve_convs(Model *m, const PendingConvs *pending) {
    char key[PARAM_KEY_MAX + 8];
    for (int i = 0; i < pending->count; i++) {
        ConvLayer *layer = pending->items[i].layer;
        snprintf(key, sizeof key, "%s.weight", pending->items[i].prefix);
        layer->weight = offset_of(m, key);
        layer->bias = NO_BIAS;
        if (layer->shape.has_bias) {
            snprintf(key, sizeof key, "%s.bias", pending->items[i].prefix);
            layer->bias = offset_of(m, key);
        }
    }
}

// Registers a residual stack operating on [batch, h, size, size] activations.
static void register_stack(Model *m, PendingConvs *pending, ResidualStack *stack, const char *prefix, int size) {
    stack->layers = m->residual_layers;
    char name[PARAM_KEY_MAX];
    for (int i = 0; i < stack->layers; i++) {
        snprintf(name, sizeof name, "%s._residual_stack._layers.%d._block.1", prefix, i);
        register_conv(m, pending, &stack->conv3x3[i], name,
                      conv_shape(m->batch, m->hiddens, size, size, m->residual_hiddens, 3, 1, 1, 0, 0));
        snprintf(name, sizeof name, "%s._residual_stack._layers.%d._block.3", prefix, i);
        register_conv(m, pending, &stack->conv1x1[i], name,
                      conv_shape(m->batch, m->residual_hiddens, size, size, m->hiddens, 1, 1, 0, 0, 0));
    }
}

static float *alloc_floats(Model *m, size_t count) {
    return (float *)m->ctx->ops->alloc(m->ctx, count * sizeof(float));
}

static void alloc_stack(Model *m, ResidualStack *stack, size_t count_h, size_t count_rh) {
    for (int i = 0; i <= stack->layers; i++) stack->sum[i] = alloc_floats(m, count_h);
    for (int i = 0; i < stack->layers; i++) {
        stack->relu_in[i] = alloc_floats(m, count_h);
        stack->relu_mid[i] = alloc_floats(m, count_rh);
    }
    stack->out = alloc_floats(m, count_h);
}

static void free_stack(Model *m, ResidualStack *stack) {
    for (int i = 0; i <= stack->layers; i++) m->ctx->ops->release(m->ctx, stack->sum[i]);
    for (int i = 0; i < stack->layers; i++) {
        m->ctx->ops->release(m->ctx, stack->relu_in[i]);
        m->ctx->ops->release(m->ctx, stack->relu_mid[i]);
    }
    m->ctx->ops->release(m->ctx, stack->out);
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

void model_build(Model *m, const Config *cfg, OpsContext *ctx, int channels, int height, int width, int batch,
                 float data_variance) {
    memset(m, 0, sizeof *m);
    CHECK(strcmp(cfg->arch, "resnet") == 0, "model.arch '%s' is not built yet; use resnet", cfg->arch);
    CHECK(cfg->num_residual_layers <= MAX_RESIDUAL_LAYERS, "model.num_residual_layers %d exceeds %d",
          cfg->num_residual_layers, MAX_RESIDUAL_LAYERS);
    CHECK(height % 4 == 0 && width % 4 == 0,
          "images are %dx%d, but the resnet VQ-VAE halves the size twice: height and width must be multiples of 4",
          height, width);
    m->ctx = ctx;
    m->in_channels = channels;
    m->height = height;
    m->width = width;
    m->batch = batch;
    m->hiddens = cfg->num_hiddens;
    m->residual_hiddens = cfg->num_residual_hiddens;
    m->residual_layers = cfg->num_residual_layers;
    m->num_embeddings = cfg->num_embeddings;
    m->embedding_dim = cfg->embedding_dim;
    m->quantizer = strcmp(cfg->quantizer, "ema") == 0 ? QUANTIZER_EMA : QUANTIZER_VQ;
    m->commitment_cost = cfg->commitment_cost;
    m->decay = cfg->decay;
    m->epsilon = cfg->epsilon;
    m->data_variance = data_variance;

    int h = m->hiddens, half = m->hiddens / 2, d = m->embedding_dim, k = m->num_embeddings;
    int h1 = height / 2, w1 = width / 2, h2 = height / 4, w2 = width / 4;
    CHECK(width == height, "non-square images (%dx%d) are not supported yet", height, width);
    m->latent_height = h2;
    m->latent_width = w2;

    // Registration follows the notebook's state_dict order.
    PendingConvs pending = {.count = 0};
    param_registry_init(&m->registry);
    register_conv(m, &pending, &m->enc_conv1, "_encoder._conv_1",
                  conv_shape(batch, channels, height, width, half, 4, 2, 1, 0, 1));
    register_conv(m, &pending, &m->enc_conv2, "_encoder._conv_2", conv_shape(batch, half, h1, w1, h, 4, 2, 1, 0, 1));
    register_conv(m, &pending, &m->enc_conv3, "_encoder._conv_3", conv_shape(batch, h, h2, w2, h, 3, 1, 1, 0, 1));
    register_stack(m, &pending, &m->enc_stack, "_encoder", h2);
    register_conv(m, &pending, &m->pre_vq, "_pre_vq_conv", conv_shape(batch, h, h2, w2, d, 1, 1, 0, 0, 1));
    int codebook_shape[2] = {k, d};
    int vq = m->quantizer == QUANTIZER_VQ;
    param_registry_add(&m->registry, "_vq_vae._embedding.weight", vq, INIT_CODEBOOK, 0, 2, codebook_shape);
    if (!vq) {
        int size_shape[1] = {k};
        param_registry_add(&m->registry, "_vq_vae._ema_cluster_size", 0, INIT_CODEBOOK, 0, 1, size_shape);
        param_registry_add(&m->registry, "_vq_vae._ema_w", 0, INIT_CODEBOOK, 0, 2, codebook_shape);
    }
    register_conv(m, &pending, &m->dec_conv1, "_decoder._conv_1", conv_shape(batch, d, h2, w2, h, 3, 1, 1, 0, 1));
    register_stack(m, &pending, &m->dec_stack, "_decoder", h2);
    register_conv(m, &pending, &m->dec_convt1, "_decoder._conv_trans_1",
                  conv_shape(batch, h, h2, w2, half, 4, 2, 1, 1, 1));
    register_conv(m, &pending, &m->dec_convt2, "_decoder._conv_trans_2",
                  conv_shape(batch, half, h1, w1, channels, 4, 2, 1, 1, 1));
    param_registry_finalize(&m->registry);
    resolve_convs(m, &pending);
    m->codebook = offset_of(m, "_vq_vae._embedding.weight");
    if (!vq) {
        m->ema_cluster_size = offset_of(m, "_vq_vae._ema_cluster_size");
        m->ema_w = offset_of(m, "_vq_vae._ema_w");
    }

    // Algorithms and workspace, once.
    size_t workspace = 0;
    for (int i = 0; i < pending.count; i++)
        workspace = max_size(workspace, ctx->ops->conv_prepare(ctx, &pending.items[i].layer->shape));
    int latents = model_latent_count(m);
    workspace = max_size(workspace, ctx->ops->vq_workspace_bytes(ctx, latents, k, d));
    ctx->ops->reserve_workspace(ctx, workspace);

    // Flat parameter, gradient and optimizer buffers.
    m->params = alloc_floats(m, m->registry.total_count);
    // One slot past the gradients carries the trainer's "local loss not finite" flag through the
    // gradient all-reduce (see trainer_compute_gradients).
    m->grads = alloc_floats(m, m->registry.trainable_count + 1);
    m->adam_m = alloc_floats(m, m->registry.trainable_count);
    m->adam_v = alloc_floats(m, m->registry.trainable_count);

    // Activations.
    size_t n_input = (size_t)batch * channels * height * width;
    size_t n_half = (size_t)batch * half * h1 * w1;
    size_t n_hidden = (size_t)batch * h * h2 * w2;
    size_t n_residual = (size_t)batch * m->residual_hiddens * h2 * w2;
    size_t n_latent = (size_t)latents * d;
    m->input = alloc_floats(m, n_input);
    m->enc_relu1 = alloc_floats(m, n_half);
    m->enc_relu2 = alloc_floats(m, n_hidden);
    alloc_stack(m, &m->enc_stack, n_hidden, n_residual);
    m->z = alloc_floats(m, n_latent);
    m->z_flat = alloc_floats(m, n_latent);
    m->codes = (int32_t *)ctx->ops->alloc(ctx, (size_t)latents * sizeof(int32_t));
    m->q_flat = alloc_floats(m, n_latent);
    m->quantized = alloc_floats(m, n_latent);
    alloc_stack(m, &m->dec_stack, n_hidden, n_residual);
    m->dec_relu1 = alloc_floats(m, n_half);
    m->recon = alloc_floats(m, n_input);
    m->code_stats = alloc_floats(m, (size_t)k + (size_t)k * d);
    m->scalars = alloc_floats(m, SCALAR_COUNT);
    size_t n_scratch = max_size(max_size(n_input, n_half), max_size(max_size(n_hidden, n_residual), n_latent));
    m->grad_a = alloc_floats(m, n_scratch);
    m->grad_b = alloc_floats(m, n_scratch);
    m->grad_c = alloc_floats(m, n_scratch);
}

void model_free(Model *m) {
    OpsContext *ctx = m->ctx;
    if (!ctx) return;
    void *buffers[] = {m->params,    m->grads,    m->adam_m,    m->adam_v,     m->input,   m->enc_relu1,
                       m->enc_relu2, m->z,        m->z_flat,    m->codes,      m->q_flat,  m->quantized,
                       m->dec_relu1, m->recon,    m->code_stats, m->scalars,   m->grad_a,  m->grad_b,
                       m->grad_c};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) ctx->ops->release(ctx, buffers[i]);
    free_stack(m, &m->enc_stack);
    free_stack(m, &m->dec_stack);
    memset(m, 0, sizeof *m);
}

float *model_param(Model *m, size_t offset) { return m->params + offset; }

int model_latent_count(const Model *m) { return m->batch * m->latent_height * m->latent_width; }

size_t model_input_count(const Model *m) {
    return (size_t)m->batch * m->in_channels * m->height * m->width;
}

// ---- layers: forward and backward side by side -----------------------------------------------

static void conv_forward(Model *m, const ConvLayer *layer, const float *in, float *out) {
    const float *bias = layer->bias == NO_BIAS ? NULL : m->params + layer->bias;
    m->ctx->ops->conv_forward(m->ctx, &layer->shape, in, m->params + layer->weight, bias, out);
}

static void conv_backward(Model *m, const ConvLayer *layer, const float *in, const float *dout, float *din) {
    float *dbias = layer->bias == NO_BIAS ? NULL : m->grads + layer->bias;
    m->ctx->ops->conv_backward(m->ctx, &layer->shape, in, m->params + layer->weight, dout, din,
                               m->grads + layer->weight, dbias);
}

static size_t hidden_count(const Model *m) {
    return (size_t)m->batch * m->hiddens * m->latent_height * m->latent_width;
}

static size_t residual_count(const Model *m) {
    return (size_t)m->batch * m->residual_hiddens * m->latent_height * m->latent_width;
}

// s_{i+1} = s_i + Conv1x1(ReLU(Conv3x3(ReLU(s_i)))); out = ReLU(s_L). Expects sum[0] filled.
static void stack_forward(Model *m, ResidualStack *st) {
    const Ops *ops = m->ctx->ops;
    size_t nh = hidden_count(m), nr = residual_count(m);
    for (int i = 0; i < st->layers; i++) {
        ops->relu_forward(m->ctx, st->sum[i], st->relu_in[i], nh);
        conv_forward(m, &st->conv3x3[i], st->relu_in[i], st->relu_mid[i]);
        ops->relu_forward(m->ctx, st->relu_mid[i], st->relu_mid[i], nr);
        conv_forward(m, &st->conv1x1[i], st->relu_mid[i], st->sum[i + 1]);
        ops->add(m->ctx, st->sum[i + 1], st->sum[i], st->sum[i + 1], nh);
    }
    ops->relu_forward(m->ctx, st->sum[st->layers], st->out, nh);
}

// On entry *dout holds d(out); on return it holds d(sum[0]). scratch_r holds residual-width
// gradients, scratch_h hidden-width ones.
static void stack_backward(Model *m, ResidualStack *st, float *dout, float *scratch_r, float *scratch_h) {
    const Ops *ops = m->ctx->ops;
    size_t nh = hidden_count(m), nr = residual_count(m);
    ops->relu_backward(m->ctx, st->out, dout, dout, nh);   // now d(sum[L])
    for (int i = st->layers - 1; i >= 0; i--) {
        // the skip passes d(sum[i+1]) straight to d(sum[i]); the block adds its own part
        conv_backward(m, &st->conv1x1[i], st->relu_mid[i], dout, scratch_r);
        ops->relu_backward(m->ctx, st->relu_mid[i], scratch_r, scratch_r, nr);
        conv_backward(m, &st->conv3x3[i], st->relu_in[i], scratch_r, scratch_h);
        ops->relu_backward(m->ctx, st->relu_in[i], scratch_h, scratch_h, nh);
        ops->add(m->ctx, dout, scratch_h, dout, nh);
    }
}

// ---- the model -------------------------------------------------------------------------------

static size_t half_count(const Model *m) {
    return (size_t)m->batch * (m->hiddens / 2) * (m->height / 2) * (m->width / 2);
}

static size_t latent_elems(const Model *m) { return (size_t)model_latent_count(m) * m->embedding_dim; }

void model_encode(Model *m) {
    const Ops *ops = m->ctx->ops;
    OpsContext *ctx = m->ctx;
    conv_forward(m, &m->enc_conv1, m->input, m->enc_relu1);
    ops->relu_forward(ctx, m->enc_relu1, m->enc_relu1, half_count(m));
    conv_forward(m, &m->enc_conv2, m->enc_relu1, m->enc_relu2);
    ops->relu_forward(ctx, m->enc_relu2, m->enc_relu2, hidden_count(m));
    conv_forward(m, &m->enc_conv3, m->enc_relu2, m->enc_stack.sum[0]);
    stack_forward(m, &m->enc_stack);
    conv_forward(m, &m->pre_vq, m->enc_stack.out, m->z);
    ops->nchw_to_nhwc(ctx, m->z, m->z_flat, m->batch, m->embedding_dim, m->latent_height * m->latent_width);
}

void model_forward(Model *m) {
    const Ops *ops = m->ctx->ops;
    OpsContext *ctx = m->ctx;
    int latents = model_latent_count(m), k = m->num_embeddings, d = m->embedding_dim;
    int hw = m->latent_height * m->latent_width;
    const float *codebook = m->params + m->codebook;

    model_encode(m);
    ops->vq_nearest(ctx, m->z_flat, codebook, latents, k, d, m->codes);
    ops->vq_gather(ctx, codebook, m->codes, latents, d, m->q_flat);
    ops->nhwc_to_nchw(ctx, m->q_flat, m->quantized, m->batch, d, hw);
    ops->vq_code_stats(ctx, m->z_flat, m->codes, latents, k, d, m->code_stats, m->code_stats + k);
    ops->mse_forward(ctx, m->quantized, m->z, latent_elems(m), m->scalars + SCALAR_LATENT_MSE);

    conv_forward(m, &m->dec_conv1, m->quantized, m->dec_stack.sum[0]);
    stack_forward(m, &m->dec_stack);
    conv_forward(m, &m->dec_convt1, m->dec_stack.out, m->dec_relu1);
    ops->relu_forward(ctx, m->dec_relu1, m->dec_relu1, half_count(m));
    conv_forward(m, &m->dec_convt2, m->dec_relu1, m->recon);
    ops->mse_forward(ctx, m->recon, m->input, model_input_count(m), m->scalars + SCALAR_RECON_MSE);
}

void model_backward(Model *m) {
    const Ops *ops = m->ctx->ops;
    OpsContext *ctx = m->ctx;
    int latents = model_latent_count(m), k = m->num_embeddings, d = m->embedding_dim;
    float *ga = m->grad_a, *gb = m->grad_b, *gc = m->grad_c;

    // loss = mse(x_hat, x) / variance + quantizer loss
    ops->mse_backward(ctx, m->recon, m->input, model_input_count(m), 1.0f / m->data_variance, 0, ga);
    conv_backward(m, &m->dec_convt2, m->dec_relu1, ga, gb);
    ops->relu_backward(ctx, m->dec_relu1, gb, gb, half_count(m));
    conv_backward(m, &m->dec_convt1, m->dec_stack.out, gb, ga);
    stack_backward(m, &m->dec_stack, ga, gb, gc);
    conv_backward(m, &m->dec_conv1, m->quantized, ga, gb);   // gb = d(quantized)

    // Straight-through: the decoder's gradient passes to z unchanged, plus the commitment loss
    // beta * mse(z, sg(q)).
    ops->mse_backward(ctx, m->z, m->quantized, latent_elems(m), m->commitment_cost, 1, gb);
    if (m->quantizer == QUANTIZER_VQ) {
        // codebook loss mse(sg(z), e): d e_j = 2/(M D) (count_j e_j - sum of z assigned to j)
        float scale = 2.0f / ((float)latents * (float)d);
        ops->vq_codebook_grad(ctx, m->params + m->codebook, m->code_stats, m->code_stats + k, k, d, scale,
                              m->grads + m->codebook);
    }
    conv_backward(m, &m->pre_vq, m->enc_stack.out, gb, ga);
    stack_backward(m, &m->enc_stack, ga, gb, gc);
    conv_backward(m, &m->enc_conv3, m->enc_relu2, ga, gb);
    ops->relu_backward(ctx, m->enc_relu2, gb, gb, hidden_count(m));
    conv_backward(m, &m->enc_conv2, m->enc_relu1, gb, ga);
    ops->relu_backward(ctx, m->enc_relu1, ga, ga, half_count(m));
    conv_backward(m, &m->enc_conv1, m->input, ga, NULL);
}

void model_ema_update(Model *m, const StepState *state) {
    CHECK(m->quantizer == QUANTIZER_EMA, "EMA update on a vq quantizer");
    int k = m->num_embeddings;
    m->ctx->ops->ema_update(m->ctx, m->params + m->ema_cluster_size, m->params + m->ema_w, m->params + m->codebook,
                            m->code_stats, m->code_stats + k, k, m->embedding_dim, m->decay, m->epsilon,
                            state);
}
