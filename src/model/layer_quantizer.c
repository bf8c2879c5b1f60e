// layer_quantizer.c: the vector quantizer layer (DESIGN §2): builder helper, forward, backward.
//   forward:  z [N, G D, h, w] -> z_flat [M, D] (channels-last, M = N h w G: at each position the
//             G D channels are G consecutive code vectors) -> codes = nearest code
//             -> q_flat = codebook[codes] -> q [N, D, h, w]; the codebook statistics (counts and
//             per-code sums, for the EMA update and the metrics) and mean((q - z)^2)
//   backward: straight-through: dz = dq + beta * d mse(z, sg(q)); for vq the codebook gradient of
//             mean((sg(z) - e)^2), from the statistics
#include <stdio.h>

#include "../core/common.h"
#include "layers.h"

int build_quantize(Net *net, const char *name, int z, int codebook_param, int k, int d, float commitment_cost,
                   int trainable, int scalars_slot, int latent_mse_scalar) {
    const Slot *zs = &net->slots[z];
    CHECK(zs->ndim == 4 && d > 0 && zs->dims[1] % d == 0, "quantizer '%s' expects an NCHW latent whose channels "
          "divide into code vectors of %d dims", name, d);
    // zs points into the slot list, which the net_slot calls below may move: keep its dims.
    int z_dims[4] = {zs->dims[0], zs->dims[1], zs->dims[2], zs->dims[3]};
    int n = z_dims[0], groups = z_dims[1] / d, hw = z_dims[2] * z_dims[3];
    int m = n * hw * groups;
    char aux[NET_NAME_MAX];
    int flat_dims[2] = {m, d}, code_dims[1] = {m}, stat_dims[1] = {k + k * d};
    snprintf(aux, sizeof aux, "%s.z_flat", name);
    int z_flat = net_slot(net, aux, SLOT_F32, 0, 2, flat_dims);
    snprintf(aux, sizeof aux, "%s.codes", name);
    int codes = net_slot(net, aux, SLOT_I32, 0, 1, code_dims);
    snprintf(aux, sizeof aux, "%s.q_flat", name);
    int q_flat = net_slot(net, aux, SLOT_F32, 0, 2, flat_dims);
    snprintf(aux, sizeof aux, "%s.stats", name);
    int stats = net_slot(net, aux, SLOT_F32, 0, 1, stat_dims);
    snprintf(aux, sizeof aux, "%s.quantized", name);
    int q = net_slot(net, aux, SLOT_F32, 1, 4, z_dims);

    int layer = net_add_layer(net, LAYER_QUANTIZE, name);
    Layer *L = &net->layers[layer];
    L->param[0] = codebook_param;
    L->scalars_slot = scalars_slot;
    L->quant = (QuantizeArgs){.codes = codes, .z_flat = z_flat, .q_flat = q_flat, .stats = stats,
                              .latent_mse_scalar = latent_mse_scalar, .k = k, .d = d, .m = m, .hw = hw, .groups = groups,
                              .commitment_cost = commitment_cost, .trainable_codebook = trainable};
    int own[4] = {z_flat, codes, q_flat, stats};
    for (int s = 0; s < 4; s++) net->slots[own[s]].producer = layer;
    net_layer_input(net, layer, z);
    net_layer_output(net, layer, q);
    return q;
}

void quantize_aux_slots(const Net *net, int layer, int *codes, int *z_flat, int *stats) {
    const Layer *L = &net->layers[layer];
    CHECK(L->kind == LAYER_QUANTIZE, "layer '%s' is not a quantizer", L->name);
    *codes = L->quant.codes;
    *z_flat = L->quant.z_flat;
    *stats = L->quant.stats;
}

static float *slot_f32(Net *net, int slot) { return (float *)net->slots[slot].data; }

static size_t quantize_prepare(Net *net, Layer *L) {
    return net->ctx->ops->vq_workspace_bytes(net->ctx, L->quant.m, L->quant.k, L->quant.d);
}

void quantize_flatten(Net *net, Layer *L) {
    const QuantizeArgs *a = &L->quant;
    int images = a->m / (a->hw * a->groups);
    net->ctx->ops->nchw_to_nhwc(net->ctx, L->x[0], slot_f32(net, a->z_flat), images, a->d * a->groups, a->hw);
}

// Pretraining: the decoder sees z itself; no codes are chosen, so the statistics and the latent
// loss are zero.
static void bypass_forward(Net *net, Layer *L) {
    const Ops *ops = net->ctx->ops;
    const QuantizeArgs *a = &L->quant;
    ops->copy(net->ctx, L->y, L->x[0], (size_t)a->m * a->d * sizeof(float));
    ops->fill(net->ctx, slot_f32(net, a->stats), 0.0f, (size_t)a->k * (1 + (size_t)a->d));
    ops->fill(net->ctx, slot_f32(net, L->scalars_slot) + a->latent_mse_scalar, 0.0f, 1);
}

static void quantize_forward(Net *net, Layer *L) {
    const Ops *ops = net->ctx->ops;
    OpsContext *ctx = net->ctx;
    const QuantizeArgs *a = &L->quant;
    if (a->bypass) {
        bypass_forward(net, L);
        return;
    }
    float *z_flat = slot_f32(net, a->z_flat), *q_flat = slot_f32(net, a->q_flat), *stats = slot_f32(net, a->stats);
    int32_t *codes = (int32_t *)net->slots[a->codes].data;
    quantize_flatten(net, L);
    ops->vq_nearest(ctx, z_flat, L->w[0], a->m, a->k, a->d, codes);
    ops->vq_gather(ctx, L->w[0], codes, a->m, a->d, q_flat);
    ops->nhwc_to_nchw(ctx, q_flat, L->y, a->m / (a->hw * a->groups), a->d * a->groups, a->hw);
    ops->vq_code_stats(ctx, z_flat, codes, a->m, a->k, a->d, stats, stats + a->k);
    ops->mse_forward(ctx, L->y, L->x[0], (size_t)a->m * a->d, slot_f32(net, L->scalars_slot) + a->latent_mse_scalar);
}

static void quantize_backward(Net *net, Layer *L) {
    const Ops *ops = net->ctx->ops;
    OpsContext *ctx = net->ctx;
    const QuantizeArgs *a = &L->quant;
    size_t n = (size_t)a->m * a->d;
    float *dz = net_grad_target(net, L, 0, n);
    if (dz) {
        if (dz != L->dy) ops->copy(ctx, dz, L->dy, n * sizeof(float));   // straight-through
        if (!a->bypass) ops->mse_backward(ctx, L->x[0], L->y, n, a->commitment_cost, 1, dz);
        net_grad_commit(net, L, 0, n);
    }
    if (a->trainable_codebook && a->bypass) {
        ops->fill(ctx, L->dw[0], 0.0f, (size_t)a->k * a->d);
    } else if (a->trainable_codebook) {   // d e_j = 2/(M D) (count_j e_j - sum of the z assigned to j)
        float *stats = slot_f32(net, a->stats);
        float scale = 2.0f / ((float)a->m * (float)a->d);
        ops->vq_codebook_grad(ctx, L->w[0], stats, stats + a->k, a->k, a->d, scale, L->dw[0]);
    }
}

const LayerImpl layer_quantize_impl = {
    .name = "quantize", .prepare = quantize_prepare, .forward = quantize_forward, .backward = quantize_backward,
    .alias = {ALIAS_EXCLUSIVE},
};
