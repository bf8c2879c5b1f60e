// config_keys.c: the one table of config keys (name, type, place in Config, range, default,
// help). Defaults, the YAML parser, overrides, validation, the YAML printer, the architecture
// comparison and docs/CONFIG.md all walk it, so adding a key is adding a row here and a field
// in config.h. Keys of one section must be next to each other: sections exist only as prefixes.
#include <string.h>

#include "io/config_internal.h"

const char *const CONFIG_TYPE_NAMES[] = {"int", "int64", "uint64", "float", "float", "string", "bool", "enum",
                                         "int list"};

#define FIELD(f) .offset = offsetof(Config, f), .size = sizeof(((Config *)0)->f)

const KeySpec CONFIG_KEYS[] = {
    {"model.type", KEY_ENUM, FIELD(model_type), .flags = ARCH, .choices = "vqvae|vae", .def = "vqvae",
     .help = "vqvae = encoder, vector quantizer, decoder; vae = the Gaussian VAE (model.arch small only: mean and "
             "log variance linears, reparameterization, KL term; the quantizer keys are unused)"},
    {"model.arch", KEY_ENUM, FIELD(arch), .flags = ARCH, .choices = "resnet|small|groupnorm", .def = "resnet",
     .help = "network: resnet = the PyTorch VQ-VAE notebook's Model; small = the classic MNIST VQ-VAE (three "
             "convs each way, docs/MODELS.md); groupnorm = the diffusers-style VQModel (GroupNorm, SiLU, attention)"},
    {"model.in_channels", KEY_INT, FIELD(in_channels), .flags = GE_MIN | LE_MAX | ARCH, .min = 0, .max = 16,
     .def = "0", .help = "image channels the network takes; 0 = the data's (any other value must match the data)"},
    {"model.num_hiddens", KEY_INT, FIELD(num_hiddens), .flags = GE_MIN | LE_MAX | ARCH, .min = 2, .max = 4096,
     .def = "128", .help = "channels h of the encoder/decoder trunk; the first conv has h/2, so h must be even"},
    {"model.num_residual_hiddens", KEY_INT, FIELD(num_residual_hiddens), .flags = GE_MIN | LE_MAX | ARCH, .min = 1,
     .max = 4096, .def = "32", .help = "channels inside each residual block (its 3x3 conv)"},
    {"model.num_residual_layers", KEY_INT, FIELD(num_residual_layers), .flags = GE_MIN | LE_MAX | ARCH, .min = 0,
     .max = 64, .def = "2", .help = "residual blocks in each of the encoder and decoder stacks"},
    {"model.embedding_dim", KEY_INT, FIELD(embedding_dim), .flags = GE_MIN | LE_MAX | ARCH, .min = 1, .max = 4096,
     .def = "64", .help = "D: channels of the latent, length of each codebook vector"},
    {"model.channels", KEY_INT_LIST, FIELD(channels), .flags = GE_MIN | LE_MAX | ARCH, .min = 1, .max = 4096,
     .def = "[16, 32, 64]", .help = "small: the widths of the three encoder convs (the decoder mirrors them); the "
                                    "last is the latent's channels, cut into groups of embedding_dim"},
    {"model.block_out_channels", KEY_INT_LIST, FIELD(block_out_channels), .flags = GE_MIN | LE_MAX | ARCH,
     .min = 1, .max = 4096, .def = "[64, 128]",
     .help = "groupnorm: channels of each down block (the up blocks reverse them); every block but the last halves "
             "the image"},
    {"model.layers_per_block", KEY_INT, FIELD(layers_per_block), .flags = GE_MIN | LE_MAX | ARCH, .min = 1,
     .max = 16, .def = "1", .help = "groupnorm: residual blocks per down block (up blocks have one more)"},
    {"model.norm_num_groups", KEY_INT, FIELD(norm_num_groups), .flags = GE_MIN | LE_MAX | ARCH, .min = 1,
     .max = 4096, .def = "32", .help = "groupnorm: GroupNorm groups; every block's channels must be divisible by it"},
    {"model.norm_eps", KEY_FLOAT, FIELD(norm_eps), .flags = GT_MIN, .min = 0, .def = "1e-6",
     .help = "groupnorm: GroupNorm epsilon"},
    {"model.dropout", KEY_FLOAT, FIELD(dropout), .flags = GE_MIN | LT_MAX, .min = 0, .max = 1, .def = "0",
     .help = "groupnorm: dropout probability inside the residual blocks (training only)"},
    {"model.mid_attention", KEY_BOOL, FIELD(mid_attention), .flags = ARCH, .def = "true",
     .help = "groupnorm: the self-attention layer in the mid blocks"},
    {"model.latent_channels", KEY_INT, FIELD(latent_channels), .flags = GE_MIN | LE_MAX | ARCH, .min = 0,
     .max = 4096, .def = "0", .help = "groupnorm: channels of the encoder's output (quant_conv maps them to "
                                      "embedding_dim); 0 = embedding_dim"},

    {"quantizer.type", KEY_ENUM, FIELD(quantizer), .flags = ARCH, .choices = "ema|vq", .def = "ema",
     .help = "ema = codebook updated by moving averages; vq = codebook learned by gradient"},
    {"quantizer.num_embeddings", KEY_INT, FIELD(num_embeddings), .flags = GE_MIN | LE_MAX | ARCH, .min = 1,
     .max = 1048576, .def = "512", .help = "K: number of codebook vectors"},
    {"quantizer.commitment_cost", KEY_FLOAT, FIELD(commitment_cost), .flags = GE_MIN, .min = 0, .def = "0.25",
     .help = "beta: weight of the commitment loss ||z - sg(e)||^2"},
    {"quantizer.decay", KEY_FLOAT, FIELD(decay), .flags = GE_MIN | LT_MAX, .min = 0, .max = 1, .def = "0.99",
     .help = "gamma of the EMA codebook update (ema only)"},
    {"quantizer.epsilon", KEY_FLOAT, FIELD(epsilon), .flags = GT_MIN, .min = 0, .def = "1e-5",
     .help = "Laplace smoothing of the EMA cluster sizes (ema only)"},
    {"quantizer.init", KEY_ENUM, FIELD(codebook_init), .choices = "auto|data|uniform|normal|kmeans", .def = "auto",
     .help = "codebook init: data = first batch's encoder outputs, kmeans = k-means++ and Lloyd on "
             "quantizer.kmeans_samples encoder outputs, uniform = U(+-1/K), normal = the notebook's N(0,1) with zero "
             "EMA sizes; auto = data for ema, uniform for vq. data and kmeans run when quantization starts (step 0, "
             "or after train.pretrain_steps)"},
    {"quantizer.kmeans_samples", KEY_INT, FIELD(kmeans_samples), .flags = GE_MIN, .min = 0, .def = "0",
     .help = "latent vectors the k-means init clusters (whole global batches, at least this many); 0 = 64 per code; "
             "at least quantizer.num_embeddings"},
    {"quantizer.kmeans_iters", KEY_INT, FIELD(kmeans_iters), .flags = GE_MIN | LE_MAX, .min = 0, .max = 10000,
     .def = "10", .help = "Lloyd iterations of the k-means init after its k-means++ seeding"},
    {"quantizer.dead_code_threshold", KEY_FLOAT, FIELD(dead_code_threshold), .flags = GE_MIN, .min = 0, .def = "0",
     .help = "restart a code whose EMA cluster size (expected hits per step) falls below this with an encoder "
             "output of the current global batch; 0 = off; ema only"},

    {"vae.latent_dim", KEY_INT, FIELD(vae_latent_dim), .flags = GE_MIN | LE_MAX | ARCH, .min = 1, .max = 4096,
     .def = "16", .help = "model.type vae: size of z (the mean and log-variance linears' outputs)"},
    {"vae.kl_weight", KEY_FLOAT, FIELD(vae_kl_weight), .flags = GE_MIN, .min = 0, .def = "1",
     .help = "model.type vae: weight of the KL term (beta of a beta-VAE)"},
    {"vae.recon_weight", KEY_FLOAT, FIELD(vae_recon_weight), .flags = GE_MIN, .min = 0, .def = "1",
     .help = "model.type vae: weight of the reconstruction loss (squared error summed over the global batch)"},

    {"data.dataset", KEY_ENUM, FIELD(dataset), .choices = "fashion_mnist|mnist|cifar10|synthetic",
     .def = "fashion_mnist", .help = "training data; synthetic = generated images, no files needed"},
    {"data.path", KEY_STRING, FIELD(data_path), .def = "auto",
     .help = "folder with the dataset files (IDX files for mnist and fashion_mnist, `data_batch_*.bin` for cifar10); "
             "auto = the dataset's own folder: /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist), "
             "/usr/share/datasets/mnist, /usr/share/datasets/cifar10"},
    {"data.synthetic_count", KEY_INT, FIELD(synthetic_count), .flags = GE_MIN | LE_MAX, .min = 1, .max = 1 << 30,
     .def = "2048", .help = "training images (synthetic only)"},
    // 16 = SYNTHETIC_MAX_CHANNELS in src/io/dataset.c.
    {"data.channels", KEY_INT, FIELD(synthetic_channels), .flags = GE_MIN | LE_MAX, .min = 1, .max = 16, .def = "3",
     .help = "image channels (synthetic only; real datasets have their own)"},
    {"data.image_size", KEY_INT, FIELD(synthetic_size), .flags = GE_MIN | LE_MAX, .min = 4, .max = 4096,
     .def = "32", .help = "image height and width, divisible by 4 (synthetic only)"},
    {"data.range", KEY_ENUM, FIELD(data_range), .flags = ARCH, .choices = "auto|centered|unit|symmetric",
     .def = "auto", .help = "pixel values the network sees: centered = [-0.5, 0.5] (the notebook's), unit = [0, 1], "
                            "symmetric = [-1, 1] (diffusers'); auto = centered for resnet, unit for small, symmetric "
                            "for groupnorm"},

    {"train.batch_size", KEY_INT, FIELD(batch_size), .flags = GE_MIN | LE_MAX, .min = 1, .max = 1 << 20,
     .def = "32", .help = "images per rank per step; the global batch is batch_size x ranks"},
    {"train.steps", KEY_INT64, FIELD(steps), .flags = GE_MIN, .min = 1, .def = "1000",
     .help = "total optimizer steps (a resumed run continues up to this)"},
    {"train.pretrain_steps", KEY_INT64, FIELD(pretrain_steps), .flags = GE_MIN, .min = 0, .def = "0",
     .help = "the first N steps train encoder and decoder as a plain autoencoder (the quantizer passes z through); "
             "then quantization starts, with the codebook init"},
    {"train.lr", KEY_DOUBLE, FIELD(lr), .flags = GT_MIN, .min = 0, .def = "1e-3", .help = "Adam learning rate"},
    {"train.beta1", KEY_DOUBLE, FIELD(beta1), .flags = GE_MIN | LT_MAX, .min = 0, .max = 1, .def = "0.9",
     .help = "Adam first-moment decay"},
    {"train.beta2", KEY_DOUBLE, FIELD(beta2), .flags = GE_MIN | LT_MAX, .min = 0, .max = 1, .def = "0.999",
     .help = "Adam second-moment decay"},
    {"train.eps", KEY_DOUBLE, FIELD(adam_eps), .flags = GT_MIN, .min = 0, .def = "1e-8", .help = "Adam epsilon"},
    {"train.weight_decay", KEY_DOUBLE, FIELD(weight_decay), .flags = GE_MIN, .min = 0, .def = "0",
     .help = "L2 penalty added to the gradient (Adam, not AdamW); 0 = off"},
    {"train.seed", KEY_UINT64, FIELD(seed), .def = "1234",
     .help = "seed of every random stream (init, shuffling, synthetic data)"},
    {"train.device", KEY_ENUM, FIELD(device), .choices = "auto|cpu|cuda", .def = "auto",
     .help = "backend; auto = cuda when a GPU is visible, else cpu"},
    {"train.precision", KEY_ENUM, FIELD(precision), .choices = "tf32|fp32|bf16", .def = "tf32",
     .help = "math of the convolutions (the quantizer stays fp32): cuda tf32, fp32 or bf16 (docs/CUDA.md); cpu "
             "fp32 (tf32 means fp32 there) or bf16: oneDNN on bf16 copies of the inputs, fp32 results and weights, "
             "needs AVX512-BF16 and pays only with AMX (docs/BENCHMARKS.md)"},
    {"train.deterministic", KEY_BOOL, FIELD(deterministic), .def = "false",
     .help = "deterministic CUDA algorithms (cpu runs are always bit-reproducible)"},
    {"train.threads", KEY_INT, FIELD(threads), .flags = GE_MIN | LE_MAX, .min = 0, .max = 4096, .def = "0",
     .help = "CPU threads per rank; 0 = cores / ranks on the node"},
    {"train.cpu_conv", KEY_ENUM, FIELD(cpu_conv), .choices = "auto|onednn|im2col", .def = "auto",
     .help = "CPU convolutions: oneDNN, or im2col + OpenBLAS (the reference); auto = onednn when built with it"},
    {"train.eval_every", KEY_INT, FIELD(eval_every), .flags = GE_MIN, .min = 0, .def = "0",
     .help = "evaluate on the test set every N steps; 0 = only at the end"},
    {"train.eval_batches", KEY_INT, FIELD(eval_batches), .flags = GE_MIN, .min = 0, .def = "0",
     .help = "batches per evaluation; 0 = the whole test set"},
    {"train.cuda_graph", KEY_BOOL, FIELD(cuda_graph), .def = "false",
     .help = "replay the training step as a CUDA graph (cuda with world 1 or dist.backend nccl; else a warning)"},

    {"checkpoint.dir", KEY_STRING, FIELD(checkpoint_dir), .def = "runs/default",
     .help = "folder for checkpoints, the `latest` pointer and the metrics log"},
    {"checkpoint.every", KEY_INT, FIELD(checkpoint_every), .flags = GE_MIN, .min = 0, .def = "1000",
     .help = "save every N steps; 0 = only at the end"},
    {"checkpoint.keep", KEY_INT, FIELD(checkpoint_keep), .flags = GE_MIN, .min = 1, .def = "3",
     .help = "keep the newest N checkpoints"},

    {"log.every", KEY_INT, FIELD(log_every), .flags = GE_MIN, .min = 1, .def = "50",
     .help = "print and log metrics every N steps"},
    {"log.metrics_file", KEY_STRING, FIELD(metrics_file), .def = "",
     .help = "metrics JSON lines; empty = `<checkpoint.dir>/metrics.jsonl`"},
    {"log.usage_window", KEY_INT, FIELD(usage_window), .flags = GE_MIN | LE_MAX, .min = 1, .max = 1000000,
     .def = "100", .help = "codebook usage = codes used in the last N steps / K"},

    {"dist.backend", KEY_ENUM, FIELD(dist_backend), .choices = "auto|nccl|mpi", .def = "auto",
     .help = "collectives; auto = nccl on cuda, mpi on cpu (mpi on cuda stages through the host)"},
    {"dist.timeout_s", KEY_FLOAT, FIELD(dist_timeout_s), .flags = GT_MIN, .min = 0, .def = "300",
     .help = "abort the job when a collective waits longer than this many seconds"},
    {"dist.verify_every", KEY_INT, FIELD(verify_every), .flags = GE_MIN, .min = 0, .def = "0",
     .help = "check every N steps that all ranks hold identical parameters; 0 = never"},
};

const size_t CONFIG_NUM_KEYS = sizeof CONFIG_KEYS / sizeof CONFIG_KEYS[0];
_Static_assert(sizeof CONFIG_KEYS / sizeof CONFIG_KEYS[0] <= CONFIG_MAX_KEYS, "raise CONFIG_MAX_KEYS");

size_t ck_section_len(const char *key) { return (size_t)(strchr(key, '.') - key); }
const char *ck_leaf(const char *key) { return strchr(key, '.') + 1; }

const KeySpec *ck_find(const char *full) {
    for (size_t i = 0; i < CONFIG_NUM_KEYS; i++)
        if (strcmp(CONFIG_KEYS[i].key, full) == 0) return &CONFIG_KEYS[i];
    return NULL;
}

int ck_find_section(const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < CONFIG_NUM_KEYS; i++)
        if (ck_section_len(CONFIG_KEYS[i].key) == n && strncmp(CONFIG_KEYS[i].key, name, n) == 0) return (int)i;
    return -1;
}

int ck_first_of_section(size_t i) {
    return i == 0 || ck_section_len(CONFIG_KEYS[i].key) != ck_section_len(CONFIG_KEYS[i - 1].key) ||
           strncmp(CONFIG_KEYS[i].key, CONFIG_KEYS[i - 1].key, ck_section_len(CONFIG_KEYS[i].key)) != 0;
}
