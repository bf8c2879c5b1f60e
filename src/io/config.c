// config.c: see config.h. One const table (KEYS) describes every key: its name, type, place in
// Config, range, default and help. Defaults, the YAML parser, overrides, validation, the YAML
// printer, the architecture comparison and docs/CONFIG.md all walk that table, so adding a key
// is adding one line here (and a field in config.h).
#include "io/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "core/common.h"
#include "io/utf8.h"

// KEY_DOUBLE: values used in double arithmetic (Adam's hyperparameters, as Python floats are).
typedef enum { KEY_INT, KEY_INT64, KEY_UINT64, KEY_FLOAT, KEY_DOUBLE, KEY_STRING, KEY_BOOL, KEY_ENUM } KeyType;
static const char *const TYPE_NAMES[] = {"int", "int64", "uint64", "float", "float", "string", "bool", "enum"};

// Flags: which bounds apply (value >= min, > min, <= max, < max), and whether the key changes
// the network's parameter shapes (compared on resume by config_same_architecture).
enum { GE_MIN = 1, GT_MIN = 2, LE_MAX = 4, LT_MAX = 8, ARCH = 16 };

typedef struct {
    const char *key;      // "section.name"
    KeyType type;
    size_t offset, size;  // where in Config, and the field's size (the buffer size for strings)
    int flags;
    double min, max;
    const char *choices;  // enum only: "ema|vq"
    const char *def;      // the default, as text: parsed by the same code as a YAML value
    const char *help;
} KeySpec;

#define FIELD(f) .offset = offsetof(Config, f), .size = sizeof(((Config *)0)->f)

static const KeySpec KEYS[] = {
    {"model.arch", KEY_ENUM, FIELD(arch), .flags = ARCH, .choices = "resnet", .def = "resnet",
     .help = "network; resnet = the PyTorch VQ-VAE notebook's Model"},
    {"model.num_hiddens", KEY_INT, FIELD(num_hiddens), .flags = GE_MIN | LE_MAX | ARCH, .min = 2, .max = 4096,
     .def = "128", .help = "channels h of the encoder/decoder trunk; the first conv has h/2, so h must be even"},
    {"model.num_residual_hiddens", KEY_INT, FIELD(num_residual_hiddens), .flags = GE_MIN | LE_MAX | ARCH, .min = 1,
     .max = 4096, .def = "32", .help = "channels inside each residual block (its 3x3 conv)"},
    {"model.num_residual_layers", KEY_INT, FIELD(num_residual_layers), .flags = GE_MIN | LE_MAX | ARCH, .min = 0,
     .max = 64, .def = "2", .help = "residual blocks in each of the encoder and decoder stacks"},
    {"model.embedding_dim", KEY_INT, FIELD(embedding_dim), .flags = GE_MIN | LE_MAX | ARCH, .min = 1, .max = 4096,
     .def = "64", .help = "D: channels of the latent, length of each codebook vector"},

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
     .help = "math of the CUDA convolutions (the quantizer stays fp32; cpu is always fp32)"},
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
#define NUM_KEYS (sizeof KEYS / sizeof KEYS[0])

// ---- small helpers over the table -----------------------------------------------------------

static size_t section_len(const char *key) { return (size_t)(strchr(key, '.') - key); }
static const char *leaf_of(const char *key) { return strchr(key, '.') + 1; }

static const KeySpec *find_key(const char *full) {
    for (size_t i = 0; i < NUM_KEYS; i++)
        if (strcmp(KEYS[i].key, full) == 0) return &KEYS[i];
    return NULL;
}

// Index of the first key of section `name`, or -1: sections exist only as key prefixes.
int config_has_key(const char *full_key) { return find_key(full_key) != NULL; }

const char *config_data_path(const Config *cfg) {
    if (strcmp(cfg->data_path, "auto") != 0) return cfg->data_path;
    if (strcmp(cfg->dataset, "mnist") == 0) return "/usr/share/datasets/mnist";
    if (strcmp(cfg->dataset, "cifar10") == 0) return "/usr/share/datasets/cifar10";
    return "/usr/share/datasets/fashion-mnist";
}

static int find_section(const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < NUM_KEYS; i++)
        if (section_len(KEYS[i].key) == n && strncmp(KEYS[i].key, name, n) == 0) return (int)i;
    return -1;
}

static int is_first_of_section(size_t i) {
    return i == 0 || section_len(KEYS[i].key) != section_len(KEYS[i - 1].key) ||
           strncmp(KEYS[i].key, KEYS[i - 1].key, section_len(KEYS[i].key)) != 0;
}

static void *field(Config *cfg, const KeySpec *k) { return (char *)cfg + k->offset; }
static const void *cfield(const Config *cfg, const KeySpec *k) { return (const char *)cfg + k->offset; }

// Append printf output at *pos of buf[len] (truncating, always NUL-terminated).
__attribute__((format(printf, 4, 5))) static void append(char *buf, size_t len, size_t *pos, const char *fmt, ...) {
    if (*pos >= len) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *pos, len - *pos, fmt, ap);
    va_end(ap);
    if (n > 0) *pos = *pos + (size_t)n < len ? *pos + (size_t)n : len;
}

// Walks an enum's "ema|vq": returns the next choice and its length in *len, or NULL at the end.
static const char *next_choice(const char **cursor, int *len) {
    const char *c = *cursor;
    if (!c) return NULL;
    const char *bar = strchr(c, '|');
    *len = bar ? (int)(bar - c) : (int)strlen(c);
    *cursor = bar ? bar + 1 : NULL;
    return c;
}

// "ema|vq" -> "[ema, vq]"
static void choices_list(const char *choices, char *buf, size_t len) {
    size_t pos = 0;
    append(buf, len, &pos, "[");
    int n;
    for (const char *cur = choices, *c; (c = next_choice(&cur, &n));)
        append(buf, len, &pos, "%s%.*s", c == choices ? "" : ", ", n, c);
    append(buf, len, &pos, "]");
}

static int enum_has(const char *choices, const char *text) {
    int n;
    for (const char *cur = choices, *c; (c = next_choice(&cur, &n));)
        if ((size_t)n == strlen(text) && strncmp(c, text, (size_t)n) == 0) return 1;
    return 0;
}

// Numbers print with the fewest digits that read back to the identical float (6..9 digits) or
// double (6..17), always with a '.' so that YAML 1.1 readers (PyYAML) see a float: 0.001, 300.0,
// 1.0e-05.
static void format_number(double v, int single, char *buf, size_t len) {
    char digits[40];
    for (int p = 6; p <= (single ? 9 : 17); p++) {
        snprintf(digits, sizeof digits, "%.*g", p, v);
        if (single ? strtof(digits, NULL) == (float)v : strtod(digits, NULL) == v) break;
    }
    char *e = strchr(digits, 'e');
    if (strpbrk(digits, ".ni")) snprintf(buf, len, "%s", digits);  // has a point, or is inf/nan
    else if (e) snprintf(buf, len, "%.*s.0%s", (int)(e - digits), digits, e);
    else snprintf(buf, len, "%s.0", digits);
}

static void format_float(float v, char *buf, size_t len) { format_number(v, 1, buf, len); }
static void format_double(double v, char *buf, size_t len) { format_number(v, 0, buf, len); }

// The value of key k in cfg as text (unquoted).
static void format_value(const KeySpec *k, const Config *cfg, char *buf, size_t len) {
    const void *p = cfield(cfg, k);
    switch (k->type) {
    case KEY_INT: snprintf(buf, len, "%d", *(const int *)p); break;
    case KEY_INT64: snprintf(buf, len, "%" PRId64, *(const int64_t *)p); break;
    case KEY_UINT64: snprintf(buf, len, "%" PRIu64, *(const uint64_t *)p); break;
    case KEY_FLOAT: format_float(*(const float *)p, buf, len); break;
    case KEY_DOUBLE: format_double(*(const double *)p, buf, len); break;
    case KEY_BOOL: snprintf(buf, len, "%s", *(const int *)p ? "true" : "false"); break;
    case KEY_STRING:
    case KEY_ENUM: snprintf(buf, len, "%.*s", (int)k->size, (const char *)p); break;
    }
}

static double numeric_value(const KeySpec *k, const Config *cfg) {
    const void *p = cfield(cfg, k);
    switch (k->type) {
    case KEY_INT: return *(const int *)p;
    case KEY_INT64: return (double)*(const int64_t *)p;
    case KEY_UINT64: return (double)*(const uint64_t *)p;
    case KEY_FLOAT: return *(const float *)p;
    case KEY_DOUBLE: return *(const double *)p;
    default: return 0;
    }
}

// 0 when v satisfies k's bounds, else -1 with "KEY must be >= 1, got TEXT". Written so NaN fails.
static int check_range(const KeySpec *k, double v, const char *text, char *msg, size_t msg_len) {
    if ((k->type == KEY_FLOAT || k->type == KEY_DOUBLE) && !isfinite(v))
        return set_error(msg, msg_len, "%s must be a finite number, got %s", k->key, text);
    const char *op = NULL;
    double bound = 0;
    if ((k->flags & GE_MIN) && !(v >= k->min)) op = ">=", bound = k->min;
    else if ((k->flags & GT_MIN) && !(v > k->min)) op = ">", bound = k->min;
    else if ((k->flags & LE_MAX) && !(v <= k->max)) op = "<=", bound = k->max;
    else if ((k->flags & LT_MAX) && !(v < k->max)) op = "<", bound = k->max;
    if (!op) return 0;
    return set_error(msg, msg_len, "%s must be %s %.10g, got %s", k->key, op, bound, text);
}

// What a key's value looks like, for messages.
static const char *expected_kind(const KeySpec *k) {
    switch (k->type) {
    case KEY_FLOAT:
    case KEY_DOUBLE: return "a number";
    case KEY_BOOL: return "true or false";
    case KEY_STRING: return "a string";
    case KEY_ENUM: return "a name";
    default: return "an integer";
    }
}

static int parse_bool(const char *s, int *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) { *out = 1; return 0; }
        if (strcasecmp(s, no[i]) == 0) { *out = 0; return 0; }
    }
    return -1;
}

// "'abc'" or "an empty value", for messages; long values are cut.
static void quote_got(const char *text, char *buf, size_t len) {
    if (!*text) snprintf(buf, len, "an empty value");
    else snprintf(buf, len, "'%.80s%s'", text, strlen(text) > 80 ? "..." : "");
}

// Parse text as the value of key k and store it in cfg. On failure cfg is unchanged and msg says
// what was expected ("train.batch_size must be an integer, got 'abc'"), without a location; hint
// gets "; did you mean 'ema'?" or stays empty.
static int set_value(Config *cfg, const KeySpec *k, const char *text, char *msg, size_t msg_len, char *hint,
                     size_t hint_len) {
    char got[100];
    quote_got(text, got, sizeof got);
    if (hint_len) hint[0] = '\0';
    void *p = field(cfg, k);
    char *end = NULL;
    // Numbers: no leading blanks, no trailing junk (strto* would accept " 12" and stop at "12abc").
    int numeric = k->type == KEY_INT || k->type == KEY_INT64 || k->type == KEY_UINT64 || k->type == KEY_FLOAT ||
                  k->type == KEY_DOUBLE;
    if (numeric && (!*text || isspace((unsigned char)text[0])))
        return set_error(msg, msg_len, "%s must be %s, got %s", k->key, expected_kind(k), got);
    switch (k->type) {
    case KEY_INT:
    case KEY_INT64: {
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (*end) return set_error(msg, msg_len, "%s must be an integer, got %s", k->key, got);
        long long lo = k->type == KEY_INT ? INT_MIN : INT64_MIN, hi = k->type == KEY_INT ? INT_MAX : INT64_MAX;
        if (errno == ERANGE || v < lo || v > hi) {  // too big for the field: report the key's bound if it has one
            if (check_range(k, text[0] == '-' ? -HUGE_VAL : HUGE_VAL, text, msg, msg_len)) return -1;
            return set_error(msg, msg_len, "%s must be an integer in [%lld, %lld], got %s", k->key, lo, hi, got);
        }
        if (check_range(k, (double)v, text, msg, msg_len)) return -1;
        if (k->type == KEY_INT) *(int *)p = (int)v;
        else *(int64_t *)p = v;
        return 0;
    }
    case KEY_UINT64: {
        errno = 0;
        unsigned long long v = strtoull(text, &end, 10);
        if (*end || text[0] == '-')
            return set_error(msg, msg_len, "%s must be a non-negative integer, got %s", k->key, got);
        if (errno == ERANGE)
            return set_error(msg, msg_len, "%s must be an integer in [0, %" PRIu64 "], got %s", k->key, UINT64_MAX, got);
        *(uint64_t *)p = v;
        return 0;
    }
    case KEY_FLOAT: {
        float v = strtof(text, &end);
        if (*end) return set_error(msg, msg_len, "%s must be a number (like 0.25 or 1e-3), got %s", k->key, got);
        if (!isfinite(v)) return set_error(msg, msg_len, "%s must be a finite number that fits a float, got %s", k->key, got);
        if (check_range(k, v, text, msg, msg_len)) return -1;
        *(float *)p = v;
        return 0;
    }
    case KEY_DOUBLE: {
        double v = strtod(text, &end);
        if (*end) return set_error(msg, msg_len, "%s must be a number (like 0.25 or 1e-3), got %s", k->key, got);
        if (!isfinite(v)) return set_error(msg, msg_len, "%s must be a finite number, got %s", k->key, got);
        if (check_range(k, v, text, msg, msg_len)) return -1;
        *(double *)p = v;
        return 0;
    }
    case KEY_BOOL: {
        int v;
        if (parse_bool(text, &v))
            return set_error(msg, msg_len, "%s must be true or false (or yes/no, on/off, 1/0), got %s", k->key, got);
        *(int *)p = v;
        return 0;
    }
    case KEY_ENUM: {
        if (!enum_has(k->choices, text)) {
            char list[200];
            choices_list(k->choices, list, sizeof list);
            // Suggest the closest choice when it is plausibly a typo ("emma") or a prefix ("cifar").
            const char *best = NULL;
            int best_d = 1 << 30, best_len = 0, n;
            for (const char *cur = k->choices, *c; (c = next_choice(&cur, &n));) {
                char one[CONFIG_NAME_MAX];
                snprintf(one, sizeof one, "%.*s", n, c);
                int d = edit_distance(text, one);
                if (*text && strncasecmp(one, text, strlen(text)) == 0) d = 1;
                if (d < best_d) best_d = d, best = c, best_len = n;
            }
            if (best && best_d <= 2 && hint_len) snprintf(hint, hint_len, "; did you mean '%.*s'?", best_len, best);
            return set_error(msg, msg_len, "%s must be one of %s, got %s", k->key, list, got);
        }
        memset(p, 0, k->size);
        memcpy(p, text, strlen(text));  // choices are shorter than CONFIG_NAME_MAX
        return 0;
    }
    case KEY_STRING: {
        size_t n = strlen(text);
        if (n >= k->size)
            return set_error(msg, msg_len, "%s is too long (%zu bytes, at most %zu), got %s", k->key, n, k->size - 1,
                             got);
        long bad = utf8_invalid_at(text);   // the config is stored as YAML, which is UTF-8
        if (bad >= 0)
            return set_error(msg, msg_len, "%s must be UTF-8 text; byte %ld (0x%02x) is not, got %s", k->key, bad,
                             (unsigned char)text[bad], got);
        memset(p, 0, k->size);  // zero the tail so equal configs compare equal byte for byte
        memcpy(p, text, n);
        return 0;
    }
    }
    return set_error(msg, msg_len, "%s: unknown key type", k->key);
}

// Appends "sections are model, quantizer, ...".
static void section_list(char *buf, size_t len, size_t *pos) {
    append(buf, len, pos, "sections are");
    for (size_t i = 0; i < NUM_KEYS; i++)
        if (is_first_of_section(i))
            append(buf, len, pos, "%s %.*s", i ? "," : "", (int)section_len(KEYS[i].key), KEYS[i].key);
}

// Hint for an unknown name ("train.lrr", "trian", "lr"): the nearest key by edit distance over the
// full dotted keys and over the leaf within its section; an exact leaf in another section wins
// ("train.decay" -> "quantizer.decay"). Without a close one, lists the section's keys.
static void suggest_key(const char *name, char *hint, size_t hint_len) {
    const char *dot = strchr(name, '.');
    size_t sec_n = dot ? (size_t)(dot - name) : 0;
    const char *leaf = dot ? dot + 1 : name;
    const KeySpec *best = NULL;
    int best_d = 1 << 30;
    for (size_t i = 0; i < NUM_KEYS; i++) {
        const KeySpec *k = &KEYS[i];
        int d = edit_distance(name, k->key);
        int same_section = dot && section_len(k->key) == sec_n && strncmp(k->key, name, sec_n) == 0;
        if (same_section) {
            int dl = edit_distance(leaf, leaf_of(k->key));
            if (dl < d) d = dl;
            size_t ll = strlen(leaf), kl = strlen(leaf_of(k->key));
            size_t shorter = ll < kl ? ll : kl;
            if (shorter >= 3 && strncmp(leaf, leaf_of(k->key), shorter) == 0 && d > 1) d = 1;  // "commitment"
                                                                                              // -> commitment_cost
        }
        if (strcmp(leaf, leaf_of(k->key)) == 0) d = 0;
        if (d < best_d) best_d = d, best = k;
    }
    int limit = (int)strlen(leaf) / 3 > 2 ? (int)strlen(leaf) / 3 : 2;
    if (best && best_d <= limit) {
        snprintf(hint, hint_len, "; did you mean '%s'?", best->key);
        return;
    }
    size_t pos = 0;
    hint[0] = '\0';
    char section[64];
    snprintf(section, sizeof section, "%.*s", (int)sec_n, name);
    int first = dot ? find_section(section) : -1;
    if (first < 0) {
        append(hint, hint_len, &pos, "; keys are section.name, ");
        section_list(hint, hint_len, &pos);
        return;
    }
    append(hint, hint_len, &pos, "; valid keys in section '%s':", section);
    for (size_t i = (size_t)first; i < NUM_KEYS && (i == (size_t)first || !is_first_of_section(i)); i++)
        append(hint, hint_len, &pos, "%s %s", i == (size_t)first ? "" : ",", leaf_of(KEYS[i].key));
}

// Hint for an unknown top-level name: a close section, or the key it names when written flat
// ("train.lr:" or a bare "lr:" at the top level).
static void suggest_section(const char *name, char *hint, size_t hint_len) {
    const KeySpec *k = find_key(name);
    if (k) {
        snprintf(hint, hint_len, "; write '%s' nested: a line '%.*s:' with '  %s: ...' under it", name,
                 (int)section_len(k->key), k->key, leaf_of(k->key));
        return;
    }
    for (size_t i = 0; i < NUM_KEYS; i++)
        if (strcmp(name, leaf_of(KEYS[i].key)) == 0) {
            snprintf(hint, hint_len, "; did you mean '%s' (key '%s' inside section '%.*s:')?", KEYS[i].key, name,
                     (int)section_len(KEYS[i].key), KEYS[i].key);
            return;
        }
    const char *best = NULL;
    int best_d = 1 << 30, best_n = 0;
    for (size_t i = 0; i < NUM_KEYS; i++) {
        if (!is_first_of_section(i)) continue;
        char section[64];
        snprintf(section, sizeof section, "%.*s", (int)section_len(KEYS[i].key), KEYS[i].key);
        int d = edit_distance(name, section);
        if (d < best_d) best_d = d, best = KEYS[i].key, best_n = (int)section_len(KEYS[i].key);
    }
    if (best && best_d <= 2) {
        snprintf(hint, hint_len, "; did you mean '%.*s'?", best_n, best);
        return;
    }
    size_t pos = 0;
    append(hint, hint_len, &pos, "; ");
    section_list(hint, hint_len, &pos);
}

// ---- public API -------------------------------------------------------------------------------

void config_defaults(Config *cfg) {
    memset(cfg, 0, sizeof *cfg);  // padding and string tails too, so configs compare with memcmp
    for (size_t i = 0; i < NUM_KEYS; i++) {
        char msg[256];
        int rc = set_value(cfg, &KEYS[i], KEYS[i].def, msg, sizeof msg, NULL, 0);
        CHECK(rc == 0, "bad default in the config table: %s", msg);
    }
}

// The YAML walk: one event at a time, so at most one event is alive and errors can return
// straight away (load_string frees it).
typedef struct {
    yaml_parser_t parser;
    yaml_event_t event;
    int have_event;
    const char *source;         // file name for messages
    const char *text;           // the YAML text (to spot tabs at an error)
    Config *cfg;
    int key_line[NUM_KEYS];     // line where each key was set (0 = not yet): duplicates
    int section_line[NUM_KEYS]; // indexed by the section's first key
    char *err;
    size_t err_len;
} Loader;

static int line_of(const Loader *L) { return (int)L->event.start_mark.line + 1; }

static int next_event(Loader *L) {
    if (L->have_event) yaml_event_delete(&L->event);
    L->have_event = 0;
    if (yaml_parser_parse(&L->parser, &L->event)) {
        L->have_event = 1;
        return 0;
    }
    const yaml_parser_t *p = &L->parser;
    if (p->error == YAML_MEMORY_ERROR) return set_error(L->err, L->err_len, "out of memory parsing %s", L->source);
    const char *problem = p->problem ? p->problem : "malformed YAML";
    if (p->error == YAML_READER_ERROR) {  // bad bytes: libyaml gives a byte offset, not a line
        int line = 1;
        for (size_t i = 0; i < p->problem_offset && L->text[i]; i++) line += L->text[i] == '\n';
        return set_error(L->err, L->err_len, "YAML error in %s line %d (byte %zu): %s; the file must be UTF-8 text",
                         L->source, line, p->problem_offset, problem);
    }
    int at_tab = p->problem_mark.index < strlen(L->text) && L->text[p->problem_mark.index] == '\t';
    const char *tab = at_tab ? " (YAML does not allow tabs; indent with spaces)" : "";
    if (p->context)
        return set_error(L->err, L->err_len, "YAML syntax error in %s line %d, column %d: %s (%s from line %d)%s",
                         L->source, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1, problem,
                         p->context, (int)p->context_mark.line + 1, tab);
    return set_error(L->err, L->err_len, "YAML syntax error in %s line %d, column %d: %s%s", L->source,
                     (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1, problem, tab);
}

static const char *event_kind(const yaml_event_t *e) {
    switch (e->type) {
    case YAML_MAPPING_START_EVENT: return "a mapping";
    case YAML_SEQUENCE_START_EVENT: return "a list";
    case YAML_ALIAS_EVENT: return "an alias (*name; aliases are not supported)";
    default: return "something else";
    }
}

static const char *scalar_text(const Loader *L) { return (const char *)L->event.data.scalar.value; }

// A plain empty, ~ or null value: an empty section, or an empty string value.
static int is_null_scalar(const Loader *L) {
    if (L->event.type != YAML_SCALAR_EVENT || L->event.data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *s = scalar_text(L);
    return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

// The keys of one section, after its MAPPING_START.
static int load_section(Loader *L, const char *section) {
    for (;;) {
        if (next_event(L)) return -1;
        if (L->event.type == YAML_MAPPING_END_EVENT) return 0;
        int line = line_of(L);
        if (L->event.type != YAML_SCALAR_EVENT)
            return set_error(L->err, L->err_len, "a key in section '%s' is %s in %s line %d; expected a name",
                             section, event_kind(&L->event), L->source, line);
        char full[220];
        snprintf(full, sizeof full, "%s.%.100s", section, scalar_text(L));
        const KeySpec *k = find_key(full);
        if (!k) {
            char hint[400];
            suggest_key(full, hint, sizeof hint);
            return set_error(L->err, L->err_len, "unknown key '%s' in %s line %d%s", full, L->source, line, hint);
        }
        size_t index = (size_t)(k - KEYS);
        if (L->key_line[index])
            return set_error(L->err, L->err_len, "duplicate key '%s' in %s line %d (already set at line %d)", k->key,
                             L->source, line, L->key_line[index]);
        L->key_line[index] = line;
        if (next_event(L)) return -1;
        line = line_of(L);
        if (L->event.type != YAML_SCALAR_EVENT) {
            return set_error(L->err, L->err_len, "%s must be a single value (%s), got %s in %s line %d", k->key,
                             expected_kind(k),
                             event_kind(&L->event), L->source, line);
        }
        const char *text = k->type == KEY_STRING && is_null_scalar(L) ? "" : scalar_text(L);
        char msg[700], hint[100];
        if (set_value(L->cfg, k, text, msg, sizeof msg, hint, sizeof hint))
            return set_error(L->err, L->err_len, "%s in %s line %d%s", msg, L->source, line, hint);
    }
}

// The sections of the top-level mapping, after its MAPPING_START.
static int load_sections(Loader *L) {
    for (;;) {
        if (next_event(L)) return -1;
        if (L->event.type == YAML_MAPPING_END_EVENT) return 0;
        int line = line_of(L);
        if (L->event.type != YAML_SCALAR_EVENT)
            return set_error(L->err, L->err_len, "a top-level key is %s in %s line %d; expected a section name",
                             event_kind(&L->event), L->source, line);
        char section[104];
        snprintf(section, sizeof section, "%.100s", scalar_text(L));
        int first = find_section(section);
        if (first < 0) {
            char hint[300];
            suggest_section(section, hint, sizeof hint);
            return set_error(L->err, L->err_len, "unknown section '%s' in %s line %d%s", section, L->source, line, hint);
        }
        if (L->section_line[first])
            return set_error(L->err, L->err_len, "duplicate section '%s' in %s line %d (first at line %d); merge them",
                             section, L->source, line, L->section_line[first]);
        L->section_line[first] = line;
        if (next_event(L)) return -1;
        if (L->event.type == YAML_MAPPING_START_EVENT) {
            if (load_section(L, section)) return -1;
        } else if (!is_null_scalar(L)) {  // "train:" with nothing under it is fine
            char got[120];
            if (L->event.type == YAML_SCALAR_EVENT) quote_got(scalar_text(L), got, sizeof got);
            else snprintf(got, sizeof got, "%s", event_kind(&L->event));
            return set_error(L->err, L->err_len, "section '%s' in %s line %d must hold 'key: value' lines, got %s",
                             section, L->source, line_of(L), got);
        }
    }
}

static int load_stream(Loader *L) {
    if (next_event(L)) return -1;  // STREAM_START
    if (next_event(L)) return -1;
    if (L->event.type == YAML_STREAM_END_EVENT) return 0;  // empty file or only comments
    if (next_event(L)) return -1;                          // after DOCUMENT_START: the root
    if (L->event.type == YAML_MAPPING_START_EVENT) {
        if (load_sections(L)) return -1;
    } else if (!is_null_scalar(L)) {
        char got[120];
        if (L->event.type == YAML_SCALAR_EVENT) quote_got(scalar_text(L), got, sizeof got);
        else snprintf(got, sizeof got, "%s", event_kind(&L->event));
        return set_error(L->err, L->err_len, "%s line %d: expected sections like 'train:' with 'key: value' lines "
                         "under them, got %s", L->source, line_of(L), got);
    }
    if (next_event(L)) return -1;  // DOCUMENT_END
    if (next_event(L)) return -1;
    if (L->event.type != YAML_STREAM_END_EVENT)
        return set_error(L->err, L->err_len, "%s line %d: a second YAML document ('---'); a config is one document",
                         L->source, line_of(L));
    return 0;
}

// Loads on top of the defaults into a copy, so that cfg is untouched on error.
int config_load_string(Config *cfg, const char *yaml_text, const char *source_name, char *err, size_t err_len) {
    Config tmp;
    config_defaults(&tmp);
    Loader loader, *L = &loader;
    memset(L, 0, sizeof *L);
    L->source = source_name ? source_name : "<string>";
    L->text = yaml_text;
    L->cfg = &tmp;
    L->err = err;
    L->err_len = err_len;
    CHECK(yaml_parser_initialize(&L->parser), "yaml_parser_initialize failed (out of memory)");
    yaml_parser_set_input_string(&L->parser, (const unsigned char *)yaml_text, strlen(yaml_text));
    int rc = load_stream(L);
    if (L->have_event) yaml_event_delete(&L->event);
    yaml_parser_delete(&L->parser);
    if (rc == 0) memcpy(cfg, &tmp, sizeof tmp);
    return rc;
}

int config_load_file(Config *cfg, const char *path, char *err, size_t err_len) {
    size_t len;
    char *text = read_text_file(path, &len, err, err_len);
    if (!text) return -1;
    // The parser reads a C string: everything after a NUL would be silently ignored.
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        int line = 1;
        for (const char *p = text; p < nul; p++) line += *p == '\n';
        set_error(err, err_len, "%s has a NUL byte at offset %zu (line %d); a config is text: remove it (the file "
                  "may be damaged or not a YAML file)", path, (size_t)(nul - text), line);
        free(text);
        return -1;
    }
    int rc = config_load_string(cfg, text, path, err, err_len);
    free(text);
    return rc;
}

int config_apply_override(Config *cfg, const char *assignment, char *err, size_t err_len) {
    const char *eq = strchr(assignment, '=');
    if (!eq)
        return set_error(err, err_len, "in command-line override '%s': expected section.key=value, like train.lr=3e-4",
                         assignment);
    // Trim blanks around the key and the value ("train.lr = 3e-4" from a quoted argument).
    const char *ks = assignment, *ke = eq, *vs = eq + 1, *ve = eq + 1 + strlen(eq + 1);
    while (ks < ke && isspace((unsigned char)*ks)) ks++;
    while (ke > ks && isspace((unsigned char)ke[-1])) ke--;
    while (*vs && isspace((unsigned char)*vs)) vs++;
    while (ve > vs && isspace((unsigned char)ve[-1])) ve--;
    char key[160];
    snprintf(key, sizeof key, "%.*s", (int)(ke - ks) < 150 ? (int)(ke - ks) : 150, ks);
    const KeySpec *k = find_key(key);
    if (!k) {
        char hint[400];
        suggest_key(key, hint, sizeof hint);
        return set_error(err, err_len, "in command-line override '%s': unknown key '%s'%s", assignment, key, hint);
    }
    size_t n = (size_t)(ve - vs);
    char *value = xmalloc(n + 1);
    memcpy(value, vs, n);
    value[n] = '\0';
    char msg[700], hint[100];
    int rc = set_value(cfg, k, value, msg, sizeof msg, hint, sizeof hint);
    free(value);
    if (rc) return set_error(err, err_len, "in command-line override '%s': %s%s", assignment, msg, hint);
    return 0;
}

int config_validate(const Config *cfg, char *err, size_t err_len) {
    // Per key: the same ranges and choices as the parser (a Config may be filled in by code).
    for (size_t i = 0; i < NUM_KEYS; i++) {
        const KeySpec *k = &KEYS[i];
        char text[CONFIG_STRING_MAX + 8];
        if ((k->type == KEY_STRING || k->type == KEY_ENUM) && !memchr(cfield(cfg, k), '\0', k->size))
            return set_error(err, err_len, "%s is not NUL-terminated", k->key);
        format_value(k, cfg, text, sizeof text);
        if (k->type == KEY_ENUM && !enum_has(k->choices, text)) {
            char list[200];
            choices_list(k->choices, list, sizeof list);
            return set_error(err, err_len, "%s must be one of %s, got '%s'", k->key, list, text);
        }
        if (k->type != KEY_STRING && k->type != KEY_ENUM && k->type != KEY_BOOL &&
            check_range(k, numeric_value(k, cfg), text, err, err_len))
            return -1;
    }
    // Across keys.
    if (cfg->num_hiddens % 2 != 0)
        return set_error(err, err_len, "model.num_hiddens must be even (the first encoder conv has num_hiddens/2 "
                         "channels), got %d", cfg->num_hiddens);
    int synthetic = strcmp(cfg->dataset, "synthetic") == 0;
    if (synthetic && cfg->synthetic_size % 4 != 0)
        return set_error(err, err_len, "data.image_size must be divisible by 4 with data.dataset synthetic (the "
                         "encoder halves it twice), got %d", cfg->synthetic_size);
    if (synthetic && cfg->synthetic_count < cfg->batch_size)
        return set_error(err, err_len, "data.synthetic_count (%d) must be >= train.batch_size (%d)",
                         cfg->synthetic_count, cfg->batch_size);
    if (!synthetic && !cfg->data_path[0])
        return set_error(err, err_len, "data.path is empty; data.dataset %s needs the folder with its files",
                         cfg->dataset);
    if (!cfg->checkpoint_dir[0]) return set_error(err, err_len, "checkpoint.dir is empty; give a folder like runs/x");
    if (cfg->dead_code_threshold > 0 && strcmp(cfg->quantizer, "ema") != 0)
        return set_error(err, err_len, "quantizer.dead_code_threshold (%g) compares EMA cluster sizes, so it needs "
                         "quantizer.type ema (got %s); set it to 0 or use ema", cfg->dead_code_threshold, cfg->quantizer);
    if (cfg->kmeans_samples > 0 && cfg->kmeans_samples < cfg->num_embeddings)
        return set_error(err, err_len, "quantizer.kmeans_samples (%d) must be at least quantizer.num_embeddings (%d): "
                         "k-means needs a sample per code; use 0 for 64 per code", cfg->kmeans_samples,
                         cfg->num_embeddings);
    if (cfg->pretrain_steps >= cfg->steps && cfg->pretrain_steps > 0)
        return set_error(err, err_len, "train.pretrain_steps (%lld) must be less than train.steps (%lld), or nothing "
                         "is ever quantized", (long long)cfg->pretrain_steps, (long long)cfg->steps);
    if (strcmp(cfg->dist_backend, "nccl") == 0 && strcmp(cfg->device, "cpu") == 0)
        return set_error(err, err_len, "dist.backend nccl needs GPUs but train.device is cpu; use dist.backend mpi "
                         "or auto");
    return 0;
}

// The inside of a double-quoted YAML scalar that reads back as exactly s: escapes for quotes,
// backslashes, controls, and the characters YAML folds (line breaks) or refuses in a stream.
static void write_quoted(FILE *f, const char *s, size_t size) {
    size_t n = strnlen(s, size);
    for (size_t j = 0; j < n;) {
        unsigned char c = (unsigned char)s[j];
        uint32_t cp;
        int len = utf8_decode((const unsigned char *)s + j, n - j, &cp);
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else if (len == 0) fprintf(f, "\\x%02x", c);   // not UTF-8 (set_value refuses it): keep the byte visible
        else if (len > 1 && ((cp >= 0x80 && cp <= 0xA0) || cp == 0x2028 || cp == 0x2029 || cp >= 0xFFFE))
            fprintf(f, cp > 0xFFFF ? "\\U%08x" : "\\u%04x", (unsigned)cp);
        else fwrite(s + j, 1, (size_t)len, f);
        j += len > 0 ? (size_t)len : 1;
    }
}

char *config_to_yaml(const Config *cfg) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f, "open_memstream failed (out of memory)");
    for (size_t i = 0; i < NUM_KEYS; i++) {
        const KeySpec *k = &KEYS[i];
        if (is_first_of_section(i)) fprintf(f, "%.*s:\n", (int)section_len(k->key), k->key);
        fprintf(f, "  %s: ", leaf_of(k->key));
        if (k->type == KEY_STRING) {
            // Always double-quoted, so any text (':', '#', 'yes', leading blanks) reads back as itself.
            fputc('"', f);
            write_quoted(f, cfield(cfg, k), k->size);
            fputs("\"\n", f);
        } else {
            char text[64];
            format_value(k, cfg, text, sizeof text);
            fprintf(f, "%s\n", text);
        }
    }
    CHECK(fclose(f) == 0, "writing the config as YAML failed (out of memory)");
    return buf;
}

int config_same_architecture(const Config *a, const Config *b, char *err, size_t err_len) {
    for (size_t i = 0; i < NUM_KEYS; i++) {
        const KeySpec *k = &KEYS[i];
        if (!(k->flags & ARCH)) continue;
        char va[CONFIG_STRING_MAX + 8], vb[CONFIG_STRING_MAX + 8];
        format_value(k, a, va, sizeof va);
        format_value(k, b, vb, sizeof vb);
        if (strcmp(va, vb) != 0) return set_error(err, err_len, "%s differs: %s vs %s", k->key, va, vb);
    }
    return 0;
}

void config_print_reference(FILE *out) {
    fprintf(out, "| Key | Type | Default | Allowed | Description |\n");
    fprintf(out, "|---|---|---|---|---|\n");
    for (size_t i = 0; i < NUM_KEYS; i++) {
        const KeySpec *k = &KEYS[i];
        char allowed[200];
        size_t pos = 0;
        allowed[0] = '\0';
        if (k->type == KEY_ENUM) {
            int n;
            for (const char *cur = k->choices, *c; (c = next_choice(&cur, &n));)
                append(allowed, sizeof allowed, &pos, "%s`%.*s`", pos ? ", " : "", n, c);
        } else if (k->type == KEY_BOOL) {
            append(allowed, sizeof allowed, &pos, "`true`, `false`");
        } else if ((k->flags & (GE_MIN | GT_MIN)) && (k->flags & (LE_MAX | LT_MAX))) {
            append(allowed, sizeof allowed, &pos, "%c%.10g, %.10g%c", k->flags & GE_MIN ? '[' : '(', k->min, k->max,
                   k->flags & LE_MAX ? ']' : ')');
        } else if (k->flags & (GE_MIN | GT_MIN)) {
            append(allowed, sizeof allowed, &pos, "%s %.10g", k->flags & GE_MIN ? ">=" : ">", k->min);
        } else if (k->type == KEY_UINT64) {
            append(allowed, sizeof allowed, &pos, "[0, 2^64)");
        } else if (k->type == KEY_STRING) {
            append(allowed, sizeof allowed, &pos, "text, at most %zu bytes", k->size - 1);
        }
        fprintf(out, "| `%s` | %s | `%s` | %s | ", k->key, TYPE_NAMES[k->type], *k->def ? k->def : "\"\"", allowed);
        for (const char *h = k->help; *h; h++) fprintf(out, *h == '|' ? "\\|" : "%c", *h);  // '|' ends a cell
        fprintf(out, " |\n");
    }
}
