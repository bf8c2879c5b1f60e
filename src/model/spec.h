// spec.h: what the model layer needs to know to build a network, as plain numbers and enums.
// The train layer resolves it from the config and the dataset in one place (model_spec.c), so
// the model never reads config strings and never branches on them after the build.
#pragma once

typedef enum { ARCH_RESNET = 0, ARCH_SMALL = 1, ARCH_GROUPNORM = 2 } ArchKind;

// model.type: a VQ-VAE (encoder, quantizer, decoder) or the Gaussian VAE (arch small only).
typedef enum { MODEL_VQVAE = 0, MODEL_VAE = 1 } ModelType;

enum { GN_MAX_BLOCKS = 8 };

typedef enum { QUANTIZER_VQ = 0, QUANTIZER_EMA = 1 } QuantizerKind;

// How the codebook starts: U(+-1/K) (PyTorch's Embedding init in the notebook's VectorQuantizer),
// N(0, 1) with zero EMA sizes (the notebook's VectorQuantizerEMA), or encoder outputs of the first
// global batch (chosen by the trainer, which sees every rank's batch).
// kmeans: k-means++ and Lloyd iterations on encoder outputs of several global batches (the trainer).
typedef enum {
    CODEBOOK_INIT_UNIFORM = 0,
    CODEBOOK_INIT_NORMAL = 1,
    CODEBOOK_INIT_DATA = 2,
    CODEBOOK_INIT_KMEANS = 3,
} CodebookInit;

typedef struct {
    ModelType type;
    ArchKind arch;
    int batch;                          // images per forward (the per-rank batch); buffers are sized for it
    int in_channels, height, width;     // of the images
    // arch resnet (the PyTorch VQ-VAE notebook's Model)
    int hiddens, residual_hiddens, residual_layers;
    // arch groupnorm (diffusers' VQModel layout, arch_groupnorm.c)
    int gn_blocks;                      // len(block_out_channels)
    int gn_block_channels[GN_MAX_BLOCKS];
    int gn_layers_per_block;            // resnets per down block (up blocks: one more)
    int gn_groups;                      // norm_num_groups
    float gn_eps;                       // GroupNorm eps
    float gn_dropout;                   // in every ResnetBlock2D (training only)
    int gn_mid_attention;               // the mid blocks' self-attention
    int gn_latent_channels;             // encoder output / decoder input channels
    // arch small (the classic MNIST VQ-VAE, arch_small.c)
    int small_channels[3];              // model.channels: the three encoder convs' widths
    // quantizer
    QuantizerKind quantizer;
    int num_embeddings;                 // K
    int embedding_dim;                  // D
    int groups;                         // code vectors per latent position: latent channels / D (derived)
    float commitment_cost;              // beta
    float decay, epsilon;               // EMA only
    CodebookInit codebook_init;
    // model.type vae (arch_small.c): z = mean + exp(logvar / 2) eps, eps ~ N(0, I)
    int vae_latent_dim;                 // L
    float kl_weight;                    // of KLD = -0.5 mean(1 + logvar - mean^2 - exp(logvar))
    int world;                          // ranks sharing the global batch (the VAE's summed loss needs it)
    // VQ-VAE: loss = recon_weight * mean((x_hat - x)^2) + quantizer loss
    // VAE:    loss = recon_weight * sum over the global batch of (x_hat - x)^2 + kl_weight * KLD
    float recon_weight;
    double data_variance;               // of the training images (stored in checkpoints)
} ModelSpec;
