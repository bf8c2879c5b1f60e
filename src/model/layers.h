// layers.h: one implementation record per layer kind, and the builder helpers each layer file
// offers to the arch builders. A layer file holds its kind's builder helper, forward and backward
// side by side.
#pragma once
#include "net.h"

// May input j's gradient take over the output gradient's buffer?
typedef enum {
    ALIAS_NONE = 0,
    ALIAS_EXCLUSIVE,   // yes, when no other slot shares that buffer (the layer computes in place)
    ALIAS_SHARED,      // yes, even shared: the gradient passes through unchanged
} AliasRule;

typedef struct {
    const char *name;
    size_t (*prepare)(Net *net, Layer *L);   // backend workspace bytes; NULL: none
    void (*forward)(Net *net, Layer *L);
    void (*backward)(Net *net, Layer *L);
    AliasRule alias[LAYER_MAX_IN];
    int inplace_ok;        // the output may be written over input 0 (its backward does not need it)
    int reads_output;      // backward reads the output value, so nothing may write over it later
} LayerImpl;

const LayerImpl *layer_impl(LayerKind kind);

extern const LayerImpl layer_conv_impl, layer_relu_impl, layer_add_impl, layer_quantize_impl, layer_mse_loss_impl;

// ---- builder helpers: each returns the output slot -------------------------------------------
// A convolution named prefix (its parameters prefix.weight, prefix.bias), reading slot x.
int build_conv(Net *net, const char *prefix, int x, ConvShape shape);
// ReLU of x; inplace = 1 writes over x (only when nothing else reads x's pre-ReLU value).
int build_relu(Net *net, const char *name, int x, int inplace);
// a + b written over a (a must have no other reader).
int build_add_inplace(Net *net, const char *name, int a, int b);
// weight * mean((x_hat - target)^2) into scalars[scalar].
void build_mse_loss(Net *net, const char *name, int x_hat, int target, float weight, int scalars_slot, int scalar);
// The vector quantizer on z [N, G D, h, w]: nearest of the K codes (codebook_param, [K, D]) for
// each of the N h w G latents (G = groups consecutive channel slices of D at every position: the
// channels-last view, PyTorch's z.permute(0, 2, 3, 1).reshape(-1, D)); writes the codebook statistics [counts K | sums K x D] into an aux slot and
// mean((q - z)^2) into scalars[latent_mse_scalar]. trainable: the codebook gets the codebook-loss
// gradient (vq); otherwise it is updated by EMA outside the backward pass.
int build_quantize(Net *net, const char *name, int z, int codebook_param, int k, int d, float commitment_cost,
                   int trainable, int scalars_slot, int latent_mse_scalar);
// The quantizer's own slots, for the model: [M] codes, [M, D] z channels-last (M = N h w G), [K + K D] statistics.
void quantize_aux_slots(const Net *net, int layer, int *codes, int *z_flat, int *stats);
// Only the first half of the quantizer's forward: z channels-last into its z_flat slot.
void quantize_flatten(Net *net, Layer *L);

// ---- the groupnorm arch's layers (layer_groupnorm.c, layer_pointwise.c, layer_resample.c,
// layer_attention.c, layer_conv.c) -----------------------------------------------------------
extern const LayerImpl layer_groupnorm_impl, layer_silu_impl, layer_dropout_impl, layer_upsample_impl,
    layer_pad_impl, layer_attention_impl;

// nn.GroupNorm(groups, c, eps) on x [N, c, h, w] with prefix.weight (ones) and prefix.bias (zeros).
int build_groupnorm(Net *net, const char *prefix, int x, int groups, float eps);
// SiLU of x into a new slot (its backward reads x, so it never runs in place).
int build_silu(Net *net, const char *name, int x);
// Dropout with probability p written over x (per-sample masks keyed on the net's seed, step and
// global sample index; identity when the net is not training). p = 0 builds no layer.
int build_dropout_inplace(Net *net, const char *name, int x, float p);
// Nearest x2 upsampling of x [N, C, h, w] into [N, C, 2h, 2w].
int build_upsample2x(Net *net, const char *name, int x);
// Zero padding of x [N, C, h, w] by top, bottom, left, right.
int build_pad(Net *net, const char *name, int x, int top, int bottom, int left, int right);
// nn.Linear(c_in, out) applied at every position of x [N, c_in, h, w] (a 1x1 convolution whose
// weight has the Linear's [out, c_in] layout): prefix.weight, prefix.bias.
int build_linear_1x1(Net *net, const char *prefix, int x, int out);
// diffusers' Attention of a mid block on x [N, C, h, w]: prefix.group_norm, prefix.to_q / to_k /
// to_v, single-head softmax(q^T k / sqrt(C)) v over the h w positions, prefix.to_out.0, plus x.
int build_attention_block(Net *net, const char *prefix, int x, int groups, float eps);

// ---- the small arch's layers (layer_pointwise.c, layer_linear.c) ------------------------------
extern const LayerImpl layer_sigmoid_impl, layer_linear_impl;

// Sigmoid of x; inplace = 1 writes over x (its backward reads only the output).
int build_sigmoid(Net *net, const char *name, int x, int inplace);
// nn.Linear(in, out) on x [N, ...] read as [N, in] (in = elements per sample): prefix.weight
// [out, in], prefix.bias [out]; the output slot is [N, out, 1, 1].
int build_linear(Net *net, const char *prefix, int x, int out);

// ---- the Gaussian VAE's layers (layer_vae.c) ---------------------------------------------------
extern const LayerImpl layer_reparam_impl, layer_kl_loss_impl;

// z [N, L, 1, 1] = mean + exp(logvar / 2) eps of mean and logvar [N, L, ...]; eps is kept in the
// slot "<name>.eps" [N, L] for the backward (zeros out of training, where z = mean). Build it after
// every other reader of mean and logvar (its backward writes their gradients first).
int build_reparam(Net *net, const char *name, int mean, int logvar);
// KLD = -0.5 mean(1 + logvar - mean^2 - exp(logvar)) over the slots' elements into
// scalars[scalar]; the backward adds weight x its gradient to mean's and logvar's. Build it before
// the reparam of the same slots.
void build_kl_loss(Net *net, const char *name, int mean, int logvar, float weight, int scalars_slot, int scalar);
