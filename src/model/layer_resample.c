// layer_resample.c: the groupnorm arch's resampling layers, nearest x2 upsampling
// (diffusers' Upsample2D before its conv) and zero padding (Downsample2D's pad before its stride-2
// conv): builder helpers, forward and backward. Neither has parameters or needs its input back.
#include <stdio.h>

#include "../core/common.h"
#include "layers.h"

static int resample_layer(Net *net, LayerKind kind, const char *name, int x, SpatialArgs sp, int oh, int ow) {
    int layer = net_add_layer(net, kind, name);
    net->layers[layer].sp = sp;
    int y = net_slot_nchw(net, name, sp.n, sp.c, oh, ow);
    net_layer_input(net, layer, x);
    net_layer_output(net, layer, y);
    return y;
}

static SpatialArgs input_shape(const Net *net, const char *name, int x) {
    const Slot *in = &net->slots[x];
    CHECK(in->ndim == 4, "layer '%s' reads slot '%s', which is not NCHW", name, in->name);
    return (SpatialArgs){.n = in->dims[0], .c = in->dims[1], .h = in->dims[2], .w = in->dims[3]};
}

// ---- nearest x2 upsampling -------------------------------------------------------------------

int build_upsample2x(Net *net, const char *name, int x) {
    SpatialArgs sp = input_shape(net, name, x);
    return resample_layer(net, LAYER_UPSAMPLE, name, x, sp, 2 * sp.h, 2 * sp.w);
}

static void upsample_forward(Net *net, Layer *L) {
    const SpatialArgs *s = &L->sp;
    net->ctx->ops->upsample2x_forward(net->ctx, L->x[0], s->n, s->c, s->h, s->w, L->y);
}

static void upsample_backward(Net *net, Layer *L) {
    const SpatialArgs *s = &L->sp;
    size_t n = net_slot_count(net, L->in[0]);
    float *dx = net_grad_target(net, L, 0, n);
    if (!dx) return;
    net->ctx->ops->upsample2x_backward(net->ctx, L->dy, s->n, s->c, s->h, s->w, dx);
    net_grad_commit(net, L, 0, n);
}

const LayerImpl layer_upsample_impl = {.name = "upsample", .forward = upsample_forward, .backward = upsample_backward};

// ---- zero padding ------------------------------------------------------------------------------

int build_pad(Net *net, const char *name, int x, int top, int bottom, int left, int right) {
    CHECK(top >= 0 && bottom >= 0 && left >= 0 && right >= 0, "pad '%s': negative padding", name);
    SpatialArgs sp = input_shape(net, name, x);
    sp.pad[0] = top, sp.pad[1] = bottom, sp.pad[2] = left, sp.pad[3] = right;
    return resample_layer(net, LAYER_PAD, name, x, sp, sp.h + top + bottom, sp.w + left + right);
}

static void pad_forward(Net *net, Layer *L) {
    const SpatialArgs *s = &L->sp;
    net->ctx->ops->pad2d_forward(net->ctx, L->x[0], s->n, s->c, s->h, s->w, s->pad[0], s->pad[1], s->pad[2],
                                 s->pad[3], L->y);
}

static void pad_backward(Net *net, Layer *L) {
    const SpatialArgs *s = &L->sp;
    size_t n = net_slot_count(net, L->in[0]);
    float *dx = net_grad_target(net, L, 0, n);
    if (!dx) return;
    net->ctx->ops->pad2d_backward(net->ctx, L->dy, s->n, s->c, s->h, s->w, s->pad[0], s->pad[1], s->pad[2],
                                  s->pad[3], dx);
    net_grad_commit(net, L, 0, n);
}

const LayerImpl layer_pad_impl = {.name = "pad", .forward = pad_forward, .backward = pad_backward};
