// vqvae.h: the `resnet` VQ-VAE of van den Oord et al. 2017 / the PyTorch notebook (DESIGN §2):
//   encoder:  Conv(C->h/2,k4s2p1) ReLU Conv(h/2->h,k4s2p1) ReLU Conv(h->h,k3p1) ResidualStack
//   pre-VQ:   Conv1x1(h->D)
//   quantizer: nearest of K codes (vq: codebook trained by the codebook loss; ema: EMA updates)
//   decoder:  Conv(D->h,k3p1) ResidualStack ConvT(h->h/2,k4s2p1) ReLU ConvT(h/2->C,k4s2p1)
//   ResidualStack = L x [x + Conv1x1(ReLU(Conv3x3(ReLU(x)))) (no biases)] then ReLU
// All parameters live in one flat buffer (params.h registry), all gradients in another, and all
// activations are allocated once for the largest batch.
#pragma once
#include <stdint.h>

#include "../../kernels/ops.h"
#include "../io/config.h"
#include "params.h"

enum { MAX_RESIDUAL_LAYERS = 8 };

typedef struct {
    ConvShape shape;
    size_t weight;   // offsets into the flat parameter buffer (and the gradient buffer)
    size_t bias;     // SIZE_MAX when the layer has no bias
} ConvLayer;

// One residual stack's layers and the activations its backward pass needs.
typedef struct {
    int layers;
    ConvLayer conv3x3[MAX_RESIDUAL_LAYERS];   // h -> rh, k3p1, no bias
    ConvLayer conv1x1[MAX_RESIDUAL_LAYERS];   // rh -> h, k1, no bias
    float *sum[MAX_RESIDUAL_LAYERS + 1];      // s_i: the running sum (s_0 = stack input)
    float *relu_in[MAX_RESIDUAL_LAYERS];      // t_i = ReLU(s_i)
    float *relu_mid[MAX_RESIDUAL_LAYERS];     // v_i = ReLU(Conv3x3(t_i))
    float *out;                               // ReLU(s_L)
} ResidualStack;

typedef enum { QUANTIZER_VQ = 0, QUANTIZER_EMA = 1 } QuantizerKind;

// Device scalars written by forward/backward (one float each), read at log intervals.
enum {
    SCALAR_RECON_MSE = 0,     // mean((x_hat - x)^2)
    SCALAR_LATENT_MSE,        // mean((q - z)^2): the codebook and commitment losses' common value
    SCALAR_GRAD_SUMSQ,        // sum of squared gradients (after the all-reduce)
    SCALAR_COUNT
};

typedef struct {
    // hyperparameters
    int in_channels, height, width;
    int hiddens, residual_hiddens, residual_layers;
    int num_embeddings, embedding_dim;
    int latent_height, latent_width;
    QuantizerKind quantizer;
    float commitment_cost, decay, epsilon;
    float data_variance;
    int batch;           // images per forward (the per-rank batch); every buffer is sized for it

    OpsContext *ctx;
    ParamRegistry registry;

    // layers
    ConvLayer enc_conv1, enc_conv2, enc_conv3, pre_vq, dec_conv1, dec_convt1, dec_convt2;
    ResidualStack enc_stack, dec_stack;
    size_t codebook, ema_cluster_size, ema_w;   // offsets (ema_* only for QUANTIZER_EMA)

    // flat buffers (device)
    float *params;       // registry.total_count
    float *grads;        // registry.trainable_count, then one flag slot (trainer_compute_gradients)
    float *adam_m, *adam_v;

    // activations (device), sized for max_batch
    float *input;        // x            [N, C, H, W]
    float *enc_relu1;    // ReLU(conv1 x)
    float *enc_relu2;    // ReLU(conv2 .)
    float *z;            // pre-VQ output [N, D, h, w]
    float *z_flat;       // z channels-last [M, D], M = N h w
    int32_t *codes;      // [M]
    float *q_flat;       // codebook[codes] [M, D]
    float *quantized;    // q as NCHW (the decoder input; straight-through in backward)
    float *dec_relu1;    // ReLU(convT1 .)
    float *recon;        // x_hat        [N, C, H, W]
    // code statistics: counts [K] then per-code sums [K, D], packed so one all-reduce syncs them
    float *code_stats;
    float *scalars;      // SCALAR_COUNT device floats
    // backward scratch, each the size of the largest activation
    float *grad_a, *grad_b, *grad_c;
} Model;

// Build the registry, layer shapes and buffers for cfg and batches of `batch` images of the given
// size. Reserves the context's workspace. Parameters are zero until model_init_params. The Model
// must not be moved or copied afterwards.
void model_build(Model *m, const Config *cfg, OpsContext *ctx, int channels, int height, int width, int batch,
                 float data_variance);
void model_free(Model *m);

// PyTorch default initialization from the counter-based RNG (DESIGN §4): a pure function of the
// seed. The codebook follows quantizer.init ('data' is finished later by the trainer with
// init_codebook_from_data in trainer.c, since it needs the first global batch's encoder outputs).
void model_init_params(Model *m, const Config *cfg, uint64_t seed);

// Forward on m->input: fills every activation, the codes, the code statistics and the loss
// scalars. Does not change any parameter.
void model_forward(Model *m);
// Backward of the last forward into m->grads: d(recon_mse / variance + quantizer loss).
void model_backward(Model *m);
// Encoder + pre-VQ only (for the data-driven codebook init and `encode`).
void model_encode(Model *m);

// Apply the EMA codebook update from m->code_stats (already summed over ranks); skipped when
// state (device memory, may be NULL) says the step is not finite.
void model_ema_update(Model *m, const StepState *state);

// Convenience accessors
float *model_param(Model *m, size_t offset);
int model_latent_count(const Model *m);   // M = batch * h * w
size_t model_input_count(const Model *m); // batch * C * H * W

// 1 when quantizer.init resolves to 'data': the trainer then sets the codebook from the first
// global batch's encoder outputs (same on every rank and every world size).
int model_codebook_init_from_data(const Config *cfg);
