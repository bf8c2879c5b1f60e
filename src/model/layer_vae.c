// layer_vae.c: the Gaussian VAE's two layers, builder helpers, forward and backward side by side:
//   reparam  z = mean + exp(logvar / 2) eps, eps ~ N(0, I) from the counter-based RNG keyed on
//            (seed, layer, step, global sample, element), so z does not depend on the world size
//            and a resumed run draws the same eps; out of training z = mean (deterministic
//            evaluation, reconstructions and `encode` -> `decode`)
//   kl_loss  KLD = -0.5 mean(1 + logvar - mean^2 - exp(logvar)) over this rank's [N, L] into a
//            scalar; its gradient, weighted, is added to those of mean and logvar
#include "../core/common.h"
#include "layers.h"

int build_reparam(Net *net, const char *name, int mean, int logvar) {
    const Slot *s = &net->slots[mean];
    CHECK(s->count == net->slots[logvar].count, "reparam '%s': mean and logvar differ in size", name);
    int n = s->dims[0], dim = (int)(s->count / (size_t)n);
    int layer = net_add_layer(net, LAYER_REPARAM, name);
    char slot_name[NET_NAME_MAX];
    snprintf(slot_name, sizeof slot_name, "%s.eps", name);
    int dims[2] = {n, dim};
    int eps = net_slot(net, slot_name, SLOT_F32, 0, 2, dims);
    net->slots[eps].producer = layer;
    Layer *L = &net->layers[layer];
    L->sp.n = n;
    L->sp.c = dim;
    L->sp.aux[0] = eps;
    L->sp.rng_layer = net->random_layers++;
    int z = net_slot_nchw(net, name, n, dim, 1, 1);
    net_layer_input(net, layer, mean);
    net_layer_input(net, layer, logvar);
    net_layer_output(net, layer, z);
    return z;
}

static float *eps_of(Net *net, const Layer *L) { return (float *)net->slots[L->sp.aux[0]].data; }

static void reparam_forward(Net *net, Layer *L) {
    const Ops *ops = net->ctx->ops;
    size_t count = (size_t)L->sp.n * (size_t)L->sp.c;
    if (!net->training) {   // eps = 0: z is the mean
        ops->copy(net->ctx, L->y, L->x[0], count * sizeof(float));
        ops->fill(net->ctx, eps_of(net, L), 0.0f, count);
        return;
    }
    CHECK(net->step, "reparam '%s': the trainer did not give the model its step counter (model_set_random)",
          L->name);
    ops->reparam_forward(net->ctx, L->x[0], L->x[1], L->sp.n, L->sp.c, net->first_sample, net->seed,
                         L->sp.rng_layer, net->step, L->y, eps_of(net, L));
}

// dmean = dz, dlogvar = dz eps exp(logvar / 2) / 2, both overwritten: the reparam is the last
// reader of mean and logvar in the layer list, so the first in the backward pass.
static void reparam_backward(Net *net, Layer *L) {
    CHECK(L->mode[0] == GRAD_WRITE && L->mode[1] == GRAD_WRITE, "reparam '%s': build it after every other "
          "reader of its mean and logvar (gradient modes %d %d)", L->name, (int)L->mode[0], (int)L->mode[1]);
    net->ctx->ops->reparam_backward(net->ctx, L->x[1], eps_of(net, L), L->dy, L->sp.n, L->sp.c, L->dx[0], L->dx[1]);
}

const LayerImpl layer_reparam_impl = {.name = "reparam", .forward = reparam_forward, .backward = reparam_backward};

void build_kl_loss(Net *net, const char *name, int mean, int logvar, float weight, int scalars_slot, int scalar) {
    CHECK(net->slots[mean].count == net->slots[logvar].count, "kl '%s': mean and logvar differ in size", name);
    int layer = net_add_layer(net, LAYER_KL_LOSS, name);
    Layer *L = &net->layers[layer];
    L->count = net->slots[mean].count;
    L->weight = weight;
    L->scalars_slot = scalars_slot;
    L->scalar = scalar;
    net_layer_input(net, layer, mean);
    net_layer_input(net, layer, logvar);
}

// The scalar is the mean KLD of this rank's samples (unweighted; the metrics weight it).
static void kl_loss_forward(Net *net, Layer *L) {
    float *out = (float *)net->slots[L->scalars_slot].data + L->scalar;
    net->ctx->ops->kl_forward(net->ctx, L->x[0], L->x[1], L->count, out);
    net->ctx->ops->scale(net->ctx, out, 1.0f / (float)L->count, 1);
}

// kl_backward accumulates into dmean and dlogvar: the reparam's gradients, formed first in the
// backward pass because the builder puts this layer before the reparam.
static void kl_loss_backward(Net *net, Layer *L) {
    CHECK(L->mode[0] == GRAD_ACCUM && L->mode[1] == GRAD_ACCUM && !L->cow_from[0] && !L->cow_from[1],
          "kl '%s': build it before the reparam layer of the same mean and logvar (modes %d %d)", L->name,
          (int)L->mode[0], (int)L->mode[1]);
    net->ctx->ops->kl_backward(net->ctx, L->x[0], L->x[1], L->count, L->weight / (float)L->count, L->dx[0],
                               L->dx[1]);
}

const LayerImpl layer_kl_loss_impl = {.name = "kl_loss", .forward = kl_loss_forward, .backward = kl_loss_backward};
