// model.h: a VQ-VAE built from a ModelSpec: the parameter registry and its flat buffers (one for
// parameters, one for gradients, two for Adam's moments), and the network (net.h) that an arch
// builder (arch_*.c) lays out. The model calls kernels/ops.h only, and never branches on the
// device or on config strings: the arch is picked once, in model_build.
#pragma once
#include <stdint.h>

#include "../../kernels/ops.h"
#include "net.h"
#include "params.h"
#include "spec.h"

// Device scalars written by forward/backward (one float each), read at log intervals.
enum {
    SCALAR_RECON_MSE = 0,     // mean((x_hat - x)^2)
    SCALAR_LATENT_LOSS,       // VQ-VAE: mean((q - z)^2), the codebook and commitment losses' common value;
                              // VAE: the KLD, -0.5 mean(1 + logvar - mean^2 - exp(logvar))
    SCALAR_GRAD_SUMSQ,        // sum of squared gradients (after the all-reduce)
    SCALAR_COUNT
};

typedef struct {
    ModelSpec spec;
    OpsContext *ctx;
    ParamRegistry registry;
    Net net;
    int latent_height, latent_width;   // set by the arch builder

    // flat buffers (device)
    float *params;       // registry.total_count
    float *grads;        // registry.trainable_count, then one flag slot (trainer_compute_gradients)
    float *adam_m, *adam_v;

    // where the step's tensors are (slots of net's arena)
    int input_slot, recon_slot, scalars_slot, quant_layer;
    float *input;        // x [N, C, H, W], filled by the trainer
    float *recon;        // x_hat
    float *z_flat;       // encoder output channels-last [M, D], M = N h w
    int32_t *codes;      // [M]
    float *code_stats;   // [counts K | sums K x D], packed so one all-reduce syncs them
    float *scalars;      // SCALAR_COUNT floats

    // model.type vae: [N, L] each (NULL for a VQ-VAE); z is the decoder's input
    float *vae_mean, *vae_logvar, *vae_z;
    int kl_layer, reparam_layer;          // -1 for a VQ-VAE

    // the quantizer's entries in params (NULL when absent)
    float *codebook, *ema_cluster_size, *ema_w;
    int codebook_entry, ema_size_entry, ema_w_entry;   // registry indices, -1 when absent
} Model;

// Build the registry, the network and every buffer for spec; reserves the context's workspace.
// Parameters are zero until model_init_params. The Model must not be moved or copied afterwards.
void model_build(Model *m, const ModelSpec *spec, OpsContext *ctx);
void model_free(Model *m);

// PyTorch default initialization from the counter-based RNG (DESIGN §4): a pure function of the
// seed. With CODEBOOK_INIT_DATA the codebook is replaced later by the trainer (it needs the first
// global batch's encoder outputs).
void model_init_params(Model *m, uint64_t seed);

// Forward on m->input: every activation, the codes, the code statistics and the loss scalars.
void model_forward(Model *m);
// Backward of the last forward into m->grads.
void model_backward(Model *m);
// Encoder and pre-quantizer only, up to z_flat (the data-driven codebook init, `encode`).
void model_encode(Model *m);
// Codes (model_codes.c): G, the codes per latent position (the quantizer's input channels are
// cut into G slices of D; m->codes holds batch x h x w x G codes, slices innermost); the encoder
// and quantizer only (m->codes and m->z_flat); and the decoder only, from the codes in m->codes
// (looked up in the codebook) to m->recon.
int model_code_groups(const Model *m);
void model_encode_codes(Model *m);
void model_decode_codes(Model *m);
// Encoder pretraining: bypass = 1 lets the quantizer pass z through (no codes, no quantizer loss,
// a zero codebook gradient); 0 quantizes.
void model_set_quantizer_bypass(Model *m, int bypass);
// The EMA codebook update from m->code_stats (already summed over ranks); skipped when state
// (device memory, may be NULL) says the step is not finite.
void model_ema_update(Model *m, const StepState *state);

// Recompute the loss scalars and code statistics of the last forward over its first n images only
// (an evaluation's last, partly filled batch).
void model_restrict_metrics(Model *m, int n);

int model_latent_count(const Model *m);   // M = batch * h * w
size_t model_input_count(const Model *m); // batch * C * H * W

// ---- for the arch builders (arch_*.c) --------------------------------------------------------
// The quantizer on slot z with its registry entries under the given keys (ema keys used only by
// the ema quantizer), registered here so they sit in state_dict order. Returns the quantized slot.
int model_add_quantizer(Model *m, int z, const char *codebook_key, const char *ema_size_key, const char *ema_w_key);
void arch_resnet_build(Model *m);

// ---- the groupnorm arch (arch_groupnorm.c) and the random layers' keys ------------------------
void arch_groupnorm_build(Model *m);
// Dropout masks are keyed on (seed, layer, *step, first_sample + sample in this rank's batch):
// step is device memory (StepState.steps), first_sample this rank's offset in the global batch.
void model_set_random(Model *m, uint64_t seed, const int32_t *step, int64_t first_sample);
// training = 0: dropout is the identity (evaluation, reconstruction); 1 (the default) for steps.
void model_set_training(Model *m, int training);

// ---- the small arch (arch_small.c): the classic MNIST VQ-VAE with grouped codes ----------------
void arch_small_build(Model *m);

// ---- model.type vae (arch_small.c, model_codes.c): the Gaussian VAE ---------------------------
void arch_small_vae_build(Model *m);
// A codebook (and codes) exists: 0 for a VAE, whose quantizer-only paths the trainer skips.
static inline int model_has_codebook(const Model *m) { return m->quant_layer >= 0; }
// The encoder up to the mean and log-variance (m->vae_mean, m->vae_logvar).
void model_encode_latent(Model *m);
// The decoder alone from the latents in m->vae_z [batch, L] to m->recon.
void model_decode_latent(Model *m);
