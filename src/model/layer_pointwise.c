// layer_pointwise.c: ReLU and the residual add: builder helpers, forward and backward.
#include <stdio.h>

#include "../core/common.h"
#include "layers.h"

// ---- ReLU ------------------------------------------------------------------------------------

int build_relu(Net *net, const char *name, int x, int inplace) {
    int layer = net_add_layer(net, LAYER_RELU, name);
    int y = x;
    if (!inplace) {
        const Slot *s = &net->slots[x];
        y = net_slot(net, name, SLOT_F32, 1, s->ndim, s->dims);
    }
    net->layers[layer].count = net->slots[x].count;
    net_layer_input(net, layer, x);
    net_layer_output(net, layer, y);
    return y;
}

static void relu_forward(Net *net, Layer *L) { net->ctx->ops->relu_forward(net->ctx, L->x[0], L->y, L->count); }

// The sign test reads the output, so the ReLU may have overwritten its input.
static void relu_backward(Net *net, Layer *L) {
    float *dx = net_grad_target(net, L, 0, L->count);
    if (!dx) return;
    net->ctx->ops->relu_backward(net->ctx, L->y, L->dy, dx, L->count);
    net_grad_commit(net, L, 0, L->count);
}

const LayerImpl layer_relu_impl = {
    .name = "relu", .forward = relu_forward, .backward = relu_backward,
    .alias = {ALIAS_EXCLUSIVE}, .inplace_ok = 1, .reads_output = 1,
};

// ---- residual add ----------------------------------------------------------------------------

int build_add_inplace(Net *net, const char *name, int a, int b) {
    CHECK(net->slots[a].count == net->slots[b].count, "add '%s': slots '%s' and '%s' differ in size", name,
          net->slots[a].name, net->slots[b].name);
    int layer = net_add_layer(net, LAYER_ADD, name);
    net->layers[layer].count = net->slots[a].count;
    net_layer_input(net, layer, a);
    net_layer_input(net, layer, b);
    net_layer_output(net, layer, a);
    return a;
}

static void add_forward(Net *net, Layer *L) { net->ctx->ops->add(net->ctx, L->x[0], L->x[1], L->y, L->count); }

// Both inputs' gradients equal the output's: shared buffers cost nothing; otherwise copy or add.
static void add_backward(Net *net, Layer *L) {
    OpsContext *ctx = net->ctx;
    for (int j = 0; j < L->n_in; j++) {
        if (L->mode[j] == GRAD_WRITE) {
            ctx->ops->copy(ctx, L->dx[j], L->dy, L->count * sizeof(float));
        } else if (L->mode[j] == GRAD_ACCUM) {
            if (L->cow_from[j]) ctx->ops->copy(ctx, L->dx[j], L->cow_from[j], L->count * sizeof(float));
            ctx->ops->add(ctx, L->dx[j], L->dy, L->dx[j], L->count);
        }
    }
}

const LayerImpl layer_add_impl = {
    .name = "add", .forward = add_forward, .backward = add_backward,
    .alias = {ALIAS_SHARED, ALIAS_SHARED}, .inplace_ok = 1,
};
