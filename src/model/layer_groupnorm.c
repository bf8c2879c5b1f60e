// layer_groupnorm.c: nn.GroupNorm(groups, c, eps, affine=True) layers: the builder helper,
// forward and backward. The per-(sample, group) mean and rstd are kept in aux slots for backward.
#include <stdio.h>

#include "../core/common.h"
#include "layers.h"

// A slot the layer keeps for its backward (no gradient).
static int aux_slot(Net *net, const char *prefix, const char *what, int count) {
    char name[NET_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", prefix, what);
    int dims[1] = {count};
    return net_slot(net, name, SLOT_F32, 0, 1, dims);
}

int build_groupnorm(Net *net, const char *prefix, int x, int groups, float eps) {
    const Slot *in = &net->slots[x];
    CHECK(in->ndim == 4, "groupnorm '%s' reads slot '%s', which is not NCHW", prefix, in->name);
    SpatialArgs sp = {.n = in->dims[0], .c = in->dims[1], .h = in->dims[2], .w = in->dims[3], .groups = groups,
                      .eps = eps};
    CHECK(groups > 0 && sp.c % groups == 0, "groupnorm '%s': %d channels are not divisible by %d groups (the "
          "model spec checks model.norm_num_groups)", prefix, sp.c, groups);
    int layer = net_add_layer(net, LAYER_GROUPNORM, prefix);
    char key[PARAM_KEY_MAX];
    int shape[1] = {sp.c};
    snprintf(key, sizeof key, "%s.weight", prefix);
    param_registry_add(net->registry, key, 1, INIT_ONE, 0, 1, shape);
    net->layers[layer].param[0] = net_param_index(net->registry, key);
    snprintf(key, sizeof key, "%s.bias", prefix);
    param_registry_add(net->registry, key, 1, INIT_ZERO, 0, 1, shape);
    net->layers[layer].param[1] = net_param_index(net->registry, key);
    sp.aux[0] = aux_slot(net, prefix, "mean", sp.n * groups);
    sp.aux[1] = aux_slot(net, prefix, "rstd", sp.n * groups);
    net->layers[layer].sp = sp;
    int y = net_slot_nchw(net, prefix, sp.n, sp.c, sp.h, sp.w);
    net_layer_input(net, layer, x);
    net_layer_output(net, layer, y);
    return y;
}

static float *aux(Net *net, const Layer *L, int i) { return (float *)net->slots[L->sp.aux[i]].data; }

static void groupnorm_forward(Net *net, Layer *L) {
    const SpatialArgs *sp = &L->sp;
    net->ctx->ops->group_norm_forward(net->ctx, L->x[0], L->w[0], L->w[1], sp->n, sp->c, sp->h * sp->w, sp->groups,
                                      sp->eps, L->y, aux(net, L, 0), aux(net, L, 1));
}

// The affine gradients are overwritten (each parameter belongs to one layer).
static void groupnorm_backward(Net *net, Layer *L) {
    const SpatialArgs *sp = &L->sp;
    size_t n = net_slot_count(net, L->in[0]);
    float *dx = net_grad_target(net, L, 0, n);
    CHECK(dx, "groupnorm '%s': its input needs a gradient (no arch normalizes the image batch)", L->name);
    net->ctx->ops->group_norm_backward(net->ctx, L->x[0], L->w[0], aux(net, L, 0), aux(net, L, 1), L->dy, sp->n,
                                       sp->c, sp->h * sp->w, sp->groups, dx, L->dw[0], L->dw[1]);
    net_grad_commit(net, L, 0, n);
}

const LayerImpl layer_groupnorm_impl = {
    .name = "groupnorm", .forward = groupnorm_forward, .backward = groupnorm_backward,
};
