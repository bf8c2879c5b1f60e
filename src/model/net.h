// net.h: a network as data (DESIGN §2). An arch's builder appends layer records, each naming the
// activation slots it reads and writes and the registry entries of its parameters; forward walks
// the list, backward walks it in reverse. When the list is complete, net_finalize lays out every
// activation and every activation gradient of a step in one arena, and plans the backward pass
// once: for each layer, where its output gradient is and how each input gradient is formed
// (written, accumulated, or taken over in place from the output gradient), so gradient buffers
// are reused as soon as they are dead and the step itself makes no decision and no allocation.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../../kernels/ops.h"
#include "params.h"

// LAYER_MAX_IN 3: the attention core reads q, k and v.
enum { LAYER_MAX_IN = 3, LAYER_MAX_PARAMS = 4, LAYER_MAX_AUX = 4, NET_NAME_MAX = 96, SLOT_MAX_DIMS = 4 };

typedef enum {
    LAYER_CONV,       // Conv2d / ConvTranspose2d, optional bias (layer_conv.c)
    LAYER_RELU,       // y = max(x, 0), may run in place (layer_pointwise.c)
    LAYER_ADD,        // y = a + b, may run in place on a (layer_pointwise.c)
    LAYER_QUANTIZE,   // nearest codebook vector, straight-through gradient (layer_quantizer.c)
    LAYER_MSE_LOSS,   // weight * mean((x_hat - x)^2) into a scalar; no output slot (layer_loss.c)
    // ---- the groupnorm arch's kinds (arch_groupnorm.c) ----
    LAYER_GROUPNORM,  // nn.GroupNorm with affine weight/bias (layer_groupnorm.c)
    LAYER_SILU,       // y = x sigmoid(x) (layer_pointwise.c)
    LAYER_DROPOUT,    // counter-based mask, identity in eval; may run in place (layer_pointwise.c)
    LAYER_UPSAMPLE,   // nearest x2 (layer_resample.c)
    LAYER_PAD,        // zero padding top/bottom/left/right (layer_resample.c)
    LAYER_ATTENTION,  // single-head softmax(q^T k scale) v over the h w positions (layer_attention.c)
    // ---- the small arch's kinds (arch_small.c) ----
    LAYER_SIGMOID,    // y = 1 / (1 + exp(-x)), may run in place (layer_pointwise.c)
    LAYER_LINEAR,     // nn.Linear on [N, in] samples (layer_linear.c)
    // ---- the Gaussian VAE's kinds (arch_small.c, model.type vae) ----
    LAYER_REPARAM,    // z = mean + exp(logvar / 2) eps, counter-based eps (layer_vae.c)
    LAYER_KL_LOSS,    // KLD mean into a scalar; its gradient accumulated into mean and logvar (layer_vae.c)
    LAYER_KIND_COUNT
} LayerKind;

// How a layer's backward forms the gradient of one input (set by the plan).
typedef enum {
    GRAD_NONE = 0,   // the input needs no gradient (the image batch, codes)
    GRAD_WRITE,      // dx is a fresh buffer: overwrite it
    GRAD_ACCUM,      // dx already holds other layers' contributions: add to it
    GRAD_ALIAS,      // dx is dy's buffer: a pass-through costs nothing, a pointwise op runs in place
} GradMode;

typedef enum { SLOT_F32 = 0, SLOT_I32 = 1 } SlotType;

typedef struct {
    char name[NET_NAME_MAX];
    SlotType type;
    int ndim;
    int dims[SLOT_MAX_DIMS];   // NCHW for images, [M, D] for flat latents
    size_t count;
    int needs_grad;            // 0: the input batch, codes, statistics, scalars
    int producer;              // index of the layer that first writes it; -1: written from outside
    size_t offset;             // bytes into the arena
    void *data;
} Slot;

// Per-kind arguments (only the kind's own member is used).
typedef struct {
    int codes, z_flat, q_flat, stats;   // aux slots: [M] codes, [M, D] z and q channels-last, [K + K D]
    int latent_mse_scalar;              // index into the scalars slot
    int k, d, m, hw;                    // codes, dims, latents (= batch * hw * groups), positions per image
    int groups;                         // code vectors per position: the latent has groups * d channels
    float commitment_cost;
    int trainable_codebook;             // vq: the codebook learns by gradient
    int bypass;                         // encoder pretraining: q = z, no codes, no quantizer loss
} QuantizeArgs;

// The groupnorm arch's kinds: the input's NCHW shape and each kind's numbers.
typedef struct {
    int n, c, h, w;                     // input 0's shape
    int groups;                         // LAYER_GROUPNORM
    float eps;                          // LAYER_GROUPNORM
    int aux[2];                         // LAYER_GROUPNORM: mean, rstd slots; LAYER_ATTENTION: probs slot;
                                        // LAYER_REPARAM: the eps slot
    int pad[4];                         // LAYER_PAD: top, bottom, left, right
    float scale;                        // LAYER_ATTENTION: 1 / sqrt(c)
    float p;                            // LAYER_DROPOUT: drop probability
    uint32_t rng_layer;                 // LAYER_DROPOUT, LAYER_REPARAM: the layer's key in the RNG's counter
} SpatialArgs;

typedef struct {
    LayerKind kind;
    char name[NET_NAME_MAX];
    int in[LAYER_MAX_IN];
    int n_in;
    int out;                            // -1: none (a loss)
    int param[LAYER_MAX_PARAMS];        // registry entries, -1 = none
    size_t count;                       // pointwise layers: elements
    ConvShape conv;                     // LAYER_CONV
    QuantizeArgs quant;                 // LAYER_QUANTIZE
    float weight;                       // LAYER_MSE_LOSS, LAYER_KL_LOSS: the loss weight
    int scalar;                         // LAYER_MSE_LOSS, LAYER_KL_LOSS: index into the scalars slot
    int scalars_slot;                   // LAYER_MSE_LOSS, LAYER_KL_LOSS, LAYER_QUANTIZE
    SpatialArgs sp;                     // the groupnorm arch's kinds, LAYER_LINEAR, LAYER_REPARAM
    // resolved by net_finalize
    float *x[LAYER_MAX_IN];
    float *y;
    float *w[LAYER_MAX_PARAMS];         // parameter values
    float *dw[LAYER_MAX_PARAMS];        // their gradients (NULL for non-trainable entries)
    // the backward plan
    float *dy;                          // gradient of the output (NULL: none)
    float *dx[LAYER_MAX_IN];
    GradMode mode[LAYER_MAX_IN];
    float *cow_from[LAYER_MAX_IN];      // GRAD_ACCUM into a buffer shared with another slot: copy first
    int accum_in_dy[LAYER_MAX_IN];      // GRAD_ACCUM of a pointwise layer whose dy dies here: the
                                        // contribution is formed in dy itself instead of the scratch
} Layer;

typedef struct {
    OpsContext *ctx;
    ParamRegistry *registry;
    Layer *layers;
    int layer_count, layer_cap;
    Slot *slots;
    int slot_count, slot_cap;
    // the arena: [activations | gradient buffers | scratch], each 64-byte aligned
    unsigned char *arena;
    size_t arena_bytes, value_bytes, grad_bytes, scratch_bytes;
    int grad_buffers;                   // distinct gradient buffers the plan uses
    float *scratch;                     // for GRAD_ACCUM: a contribution is formed here, then added
    size_t workspace_bytes;             // the layers' largest backend workspace
    // the random layers' keys (dropout), set by the trainer through model_set_random
    int training;                       // 1 (net_init): dropout draws masks; 0: identity (evaluation)
    uint64_t seed;
    const int32_t *step;                // device: the 0-based step under way (StepState.steps)
    int64_t first_sample;               // this rank's first sample in the global batch
    uint32_t random_layers;             // random layers built so far (each gets its own key)
} Net;

// ---- building (an arch's builder calls these through the layer files' helpers) ------------
void net_init(Net *net, OpsContext *ctx, ParamRegistry *registry);
void net_free(Net *net);
int net_slot(Net *net, const char *name, SlotType type, int needs_grad, int ndim, const int *dims);
int net_slot_nchw(Net *net, const char *name, int n, int c, int h, int w);
// A new layer record (zeroed, params -1, out -1); returns its index. Pointers into net->layers
// stay valid only until the next net_add_layer.
int net_add_layer(Net *net, LayerKind kind, const char *name);
void net_layer_input(Net *net, int layer, int slot);
void net_layer_output(Net *net, int layer, int slot);   // sets the slot's producer when it has none
int net_param_index(const ParamRegistry *reg, const char *key);

// ---- finalizing: validate, plan backward, lay out the arena, resolve pointers --------------
// params / grads are the model's flat buffers (after param_registry_finalize); reserves the
// context's workspace for the layers.
void net_finalize(Net *net, float *params, float *grads);
// The layers (with the planned gradient modes), every slot with offset and size, and the totals.
void net_print_layout(const Net *net, FILE *out);

// ---- running ---------------------------------------------------------------------------------
void net_forward_range(Net *net, int first, int last);   // layers [first, last)
void net_backward(Net *net);

// ---- helpers for the layers' backward -------------------------------------------------------
// Where input j's gradient should be written: dx itself (WRITE, ALIAS) or the scratch (ACCUM,
// after copying cow_from when the buffer was shared); NULL for GRAD_NONE. net_grad_commit then
// adds the scratch into dx for ACCUM.
float *net_grad_target(Net *net, const Layer *L, int j, size_t count);
void net_grad_commit(Net *net, const Layer *L, int j, size_t count);
size_t net_slot_count(const Net *net, int slot);
