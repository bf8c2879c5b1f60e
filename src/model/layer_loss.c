// layer_loss.c: the reconstruction loss layer: weight * mean((x_hat - target)^2) into a scalar.
// The first layer of backward: it writes d x_hat from nothing.
#include "../core/common.h"
#include "layers.h"

void build_mse_loss(Net *net, const char *name, int x_hat, int target, float weight, int scalars_slot, int scalar) {
    CHECK(net->slots[x_hat].count == net->slots[target].count, "loss '%s': '%s' and '%s' differ in size", name,
          net->slots[x_hat].name, net->slots[target].name);
    int layer = net_add_layer(net, LAYER_MSE_LOSS, name);
    Layer *L = &net->layers[layer];
    L->count = net->slots[x_hat].count;
    L->weight = weight;
    L->scalars_slot = scalars_slot;
    L->scalar = scalar;
    net_layer_input(net, layer, x_hat);
    net_layer_input(net, layer, target);
}

// The scalar is the plain mean; the weight applies to the gradient (the metrics weight it too).
static void mse_loss_forward(Net *net, Layer *L) {
    float *scalars = (float *)net->slots[L->scalars_slot].data;
    net->ctx->ops->mse_forward(net->ctx, L->x[0], L->x[1], L->count, scalars + L->scalar);
}

static void mse_loss_backward(Net *net, Layer *L) {
    CHECK(L->mode[1] == GRAD_NONE, "loss '%s': the target needs no gradient", L->name);
    float *dx = net_grad_target(net, L, 0, L->count);
    if (!dx) return;
    net->ctx->ops->mse_backward(net->ctx, L->x[0], L->x[1], L->count, L->weight, 0, dx);
    net_grad_commit(net, L, 0, L->count);
}

const LayerImpl layer_mse_loss_impl = {
    .name = "mse_loss", .forward = mse_loss_forward, .backward = mse_loss_backward,
};
