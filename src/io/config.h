// config.h: the resolved configuration of a run. Loaded from YAML (libyaml) with nested sections,
// overridden by `section.key=value` arguments, validated strictly, printed at start and stored in
// every checkpoint as YAML text. docs/CONFIG.md lists every key; config.c holds the one table
// (key, type, range, default, help) that the parser, the printer and the docs all come from.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum { CONFIG_STRING_MAX = 512, CONFIG_NAME_MAX = 32 };
enum { CONFIG_LIST_MAX = 8 };

// A list of integers (model.channels: [16, 32, 64]).
typedef struct {
    int count;
    int values[CONFIG_LIST_MAX];
} ConfigIntList;

typedef struct {
    // model:
    char model_type[CONFIG_NAME_MAX];     // model.type: vqvae | vae
    char arch[CONFIG_NAME_MAX];           // model.arch: resnet | small | groupnorm
    int in_channels;                      // model.in_channels: 0 = the data's
    int num_hiddens;                      // model.num_hiddens: 128 (resnet)
    int num_residual_hiddens;             // model.num_residual_hiddens: 32 (resnet)
    int num_residual_layers;              // model.num_residual_layers: 2 (resnet)
    int embedding_dim;                    // model.embedding_dim: 64 (D)
    ConfigIntList channels;               // model.channels: [16, 32, 64] (small)
    ConfigIntList block_out_channels;     // model.block_out_channels: [64, 128] (groupnorm)
    int layers_per_block;                 // model.layers_per_block: 1 (groupnorm)
    int norm_num_groups;                  // model.norm_num_groups: 32 (groupnorm)
    float norm_eps;                       // model.norm_eps: 1e-6 (groupnorm)
    float dropout;                        // model.dropout: 0 (groupnorm)
    int mid_attention;                    // model.mid_attention: true (groupnorm)
    int latent_channels;                  // model.latent_channels: 0 = embedding_dim (groupnorm)

    // quantizer:
    char quantizer[CONFIG_NAME_MAX];      // quantizer.type: ema | vq
    int num_embeddings;                   // quantizer.num_embeddings: 512 (K)
    float commitment_cost;                // quantizer.commitment_cost: 0.25 (beta)
    float decay;                          // quantizer.decay: 0.99 (ema only)
    float epsilon;                        // quantizer.epsilon: 1e-5 (ema Laplace smoothing)
    char codebook_init[CONFIG_NAME_MAX];  // quantizer.init: auto | data | uniform | normal | kmeans
                                          //   auto = data for ema, uniform (U(+-1/K)) for vq;
                                          //   normal = the notebook's EMA init (N(0,1), sizes 0)
    int kmeans_samples;                   // quantizer.kmeans_samples: 0 = 64 x K latent vectors
    int kmeans_iters;                     // quantizer.kmeans_iters: 10 Lloyd iterations
    float dead_code_threshold;            // quantizer.dead_code_threshold: 0 = off (ema only)

    // vae (model.type vae):
    int vae_latent_dim;                   // vae.latent_dim: 16
    float vae_kl_weight;                  // vae.kl_weight: 1
    float vae_recon_weight;               // vae.recon_weight: 1

    // data:
    char dataset[CONFIG_NAME_MAX];        // data.dataset: fashion_mnist | mnist | cifar10 | synthetic
    char data_path[CONFIG_STRING_MAX];    // data.path: folder with the dataset files; "auto" (the
                                          //   default) = the dataset's own (config_data_path)
    int synthetic_count;                  // data.synthetic_count: 2048 training images (synthetic)
    int synthetic_channels;               // data.channels: 3 (synthetic)
    int synthetic_size;                   // data.image_size: 32 (synthetic, square)
    char data_range[CONFIG_NAME_MAX];     // data.range: auto | centered | unit | symmetric

    // train:
    int batch_size;                       // train.batch_size: 32, per rank (global = batch x world)
    int64_t steps;                        // train.steps: 1000
    int64_t pretrain_steps;               // train.pretrain_steps: 0 (autoencoder steps before quantizing)
    double lr;                            // train.lr: 1e-3
    double beta1, beta2;                  // train.beta1: 0.9, train.beta2: 0.999
    double adam_eps;                      // train.eps: 1e-8
    double weight_decay;                  // train.weight_decay: 0
    uint64_t seed;                        // train.seed: 1234
    char device[CONFIG_NAME_MAX];         // train.device: auto | cpu | cuda
    char precision[CONFIG_NAME_MAX];      // train.precision: tf32 | fp32 | bf16 (CUDA convolutions)
    int deterministic;                    // train.deterministic: false
    int threads;                          // train.threads: 0 = cores / local ranks (CPU backend)
    char cpu_conv[CONFIG_NAME_MAX];       // train.cpu_conv: auto | onednn | im2col (CPU convolutions)
    int eval_every;                       // train.eval_every: 0 = only at the end (steps)
    int eval_batches;                     // train.eval_batches: 0 = the whole test set
    int cuda_graph;                       // train.cuda_graph: false

    // checkpoint:
    char checkpoint_dir[CONFIG_STRING_MAX]; // checkpoint.dir: runs/default
    int checkpoint_every;                 // checkpoint.every: 1000 steps (0 = only at the end)
    int checkpoint_keep;                  // checkpoint.keep: 3

    // log:
    int log_every;                        // log.every: 50 steps
    char metrics_file[CONFIG_STRING_MAX]; // log.metrics_file: "" = <checkpoint.dir>/metrics.jsonl
    int usage_window;                     // log.usage_window: 100 steps for codebook usage

    // dist:
    char dist_backend[CONFIG_NAME_MAX];   // dist.backend: auto | nccl | mpi
    float dist_timeout_s;                 // dist.timeout_s: 300
    int verify_every;                     // dist.verify_every: 0 = never (steps)
} Config;

void config_defaults(Config *cfg);

// Each returns 0, or -1 with a message in err that names the file, key and value at fault and
// what was expected (and the closest valid key for an unknown one).
int config_load_file(Config *cfg, const char *path, char *err, size_t err_len);
int config_load_string(Config *cfg, const char *yaml_text, const char *source_name, char *err, size_t err_len);
int config_apply_override(Config *cfg, const char *assignment, char *err, size_t err_len);  // "train.lr=3e-4"
int config_validate(const Config *cfg, char *err, size_t err_len);  // cross-key checks

// The whole resolved config as YAML (every key, sectioned). Returns a malloc'd string.
char *config_to_yaml(const Config *cfg);
// 0 when a and b describe the same network (model.* and quantizer.type/num_embeddings), else -1
// with a message naming the first key that differs and both values.
int config_same_architecture(const Config *a, const Config *b, char *err, size_t err_len);
// The folder data.path names: itself, or for "auto" the dataset's standard folder
// (/usr/share/datasets/fashion-mnist, where Debian's dataset-fashion-mnist puts it, .../mnist,
// .../cifar10).
const char *config_data_path(const Config *cfg);
// 1 when full_key ("section.key") is a key of this program's config.
int config_has_key(const char *full_key);
// The keys of a YAML config text that this program does not know (a config written by a newer
// version): their number, and up to a line of them, comma-separated, in list. -1 when the text is
// not YAML this scan can follow (config_load_string then says why).
int config_unknown_keys(const char *yaml_text, char *list, size_t list_len);
// Print the table of keys (key, type, default, help) as markdown: used to generate docs/CONFIG.md.
void config_print_reference(FILE *out);
