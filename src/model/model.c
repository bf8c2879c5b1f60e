// model.c: building a model from its spec (the arch's builder, then the loss), its flat buffers,
// and running it (see model.h).
#include "model.h"

#include <string.h>

#include "../core/common.h"
#include "layers.h"

// The arch builders, picked once by the spec's arch.
typedef void (*ArchBuilder)(Model *m);
static const ArchBuilder BUILDERS[] = {
    [ARCH_RESNET] = arch_resnet_build, [ARCH_SMALL] = arch_small_build, [ARCH_GROUPNORM] = arch_groupnorm_build};

static float *alloc_floats(Model *m, size_t count) {
    return (float *)m->ctx->ops->alloc(m->ctx, count * sizeof(float));
}

int model_add_quantizer(Model *m, int z, const char *codebook_key, const char *ema_size_key, const char *ema_w_key) {
    const ModelSpec *sp = &m->spec;
    CHECK(m->quant_layer < 0, "the model already has a quantizer");
    int k = sp->num_embeddings, d = sp->embedding_dim;
    int vq = sp->quantizer == QUANTIZER_VQ;
    int codebook_shape[2] = {k, d}, size_shape[1] = {k};
    param_registry_add(&m->registry, codebook_key, vq, INIT_CODEBOOK, 0, 2, codebook_shape);
    m->codebook_entry = net_param_index(&m->registry, codebook_key);
    if (!vq) {
        param_registry_add(&m->registry, ema_size_key, 0, INIT_EMA_CLUSTER_SIZE, 0, 1, size_shape);
        param_registry_add(&m->registry, ema_w_key, 0, INIT_EMA_W, 0, 2, codebook_shape);
        m->ema_size_entry = net_param_index(&m->registry, ema_size_key);
        m->ema_w_entry = net_param_index(&m->registry, ema_w_key);
    }
    CHECK(m->net.slots[z].dims[1] == d * (sp->groups > 0 ? sp->groups : 1), "the quantizer's input has %d "
          "channels, the codebook %d dims and %d groups", m->net.slots[z].dims[1], d, sp->groups);
    int q = build_quantize(&m->net, "quantizer", z, m->codebook_entry, k, d, sp->commitment_cost, vq, m->scalars_slot,
                           SCALAR_LATENT_LOSS);
    m->quant_layer = m->net.layer_count - 1;
    return q;
}

static float *entry_values(Model *m, int entry) {
    return entry < 0 ? NULL : m->params + m->registry.entries[entry].offset;
}

// The mse layer's weight on the gradient of mean((x_hat - x)^2) over this rank's n elements. The
// VAE's loss is the squared error summed over the global batch; the gradients are averaged over
// the W ranks, so each rank weights its own sum by W: W n recon_weight.
static float recon_loss_weight(const Model *m) {
    const ModelSpec *sp = &m->spec;
    if (sp->type != MODEL_VAE) return sp->recon_weight;
    return (float)((double)sp->recon_weight * (double)(sp->world > 0 ? sp->world : 1) * (double)model_input_count(m));
}

// After net_finalize: where the trainer finds the step's tensors.
static void locate_tensors(Model *m) {
    Net *net = &m->net;
    m->input = net->slots[m->input_slot].data;
    m->recon = net->slots[m->recon_slot].data;
    m->scalars = net->slots[m->scalars_slot].data;
    if (m->reparam_layer >= 0) {
        const Layer *r = &net->layers[m->reparam_layer];
        m->vae_mean = r->x[0];
        m->vae_logvar = r->x[1];
        m->vae_z = r->y;
    }
    if (!model_has_codebook(m)) return;
    int codes, z_flat, stats;
    quantize_aux_slots(net, m->quant_layer, &codes, &z_flat, &stats);
    m->codes = net->slots[codes].data;
    m->z_flat = net->slots[z_flat].data;
    m->code_stats = net->slots[stats].data;
    m->codebook = entry_values(m, m->codebook_entry);
    m->ema_cluster_size = entry_values(m, m->ema_size_entry);
    m->ema_w = entry_values(m, m->ema_w_entry);
}

void model_build(Model *m, const ModelSpec *spec, OpsContext *ctx) {
    memset(m, 0, sizeof *m);
    m->spec = *spec;
    m->ctx = ctx;
    m->quant_layer = m->recon_slot = m->kl_layer = m->reparam_layer = -1;
    m->codebook_entry = m->ema_size_entry = m->ema_w_entry = -1;
    param_registry_init(&m->registry);
    Net *net = &m->net;
    net_init(net, ctx, &m->registry);
    int input_dims[4] = {spec->batch, spec->in_channels, spec->height, spec->width}, scalar_dims[1] = {SCALAR_COUNT};
    m->input_slot = net_slot(net, "input", SLOT_F32, 0, 4, input_dims);
    m->scalars_slot = net_slot(net, "scalars", SLOT_F32, 0, 1, scalar_dims);

    CHECK((size_t)spec->arch < sizeof BUILDERS / sizeof BUILDERS[0] && BUILDERS[spec->arch], "no builder for arch %d",
          (int)spec->arch);
    int vae = spec->type == MODEL_VAE;
    if (vae) arch_small_vae_build(m);
    else BUILDERS[spec->arch](m);
    CHECK(m->recon_slot >= 0 && (vae ? m->reparam_layer >= 0 : m->quant_layer >= 0),
          "the arch builder set no reconstruction, or no %s", vae ? "reparameterization" : "quantizer");
    build_mse_loss(net, "recon_loss", m->recon_slot, m->input_slot, recon_loss_weight(m), m->scalars_slot,
                   SCALAR_RECON_MSE);
    param_registry_finalize(&m->registry);

    m->params = alloc_floats(m, m->registry.total_count);
    // One slot past the gradients carries the trainer's "local loss not finite" flag through the
    // gradient all-reduce (see trainer_compute_gradients).
    m->grads = alloc_floats(m, m->registry.trainable_count + 1);
    m->adam_m = alloc_floats(m, m->registry.trainable_count);
    m->adam_v = alloc_floats(m, m->registry.trainable_count);
    net_finalize(net, m->params, m->grads);
    locate_tensors(m);
}

void model_free(Model *m) {
    OpsContext *ctx = m->ctx;
    if (!ctx) return;
    void *buffers[] = {m->params, m->grads, m->adam_m, m->adam_v};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) ctx->ops->release(ctx, buffers[i]);
    net_free(&m->net);
    memset(m, 0, sizeof *m);
}

int model_latent_count(const Model *m) {
    return model_has_codebook(m) ? m->net.layers[m->quant_layer].quant.m : m->spec.batch;
}

size_t model_input_count(const Model *m) {
    return (size_t)m->spec.batch * m->spec.in_channels * m->spec.height * m->spec.width;
}

void model_forward(Model *m) { net_forward_range(&m->net, 0, m->net.layer_count); }

void model_backward(Model *m) { net_backward(&m->net); }

void model_encode(Model *m) {
    CHECK(model_has_codebook(m), "model_encode: a VAE has no quantizer input (use model_encode_latent)");
    net_forward_range(&m->net, 0, m->quant_layer);
    quantize_flatten(&m->net, &m->net.layers[m->quant_layer]);
}

void model_set_quantizer_bypass(Model *m, int bypass) {
    if (model_has_codebook(m)) m->net.layers[m->quant_layer].quant.bypass = bypass;
}

void model_restrict_metrics(Model *m, int n) {
    CHECK(n >= 0 && n <= m->spec.batch, "model_restrict_metrics: %d images of a batch of %d", n, m->spec.batch);
    const Ops *ops = m->ctx->ops;
    size_t image = model_input_count(m) / (size_t)m->spec.batch;
    if (!model_has_codebook(m)) {
        size_t latents = (size_t)n * (size_t)m->spec.vae_latent_dim;
        ops->mse_forward(m->ctx, m->recon, m->input, (size_t)n * image, m->scalars + SCALAR_RECON_MSE);
        ops->kl_forward(m->ctx, m->vae_mean, m->vae_logvar, latents, m->scalars + SCALAR_LATENT_LOSS);
        ops->scale(m->ctx, m->scalars + SCALAR_LATENT_LOSS, latents ? 1.0f / (float)latents : 0.0f, 1);
        return;
    }
    const Layer *q = &m->net.layers[m->quant_layer];
    size_t latents = (size_t)model_latent_count(m) / (size_t)m->spec.batch;   // per image
    size_t d = (size_t)m->spec.embedding_dim;
    int k = m->spec.num_embeddings;
    ops->mse_forward(m->ctx, m->recon, m->input, (size_t)n * image, m->scalars + SCALAR_RECON_MSE);
    ops->mse_forward(m->ctx, q->y, q->x[0], (size_t)n * latents * d, m->scalars + SCALAR_LATENT_LOSS);
    ops->vq_code_stats(m->ctx, m->z_flat, m->codes, n * (int)latents, k, (int)d, m->code_stats, m->code_stats + k);
}

void model_ema_update(Model *m, const StepState *state) {
    CHECK(m->spec.quantizer == QUANTIZER_EMA, "EMA update on a vq quantizer");
    int k = m->spec.num_embeddings;
    m->ctx->ops->ema_update(m->ctx, m->ema_cluster_size, m->ema_w, m->codebook, m->code_stats, m->code_stats + k, k,
                            m->spec.embedding_dim, m->spec.decay, m->spec.epsilon, state);
}

// ---- the random layers' keys (the groupnorm arch's dropout) ------------------------------------

void model_set_random(Model *m, uint64_t seed, const int32_t *step, int64_t first_sample) {
    m->net.seed = seed;
    m->net.step = step;
    m->net.first_sample = first_sample;
}

void model_set_training(Model *m, int training) { m->net.training = training; }
