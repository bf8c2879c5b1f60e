// layer_pointwise.c: ReLU and the residual add: builder helpers, forward and backward.
#include <stdio.h>

#include "../core/common.h"
#include "layers.h"

// ---- ReLU ------------------------------------------------------------------------------------

// One element-wise layer of `kind` on x: written over x (inplace) or into a new slot of x's shape.
static int build_elementwise(Net *net, LayerKind kind, const char *name, int x, int inplace) {
    int layer = net_add_layer(net, kind, name);
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

int build_relu(Net *net, const char *name, int x, int inplace) {
    return build_elementwise(net, LAYER_RELU, name, x, inplace);
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

// ---- SiLU (the groupnorm arch) -----------------------------------------------------------------

int build_silu(Net *net, const char *name, int x) { return build_elementwise(net, LAYER_SILU, name, x, 0); }

static void silu_forward(Net *net, Layer *L) { net->ctx->ops->silu_forward(net->ctx, L->x[0], L->y, L->count); }

// Reads the input x, so x must keep its value (the layer never runs in place); dx may alias dy.
static void silu_backward(Net *net, Layer *L) {
    float *dx = net_grad_target(net, L, 0, L->count);
    if (!dx) return;
    net->ctx->ops->silu_backward(net->ctx, L->x[0], L->dy, dx, L->count);
    net_grad_commit(net, L, 0, L->count);
}

const LayerImpl layer_silu_impl = {
    .name = "silu", .forward = silu_forward, .backward = silu_backward, .alias = {ALIAS_EXCLUSIVE},
};

// ---- dropout (the groupnorm arch) --------------------------------------------------------------

int build_dropout_inplace(Net *net, const char *name, int x, float p) {
    if (p <= 0.0f) return x;
    const Slot *s = &net->slots[x];
    CHECK(s->ndim >= 2 && p < 1.0f, "dropout '%s': p = %g on slot '%s' (p must be in [0, 1))", name, p, s->name);
    int layer = net_add_layer(net, LAYER_DROPOUT, name);
    Layer *L = &net->layers[layer];
    L->count = s->count;
    L->sp.n = s->dims[0];
    L->sp.p = p;
    L->sp.rng_layer = net->random_layers++;
    net_layer_input(net, layer, x);
    net_layer_output(net, layer, x);
    return x;
}

// The mask is a pure function of (seed, layer key, step, global sample, element): the same at any
// world size and on resume. Out of training (evaluation) the layer is the identity.
static void dropout_forward(Net *net, Layer *L) {
    if (!net->training) return;   // in place: y is x already
    CHECK(net->step, "dropout '%s': the trainer did not give the model its step counter (model_set_random)",
          L->name);
    size_t per = L->count / (size_t)L->sp.n;
    net->ctx->ops->dropout_forward(net->ctx, L->x[0], L->y, L->sp.n, per, net->first_sample, L->sp.p, net->seed,
                                   L->sp.rng_layer, net->step);
}

// The mask is recomputed from the same key; dx may alias dy.
static void dropout_backward(Net *net, Layer *L) {
    float *dx = net_grad_target(net, L, 0, L->count);
    if (!dx) return;
    size_t per = L->count / (size_t)L->sp.n;
    net->ctx->ops->dropout_backward(net->ctx, L->dy, dx, L->sp.n, per, net->first_sample, L->sp.p, net->seed,
                                    L->sp.rng_layer, net->step);
    net_grad_commit(net, L, 0, L->count);
}

const LayerImpl layer_dropout_impl = {
    .name = "dropout", .forward = dropout_forward, .backward = dropout_backward,
    .alias = {ALIAS_EXCLUSIVE}, .inplace_ok = 1,
};

// ---- sigmoid (the small arch's last decoder layer) ----------------------------------------------

int build_sigmoid(Net *net, const char *name, int x, int inplace) {
    return build_elementwise(net, LAYER_SIGMOID, name, x, inplace);
}

static void sigmoid_forward(Net *net, Layer *L) {
    net->ctx->ops->sigmoid_forward(net->ctx, L->x[0], L->y, L->count);
}

// dx = dy y (1 - y) reads only the output, so the sigmoid may overwrite its input.
static void sigmoid_backward(Net *net, Layer *L) {
    float *dx = net_grad_target(net, L, 0, L->count);
    if (!dx) return;
    net->ctx->ops->sigmoid_backward(net->ctx, L->y, L->dy, dx, L->count);
    net_grad_commit(net, L, 0, L->count);
}

const LayerImpl layer_sigmoid_impl = {
    .name = "sigmoid", .forward = sigmoid_forward, .backward = sigmoid_backward,
    .alias = {ALIAS_EXCLUSIVE}, .inplace_ok = 1, .reads_output = 1,
};
