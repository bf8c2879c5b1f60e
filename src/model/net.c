// net.c: building the layer list, walking it, and the helpers layers use in backward (see net.h).
// Planning and the arena are in net_plan.c.
#include "net.h"

#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "layers.h"

static const LayerImpl *const IMPLS[LAYER_KIND_COUNT] = {
    [LAYER_CONV] = &layer_conv_impl,         [LAYER_RELU] = &layer_relu_impl,
    [LAYER_ADD] = &layer_add_impl,           [LAYER_QUANTIZE] = &layer_quantize_impl,
    [LAYER_MSE_LOSS] = &layer_mse_loss_impl,
    // the groupnorm arch's kinds
    [LAYER_GROUPNORM] = &layer_groupnorm_impl, [LAYER_SILU] = &layer_silu_impl,
    [LAYER_DROPOUT] = &layer_dropout_impl,     [LAYER_UPSAMPLE] = &layer_upsample_impl,
    [LAYER_PAD] = &layer_pad_impl,             [LAYER_ATTENTION] = &layer_attention_impl,
    // the small arch's kinds
    [LAYER_SIGMOID] = &layer_sigmoid_impl,     [LAYER_LINEAR] = &layer_linear_impl,
    [LAYER_REPARAM] = &layer_reparam_impl,     [LAYER_KL_LOSS] = &layer_kl_loss_impl,
};

const LayerImpl *layer_impl(LayerKind kind) {
    CHECK(kind >= 0 && kind < LAYER_KIND_COUNT && IMPLS[kind], "no implementation for layer kind %d", (int)kind);
    return IMPLS[kind];
}

void net_init(Net *net, OpsContext *ctx, ParamRegistry *registry) {
    memset(net, 0, sizeof *net);
    net->ctx = ctx;
    net->registry = registry;
    net->training = 1;
}

void net_free(Net *net) {
    if (net->arena) net->ctx->ops->release(net->ctx, net->arena);
    free(net->layers);
    free(net->slots);
    memset(net, 0, sizeof *net);
}

// Start-up only: the lists grow while a builder runs.
static void *grow(void *items, int *cap, size_t item_size) {
    int want = *cap ? *cap * 2 : 32;
    void *grown = realloc(items, (size_t)want * item_size);
    if (!grown) fatal("out of host memory building the network");
    memset((char *)grown + (size_t)*cap * item_size, 0, (size_t)(want - *cap) * item_size);
    *cap = want;
    return grown;
}

int net_slot(Net *net, const char *name, SlotType type, int needs_grad, int ndim, const int *dims) {
    CHECK(ndim >= 1 && ndim <= SLOT_MAX_DIMS, "slot '%s' has %d dims", name, ndim);
    // name and dims may point into another slot (a builder copying its input's shape): read them
    // before growing the list moves the slots.
    char own_name[sizeof net->slots[0].name];
    int own_dims[SLOT_MAX_DIMS];
    CHECK(copy_string(own_name, sizeof own_name, name) == 0, "slot name '%s' too long", name);
    memcpy(own_dims, dims, (size_t)ndim * sizeof *dims);
    dims = own_dims;
    if (net->slot_count == net->slot_cap) net->slots = grow(net->slots, &net->slot_cap, sizeof(Slot));
    Slot *s = &net->slots[net->slot_count];
    memcpy(s->name, own_name, sizeof own_name);
    s->type = type;
    s->needs_grad = needs_grad;
    s->ndim = ndim;
    s->count = 1;
    for (int i = 0; i < ndim; i++) {
        CHECK(dims[i] > 0, "slot '%s' has dim %d = %d", name, i, dims[i]);
        s->dims[i] = dims[i];
        s->count *= (size_t)dims[i];
    }
    s->producer = -1;
    return net->slot_count++;
}

int net_slot_nchw(Net *net, const char *name, int n, int c, int h, int w) {
    int dims[4] = {n, c, h, w};
    return net_slot(net, name, SLOT_F32, 1, 4, dims);
}

size_t net_slot_count(const Net *net, int slot) {
    CHECK(slot >= 0 && slot < net->slot_count, "slot %d out of range", slot);
    return net->slots[slot].count;
}

int net_add_layer(Net *net, LayerKind kind, const char *name) {
    if (net->layer_count == net->layer_cap) net->layers = grow(net->layers, &net->layer_cap, sizeof(Layer));
    Layer *L = &net->layers[net->layer_count];
    memset(L, 0, sizeof *L);
    L->kind = kind;
    CHECK(copy_string(L->name, sizeof L->name, name) == 0, "layer name '%s' too long", name);
    L->out = -1;
    L->scalars_slot = -1;
    for (int i = 0; i < LAYER_MAX_PARAMS; i++) L->param[i] = -1;
    for (int i = 0; i < LAYER_MAX_IN; i++) L->in[i] = -1;
    return net->layer_count++;
}

void net_layer_input(Net *net, int layer, int slot) {
    Layer *L = &net->layers[layer];
    CHECK(L->n_in < LAYER_MAX_IN, "layer '%s' has more than %d inputs", L->name, LAYER_MAX_IN);
    CHECK(slot >= 0 && slot < net->slot_count, "layer '%s' reads slot %d, which does not exist", L->name, slot);
    L->in[L->n_in++] = slot;
}

void net_layer_output(Net *net, int layer, int slot) {
    CHECK(slot >= 0 && slot < net->slot_count, "layer %d writes slot %d, which does not exist", layer, slot);
    net->layers[layer].out = slot;
    if (net->slots[slot].producer < 0) net->slots[slot].producer = layer;
}

int net_param_index(const ParamRegistry *reg, const char *key) {
    for (int i = 0; i < reg->count; i++)
        if (strcmp(reg->entries[i].key, key) == 0) return i;
    fatal_at(__FILE__, __LINE__, "parameter '%s' is not in the registry", key);
}

// ---- running ---------------------------------------------------------------------------------

void net_forward_range(Net *net, int first, int last) {
    for (int i = first; i < last; i++) layer_impl(net->layers[i].kind)->forward(net, &net->layers[i]);
}

void net_backward(Net *net) {
    for (int i = net->layer_count - 1; i >= 0; i--) layer_impl(net->layers[i].kind)->backward(net, &net->layers[i]);
}

float *net_grad_target(Net *net, const Layer *L, int j, size_t count) {
    switch (L->mode[j]) {
    case GRAD_NONE: return NULL;
    case GRAD_WRITE:
    case GRAD_ALIAS: return L->dx[j];
    case GRAD_ACCUM:
        if (L->cow_from[j]) net->ctx->ops->copy(net->ctx, L->dx[j], L->cow_from[j], count * sizeof(float));
        return L->accum_in_dy[j] ? L->dy : net->scratch;
    }
    return NULL;
}

void net_grad_commit(Net *net, const Layer *L, int j, size_t count) {
    if (L->mode[j] == GRAD_ACCUM)
        net->ctx->ops->add(net->ctx, L->dx[j], L->accum_in_dy[j] ? L->dy : net->scratch, L->dx[j], count);
}
