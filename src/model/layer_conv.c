// layer_conv.c: Conv2d / ConvTranspose2d layers: the builder helper, forward and backward.
#include <stdio.h>

#include "../core/common.h"
#include "layers.h"

// Registers prefix.weight (PyTorch layout: Conv2d [out, in, k, k], ConvTranspose2d [in, out, k, k])
// and prefix.bias, with PyTorch's default init (fan_in = weight.size(1) * k * k in both cases).
// linear: a 1x1 Conv2d stored as nn.Linear's [out, in] weight (the same floats).
static int conv_layer(Net *net, const char *prefix, int x, ConvShape shape, int linear) {
    const Slot *in = &net->slots[x];
    CHECK(in->ndim == 4 && in->dims[0] == shape.batch && in->dims[1] == shape.in_channels &&
          in->dims[2] == shape.in_height && in->dims[3] == shape.in_width,
          "conv '%s' expects a %dx%dx%dx%d input, slot '%s' is not that", prefix, shape.batch, shape.in_channels,
          shape.in_height, shape.in_width, in->name);
    int k = shape.kernel;
    int wshape[4] = {shape.transposed ? shape.in_channels : shape.out_channels,
                     shape.transposed ? shape.out_channels : shape.in_channels, k, k};
    int fan_in = wshape[1] * k * k;
    char key[PARAM_KEY_MAX];
    int layer = net_add_layer(net, LAYER_CONV, prefix);
    snprintf(key, sizeof key, "%s.weight", prefix);
    param_registry_add(net->registry, key, 1, INIT_KAIMING_UNIFORM, fan_in, linear ? 2 : 4, wshape);
    net->layers[layer].param[0] = net_param_index(net->registry, key);
    if (shape.has_bias) {
        int bshape[1] = {shape.out_channels};
        snprintf(key, sizeof key, "%s.bias", prefix);
        param_registry_add(net->registry, key, 1, INIT_BIAS_UNIFORM, fan_in, 1, bshape);
        net->layers[layer].param[1] = net_param_index(net->registry, key);
    }
    net->layers[layer].conv = shape;
    int y = net_slot_nchw(net, prefix, shape.batch, shape.out_channels, shape.out_height, shape.out_width);
    net_layer_input(net, layer, x);
    net_layer_output(net, layer, y);
    return y;
}

int build_conv(Net *net, const char *prefix, int x, ConvShape shape) { return conv_layer(net, prefix, x, shape, 0); }

// (the groupnorm arch's attention projections)
int build_linear_1x1(Net *net, const char *prefix, int x, int out) {
    const Slot *in = &net->slots[x];
    CHECK(in->ndim == 4, "linear '%s' reads slot '%s', which is not NCHW", prefix, in->name);
    ConvShape shape = conv_shape(in->dims[0], in->dims[1], in->dims[2], in->dims[3], out, 1, 1, 0, 0, 1);
    return conv_layer(net, prefix, x, shape, 1);
}

// Algorithms (cuDNN) are chosen once, here; the plan slot lives in the layer's shape.
static size_t conv_prepare(Net *net, Layer *L) { return net->ctx->ops->conv_prepare(net->ctx, &L->conv); }

static void conv_forward(Net *net, Layer *L) {
    net->ctx->ops->conv_forward(net->ctx, &L->conv, L->x[0], L->w[0], L->w[1], L->y);
}

// The weight and bias gradients are overwritten (each parameter belongs to one layer); the input
// gradient goes where the plan says.
static void conv_backward(Net *net, Layer *L) {
    size_t n = conv_in_count(&L->conv);
    float *din = net_grad_target(net, L, 0, n);
    net->ctx->ops->conv_backward(net->ctx, &L->conv, L->x[0], L->w[0], L->dy, din, L->dw[0], L->dw[1]);
    net_grad_commit(net, L, 0, n);
}

const LayerImpl layer_conv_impl = {
    .name = "conv", .prepare = conv_prepare, .forward = conv_forward, .backward = conv_backward,
};
