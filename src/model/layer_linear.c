// layer_linear.c: nn.Linear on flat samples (the VAE's latent heads): builder helper, forward and
// backward. The input is any [N, ...] slot read as [N, in]; the output is [N, out, 1, 1], which is
// also the [N, out] of PyTorch (the VAE's decoder input is that view).
#include <stdio.h>

#include "../core/common.h"
#include "layers.h"

int build_linear(Net *net, const char *prefix, int x, int out) {
    const Slot *s = &net->slots[x];
    int n = s->dims[0], in = (int)(s->count / (size_t)n);
    int layer = net_add_layer(net, LAYER_LINEAR, prefix);
    char key[PARAM_KEY_MAX];
    int wshape[2] = {out, in}, bshape[1] = {out};
    snprintf(key, sizeof key, "%s.weight", prefix);
    param_registry_add(net->registry, key, 1, INIT_KAIMING_UNIFORM, in, 2, wshape);
    net->layers[layer].param[0] = net_param_index(net->registry, key);
    snprintf(key, sizeof key, "%s.bias", prefix);
    param_registry_add(net->registry, key, 1, INIT_BIAS_UNIFORM, in, 1, bshape);
    net->layers[layer].param[1] = net_param_index(net->registry, key);
    Layer *L = &net->layers[layer];
    L->sp.n = n;
    L->sp.c = in;
    L->sp.h = out;   // the output features
    int y = net_slot_nchw(net, prefix, n, out, 1, 1);
    net_layer_input(net, layer, x);
    net_layer_output(net, layer, y);
    return y;
}

static void linear_forward(Net *net, Layer *L) {
    net->ctx->ops->linear_forward(net->ctx, L->x[0], L->w[0], L->w[1], L->sp.n, L->sp.c, L->sp.h, L->y);
}

// The weight and bias gradients are overwritten; the input gradient goes where the plan says.
static void linear_backward(Net *net, Layer *L) {
    size_t n = (size_t)L->sp.n * (size_t)L->sp.c;
    float *dx = net_grad_target(net, L, 0, n);
    net->ctx->ops->linear_backward(net->ctx, L->x[0], L->w[0], L->dy, L->sp.n, L->sp.c, L->sp.h, dx, L->dw[0],
                                   L->dw[1]);
    net_grad_commit(net, L, 0, n);
}

const LayerImpl layer_linear_impl = {.name = "linear", .forward = linear_forward, .backward = linear_backward};
