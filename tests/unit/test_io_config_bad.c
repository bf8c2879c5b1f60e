// test_io_config_bad.c: tables of bad config inputs (YAML files, overrides, Configs filled in by
// code), each with the text its error message must contain, and the config left untouched.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/config.h"
#include "config_fixture.h"

// ---- bad inputs ---------------------------------------------------------------------------------

typedef struct {
    const char *yaml, *want1, *want2;
} BadYaml;

static const BadYaml BAD_YAML[] = {
    {"train:\n  lr: 1e-3\n  lrr: 2\n", "unknown key 'train.lrr' in ", "line 3; did you mean 'train.lr'?"},
    {"train:\n  batchsize: 8\n", "unknown key 'train.batchsize'", "did you mean 'train.batch_size'?"},
    {"train:\n  decay: 0.5\n", "unknown key 'train.decay'", "did you mean 'quantizer.decay'?"},
    {"train:\n  learning_rate: 1\n", "unknown key 'train.learning_rate'", "valid keys in section 'train': batch_size, steps, pretrain_steps, lr"},
    {"trian:\n  lr: 1\n", "unknown section 'trian'", "line 1; did you mean 'train'?"},
    {"optimizer:\n  lr: 1\n", "unknown section 'optimizer'", "sections are model, quantizer, vae, data"},
    {"lr: 1\n", "unknown section 'lr'", "did you mean 'train.lr'"},
    {"train.lr: 1\n", "unknown section 'train.lr'", "nested"},
    {"train:\n  batch_size: abc\n", "train.batch_size must be an integer, got 'abc'", "line 2"},
    {"train:\n  batch_size: 12abc\n", "train.batch_size must be an integer, got '12abc'", NULL},
    {"train:\n  batch_size: 1.5\n", "train.batch_size must be an integer, got '1.5'", NULL},
    {"train:\n  steps: 1e5\n", "train.steps must be an integer, got '1e5'", NULL},
    {"train:\n  lr: fast\n", "train.lr must be a number", "got 'fast'"},
    {"train:\n  lr: 1e-3x\n", "train.lr must be a number", "got '1e-3x'"},
    {"train:\n  lr:\n", "train.lr must be a number", "got an empty value"},
    {"quantizer:\n  commitment_cost: 1e50\n", "quantizer.commitment_cost must be a finite number", "'1e50'"},
    {"train:\n  lr: nan\n", "train.lr must be a finite number", NULL},
    {"train:\n  seed: -1\n", "train.seed must be a non-negative integer", "'-1'"},
    {"train:\n  seed: 18446744073709551616\n", "train.seed must be an integer in [0, 18446744073709551615]", NULL},
    {"train:\n  batch_size: 0\n", "train.batch_size must be >= 1, got 0", "line 2"},
    {"train:\n  batch_size: 99999999999\n", "train.batch_size must be <= 1048576", NULL},
    {"train:\n  steps: 99999999999999999999\n", "train.steps must be an integer in [", NULL},
    {"train:\n  lr: 0\n", "train.lr must be > 0, got 0", NULL},
    {"quantizer:\n  decay: 1\n", "quantizer.decay must be < 1, got 1", NULL},
    {"quantizer:\n  decay: -0.5\n", "quantizer.decay must be >= 0, got -0.5", NULL},
    {"model:\n  num_residual_layers: 65\n", "model.num_residual_layers must be <= 64, got 65", NULL},
    {"log:\n  usage_window: 0\n", "log.usage_window must be >= 1, got 0", NULL},
    {"quantizer:\n  type: emma\n", "quantizer.type must be one of [ema, vq], got 'emma'", "did you mean 'ema'?"},
    {"data:\n  dataset: cifar\n", "[fashion_mnist, mnist, cifar10, synthetic]", "did you mean 'cifar10'?"},
    {"model:\n  arch: unet\n", "model.arch must be one of [resnet, small, groupnorm], got 'unet'", NULL},
    {"train:\n  deterministic: maybe\n", "train.deterministic must be true or false", "got 'maybe'"},
    {"train:\n  cuda_graph: 2\n", "train.cuda_graph must be true or false", "got '2'"},
    {"train:\n  lr: 1e-3\n  steps: 5\n  lr: 2e-3\n", "duplicate key 'train.lr'", "line 4 (already set at line 2)"},
    {"train:\n  lr: 1\nmodel:\n  arch: resnet\ntrain:\n  steps: 3\n", "duplicate section 'train'", "line 5"},
    {"train:\n  lr: [1, 2]\n", "train.lr must be a single value (a number), got a list", "line 2"},
    {"model:\n  num_hiddens:\n    a: 1\n", "model.num_hiddens must be a single value", "got a mapping"},
    {"train:\n  lr: &x 1\n  eps: *x\n", "train.eps must be a single value", "alias"},
    {"train: 5\n", "section 'train'", "got '5'"},
    {"train:\n  - lr\n", "section 'train'", "got a list"},
    {"- train\n", "expected sections like 'train:'", "got a list"},
    {"just text\n", "expected sections like 'train:'", "got 'just text'"},
    {"train:\n  lr: 1\n steps: 2\n", "YAML syntax error in ", "line 3, column 2"},
    {"train:\n\tlr: 1\n", "YAML syntax error in ", "line 2, column 1: found character that cannot start any token"},
    {"train:\n\tlr: 1\n", "tabs", NULL},
    {"train:\n  lr: \"abc\n", "YAML syntax error in ", "quoted scalar"},
    {"train:\n  lr: 1\n  steps: 2\n  ]\n", "YAML syntax error in ", "line 4, column 3"},
    {"train:\n  lr: 1\n---\ntrain:\n  lr: 2\n", "second YAML document", "line 3"},
    {"data:\n  path: \"\xc3\x28\"\n", "line 2", "UTF-8"},
};

// Writes the case to dir/caseNN.yaml and loads it: the error must contain want1, want2 and the
// file's path, and the config must be left untouched.
static void check_bad_yaml_file(TestCounts *c, const char *dir, int i, const BadYaml *bad) {
    Config sentinel, cfg;
    config_defaults(&sentinel);
    sentinel.steps = 4242;  // a load that fails must not touch the config
    char path[256], what[300], err[ERR_LEN] = "";
    snprintf(path, sizeof path, "%s/case%02d.yaml", dir, i);
    write_file(path, bad->yaml);
    memcpy(&cfg, &sentinel, sizeof cfg);
    snprintf(what, sizeof what, "bad yaml %d (%.40s)", i, bad->yaml);
    int rc = config_load_file(&cfg, path, err, sizeof err);
    expect_error(c, rc, err, bad->want1, bad->want2, what);
    EXPECT(c, strstr(err, path) != NULL, "%s: error \"%s\" does not name the file", what, err);
    EXPECT(c, memcmp(&cfg, &sentinel, sizeof cfg) == 0, "%s: a failed load changed the config", what);
    unlink(path);
}

// Each YAML text of the table (and one too long to write inline) is loaded from a file under a
// fresh temporary folder; then a string source and a missing file.
static void test_bad_yaml(TestCounts *c) {
    char dir[] = "/tmp/test_io_config.XXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp failed");
    int ncases = (int)(sizeof BAD_YAML / sizeof BAD_YAML[0]);
    for (int i = 0; i < ncases; i++) check_bad_yaml_file(c, dir, i, &BAD_YAML[i]);
    static char long_path[800];
    memset(long_path, 0, sizeof long_path);
    strcpy(long_path, "data:\n  path: ");
    memset(long_path + strlen(long_path), 'a', 600);
    strcat(long_path, "\n");
    const BadYaml long_case = {long_path, "data.path is too long (600 bytes, at most 511)", "line 2"};
    check_bad_yaml_file(c, dir, ncases, &long_case);
    // From a string the source name stands in for the file.
    Config cfg;
    config_defaults(&cfg);
    char err[ERR_LEN] = "";
    int rc = config_load_string(&cfg, "train:\n  lrr: 1\n", "inline.yaml", err, sizeof err);
    expect_error(c, rc, err, "unknown key 'train.lrr' in inline.yaml line 2; did you mean 'train.lr'?", NULL, "string");
    char missing[300];
    snprintf(missing, sizeof missing, "%s/missing.yaml", dir);
    rc = config_load_file(&cfg, missing, err, sizeof err);
    expect_error(c, rc, err, "cannot open", missing, "missing file");
    rmdir(dir);
}

static void test_bad_overrides(TestCounts *c) {
    static char long_value[700];
    memset(long_value, 0, sizeof long_value);
    strcpy(long_value, "data.path=");
    memset(long_value + strlen(long_value), 'b', 512);
    struct { const char *set, *want1, *want2; } cases[] = {
        {"train.lr", "in command-line override 'train.lr': ", "expected section.key=value"},
        {"train.lrr=1", "in command-line override 'train.lrr=1': unknown key 'train.lrr'", "did you mean 'train.lr'?"},
        {"lr=1", "unknown key 'lr'", "did you mean 'train.lr'?"},
        {"foo.bar=1", "unknown key 'foo.bar'", "sections are model, quantizer, vae, data, train"},
        {"=1", "unknown key ''", NULL},
        {"train.lr=abc", "in command-line override 'train.lr=abc': train.lr must be a number", "got 'abc'"},
        {"train.batch_size=0", "train.batch_size must be >= 1, got 0", NULL},
        {"train.batch_size=", "train.batch_size must be an integer, got an empty value", NULL},
        {"train.device=gpu", "train.device must be one of [auto, cpu, cuda], got 'gpu'", NULL},
        {"train.cuda_graph=2", "train.cuda_graph must be true or false", NULL},
        {long_value, "data.path is too long (512 bytes, at most 511)", NULL},
        // Found by fuzz_config: a stored config must read back, and YAML is UTF-8.
        {"data.path=/d/\xf3\xf3", "data.path must be UTF-8 text; byte 3 (0xf3) is not", NULL},
        // The codebook keys (docs/CODEBOOK.md).
        {"quantizer.kmeans_samples=-1", "quantizer.kmeans_samples must be >= 0, got -1", NULL},
        {"quantizer.kmeans_samples=1.5", "quantizer.kmeans_samples must be an integer, got '1.5'", NULL},
        {"quantizer.kmeans_iters=-2", "quantizer.kmeans_iters must be >= 0, got -2", NULL},
        {"quantizer.kmeans_iters=10001", "quantizer.kmeans_iters must be <= 10000, got 10001", NULL},
        {"quantizer.dead_code_threshold=-0.5", "quantizer.dead_code_threshold must be >= 0, got -0.5", NULL},
        {"quantizer.dead_code_threshold=inf", "quantizer.dead_code_threshold must be a finite number", NULL},
        {"train.pretrain_steps=-3", "train.pretrain_steps must be >= 0, got -3", NULL},
        {"quantizer.init=kmean", "quantizer.init must be one of [auto, data, uniform, normal, kmeans]",
         "did you mean 'kmeans'?"},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        Config cfg, before;
        config_defaults(&cfg);
        memcpy(&before, &cfg, sizeof cfg);
        char err[ERR_LEN] = "", what[80];
        snprintf(what, sizeof what, "override %.60s", cases[i].set);
        int rc = config_apply_override(&cfg, cases[i].set, err, sizeof err);
        expect_error(c, rc, err, cases[i].want1, cases[i].want2, what);
        EXPECT(c, memcmp(&cfg, &before, sizeof cfg) == 0, "%s: a failed override changed the config", what);
    }
}

// Values the parser cannot produce but code can: config_validate repeats the per-key checks.
static void zero_batch(Config *c) { c->batch_size = 0; }
static void decay_one(Config *c) { c->decay = 1.0f; }
static void zero_window(Config *c) { c->usage_window = 0; }
static void zero_keep(Config *c) { c->checkpoint_keep = 0; }
static void arch_unet(Config *c) { snprintf(c->arch, sizeof c->arch, "unet"); }
static void no_channels(Config *c) { c->channels.count = 0; }
static void lr_nan(Config *c) { c->lr = NAN; }
static void negative_samples(Config *c) { c->kmeans_samples = -1; }
static void negative_threshold(Config *c) { c->dead_code_threshold = -1.0f; }
static void negative_pretrain(Config *c) { c->pretrain_steps = -1; }

static void test_validate(TestCounts *c) {
    struct { const char *sets[3]; void (*mutate)(Config *); const char *want; } cases[] = {
        {{"model.num_hiddens=127"}, NULL, "model.num_hiddens must be even"},
        {{"data.dataset=synthetic", "data.image_size=30"}, NULL, "data.image_size must be divisible by 4"},
        {{"data.dataset=synthetic", "data.synthetic_count=4", "train.batch_size=8"}, NULL,
         "data.synthetic_count (4) must be >= train.batch_size (8)"},
        {{"data.dataset=mnist", "data.path="}, NULL, "data.path is empty"},
        {{"checkpoint.dir="}, NULL, "checkpoint.dir is empty"},
        {{"dist.backend=nccl", "train.device=cpu"}, NULL, "dist.backend nccl needs GPUs but train.device is cpu"},
        {{NULL}, zero_batch, "train.batch_size must be >= 1, got 0"},
        {{NULL}, decay_one, "quantizer.decay must be < 1, got 1"},
        {{NULL}, zero_window, "log.usage_window must be >= 1, got 0"},
        {{NULL}, zero_keep, "checkpoint.keep must be >= 1, got 0"},
        {{NULL}, arch_unet, "model.arch must be one of [resnet, small, groupnorm], got 'unet'"},
        {{NULL}, no_channels, "model.channels must have 1 to 8 elements, got 0"},
        {{NULL}, lr_nan, "train.lr must be a finite number"},
        // The codebook keys across keys (docs/CODEBOOK.md), each with its hint.
        {{"quantizer.type=vq", "quantizer.dead_code_threshold=1"}, NULL,
         "quantizer.dead_code_threshold (1) compares EMA cluster sizes, so it needs quantizer.type ema (got vq); set "
         "it to 0 or use ema"},
        {{"quantizer.init=kmeans", "quantizer.kmeans_samples=511"}, NULL,
         "quantizer.kmeans_samples (511) must be at least quantizer.num_embeddings (512): k-means needs a sample per "
         "code; use 0 for 64 per code"},
        {{"train.steps=100", "train.pretrain_steps=100"}, NULL,
         "train.pretrain_steps (100) must be less than train.steps (100), or nothing is ever quantized"},
        {{NULL}, negative_samples, "quantizer.kmeans_samples must be >= 0, got -1"},
        {{NULL}, negative_threshold, "quantizer.dead_code_threshold must be >= 0, got -1"},
        {{NULL}, negative_pretrain, "train.pretrain_steps must be >= 0, got -1"},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        Config cfg;
        config_defaults(&cfg);
        char err[ERR_LEN] = "", what[80];
        snprintf(what, sizeof what, "validate case %d", i);
        for (int j = 0; j < 3 && cases[i].sets[j]; j++)
            EXPECT(c, config_apply_override(&cfg, cases[i].sets[j], err, sizeof err) == 0, "%s: %s", what, err);
        if (cases[i].mutate) cases[i].mutate(&cfg);
        int rc = config_validate(&cfg, err, sizeof err);
        expect_error(c, rc, err, cases[i].want, NULL, what);
    }
    // The neighbours of those failures are fine.
    const char *fine[][3] = {
        {"model.num_hiddens=126"}, {"data.dataset=synthetic", "data.image_size=28"},
        {"data.dataset=synthetic", "data.synthetic_count=8", "train.batch_size=8"},
        {"dist.backend=nccl", "train.device=cuda"}, {"data.dataset=synthetic", "data.path="},
        {"quantizer.type=vq", "quantizer.dead_code_threshold=0"}, {"quantizer.dead_code_threshold=1"},
        {"quantizer.init=kmeans", "quantizer.kmeans_samples=512"}, {"quantizer.type=vq", "quantizer.init=kmeans"},
        {"train.steps=100", "train.pretrain_steps=99"},
    };
    for (int i = 0; i < (int)(sizeof fine / sizeof fine[0]); i++) {
        Config cfg;
        config_defaults(&cfg);
        char err[ERR_LEN] = "";
        for (int j = 0; j < 3 && fine[i][j]; j++)
            EXPECT(c, config_apply_override(&cfg, fine[i][j], err, sizeof err) == 0, "%s", err);
        EXPECT(c, config_validate(&cfg, err, sizeof err) == 0, "valid case %d (%s) refused: %s", i, fine[i][0], err);
    }
}

int main(void) {
    TestCounts c = {0, 0};
    test_bad_yaml(&c);
    test_bad_overrides(&c);
    test_validate(&c);
    return test_finish("test_io_config_bad", &c);
}
