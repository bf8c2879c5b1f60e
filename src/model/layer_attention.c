// layer_attention.c: diffusers' Attention of a UNetMidBlock2D as layer records: GroupNorm,
// to_q / to_k / to_v (1x1 convs with nn.Linear's weight layout), the attention core (this file's
// kind: single head, softmax(q^T k / sqrt(C)) v over the h w positions, the probabilities kept
// for backward), to_out.0 and the residual add.
#include <math.h>
#include <stdio.h>

#include "../core/common.h"
#include "layers.h"

static int attention_core(Net *net, const char *name, int q, int k, int v) {
    const Slot *s = &net->slots[q];
    SpatialArgs sp = {.n = s->dims[0], .c = s->dims[1], .h = s->dims[2], .w = s->dims[3]};
    sp.scale = (float)(1.0 / sqrt((double)sp.c));
    int hw = sp.h * sp.w;
    char probs[2 * NET_NAME_MAX];   // net_slot refuses a name that is too long
    snprintf(probs, sizeof probs, "%s.probs", name);
    int pdims[3] = {sp.n, hw, hw};
    sp.aux[0] = net_slot(net, probs, SLOT_F32, 0, 3, pdims);
    int layer = net_add_layer(net, LAYER_ATTENTION, name);
    net->layers[layer].sp = sp;
    int y = net_slot_nchw(net, name, sp.n, sp.c, sp.h, sp.w);
    net_layer_input(net, layer, q);
    net_layer_input(net, layer, k);
    net_layer_input(net, layer, v);
    net_layer_output(net, layer, y);
    return y;
}

int build_attention_block(Net *net, const char *prefix, int x, int groups, float eps) {
    const Slot *in = &net->slots[x];
    CHECK(in->ndim == 4, "attention '%s' reads slot '%s', which is not NCHW", prefix, in->name);
    int c = in->dims[1];
    char name[NET_NAME_MAX];
    snprintf(name, sizeof name, "%s.group_norm", prefix);
    int h = build_groupnorm(net, name, x, groups, eps);
    int qkv[3];
    const char *proj[3] = {"to_q", "to_k", "to_v"};
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, proj[i]);
        qkv[i] = build_linear_1x1(net, name, h, c);
    }
    snprintf(name, sizeof name, "%s.attention", prefix);
    int a = attention_core(net, name, qkv[0], qkv[1], qkv[2]);
    snprintf(name, sizeof name, "%s.to_out.0", prefix);
    int out = build_linear_1x1(net, name, a, c);
    snprintf(name, sizeof name, "%s.residual", prefix);
    return build_add_inplace(net, name, out, x);
}

static size_t attention_prepare(Net *net, Layer *L) {
    return net->ctx->ops->attention_workspace_bytes(net->ctx, L->sp.n, L->sp.c, L->sp.h * L->sp.w);
}

static float *probs(Net *net, const Layer *L) { return (float *)net->slots[L->sp.aux[0]].data; }

static void attention_forward(Net *net, Layer *L) {
    const SpatialArgs *s = &L->sp;
    net->ctx->ops->attention_forward(net->ctx, L->x[0], L->x[1], L->x[2], s->n, s->c, s->h * s->w, s->scale,
                                     probs(net, L), L->y);
}

// The op writes dq, dk and dv at once, so each must be a buffer of its own (q, k and v are fresh
// slots read by this layer only: the plan writes them).
static void attention_backward(Net *net, Layer *L) {
    const SpatialArgs *s = &L->sp;
    for (int j = 0; j < 3; j++)
        CHECK(L->mode[j] == GRAD_WRITE, "attention '%s': input %d's gradient is not a buffer of its own (%d)", L->name,
              j, (int)L->mode[j]);
    net->ctx->ops->attention_backward(net->ctx, L->x[0], L->x[1], L->x[2], probs(net, L), L->dy, s->n, s->c,
                                      s->h * s->w, s->scale, L->dx[0], L->dx[1], L->dx[2]);
}

const LayerImpl layer_attention_impl = {
    .name = "attention", .prepare = attention_prepare, .forward = attention_forward, .backward = attention_backward,
};
