// test_io_config.c: the config contract (src/io/config.h): defaults, the presets in configs/,
// overrides, the YAML round trip, the architecture comparison, docs/CONFIG.md against the key
// table (bad inputs: test_io_config_bad.c).
// `test_io_config --print-reference` prints the key table that docs/CONFIG.md embeds.
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "io/config.h"
#include "config_fixture.h"
#include "test_util.h"

// The dotted keys of a config_to_yaml text ("section:" lines, then "  name: value" lines).
static int yaml_keys(const char *yaml, char keys[][64], int max) {
    int n = 0;
    char section[32] = "";
    for (const char *line = yaml; *line && n < max;) {
        const char *end = strchr(line, '\n');
        int len = end ? (int)(end - line) : (int)strlen(line);
        const char *colon = memchr(line, ':', (size_t)len);
        int name_len = colon ? (int)(colon - line) : 0;
        if (name_len > 30) name_len = 30;  // names are short; the cap keeps the sizes provably in bounds
        if (colon && line[0] != ' ') snprintf(section, sizeof section, "%.*s", name_len, line);
        else if (colon) snprintf(keys[n++], 64, "%s.%.*s", section, name_len - 2, line + 2);
        line = end ? end + 1 : line + len;
    }
    return n;
}

static char *reference_text(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f, "open_memstream");
    config_print_reference(f);
    fclose(f);
    return buf;
}

// ---- defaults -----------------------------------------------------------------------------------

static void test_defaults(TestCounts *c) {
    Config d;
    config_defaults(&d);
    // The defaults written in config.h's comments.
    EXPECT(c, strcmp(d.arch, "resnet") == 0, "arch %s", d.arch);
    EXPECT(c, d.num_hiddens == 128 && d.num_residual_hiddens == 32 && d.num_residual_layers == 2, "model %d %d %d",
           d.num_hiddens, d.num_residual_hiddens, d.num_residual_layers);
    EXPECT(c, d.embedding_dim == 64 && d.num_embeddings == 512, "D %d K %d", d.embedding_dim, d.num_embeddings);
    EXPECT(c, strcmp(d.quantizer, "ema") == 0 && strcmp(d.codebook_init, "auto") == 0, "quantizer %s init %s",
           d.quantizer, d.codebook_init);
    EXPECT(c, d.commitment_cost == 0.25f && d.decay == 0.99f && d.epsilon == 1e-5f, "beta %g decay %g eps %g",
           d.commitment_cost, d.decay, d.epsilon);
    EXPECT(c, strcmp(d.dataset, "fashion_mnist") == 0 && strcmp(d.data_path, "auto") == 0 &&
                  strcmp(config_data_path(&d), "/usr/share/datasets/fashion-mnist") == 0,
           "data %s %s", d.dataset, d.data_path);
    // data.path=auto is each dataset's own folder (mnist once read Fashion-MNIST's).
    Config m = d;
    copy_string(m.dataset, sizeof m.dataset, "mnist");
    EXPECT(c, strcmp(config_data_path(&m), "/usr/share/datasets/mnist") == 0, "mnist auto path %s",
           config_data_path(&m));
    copy_string(m.dataset, sizeof m.dataset, "cifar10");
    EXPECT(c, strcmp(config_data_path(&m), "/usr/share/datasets/cifar10") == 0, "cifar10 auto path %s",
           config_data_path(&m));
    copy_string(m.data_path, sizeof m.data_path, "/data/mine");
    EXPECT(c, strcmp(config_data_path(&m), "/data/mine") == 0, "a given path %s", config_data_path(&m));
    EXPECT(c, d.synthetic_count == 2048 && d.synthetic_channels == 3 && d.synthetic_size == 32, "synthetic %d %d %d",
           d.synthetic_count, d.synthetic_channels, d.synthetic_size);
    EXPECT(c, d.batch_size == 32 && d.steps == 1000 && d.lr == 1e-3, "batch %d steps %lld lr %g", d.batch_size,
           (long long)d.steps, d.lr);
    EXPECT(c, d.beta1 == 0.9 && d.beta2 == 0.999 && d.adam_eps == 1e-8 && d.weight_decay == 0.0,
           "adam %g %g %g %g", d.beta1, d.beta2, d.adam_eps, d.weight_decay);
    EXPECT(c, d.seed == 1234 && strcmp(d.device, "auto") == 0 && strcmp(d.precision, "tf32") == 0, "seed %llu %s %s",
           (unsigned long long)d.seed, d.device, d.precision);
    EXPECT(c, d.deterministic == 0 && d.threads == 0 && d.eval_every == 0 && d.eval_batches == 0 && d.cuda_graph == 0,
           "train flags %d %d %d %d %d", d.deterministic, d.threads, d.eval_every, d.eval_batches, d.cuda_graph);
    EXPECT(c, strcmp(d.checkpoint_dir, "runs/default") == 0 && d.checkpoint_every == 1000 && d.checkpoint_keep == 3,
           "checkpoint %s %d %d", d.checkpoint_dir, d.checkpoint_every, d.checkpoint_keep);
    EXPECT(c, d.log_every == 50 && d.metrics_file[0] == '\0' && d.usage_window == 100, "log %d '%s' %d", d.log_every,
           d.metrics_file, d.usage_window);
    EXPECT(c, strcmp(d.dist_backend, "auto") == 0 && d.dist_timeout_s == 300.0f && d.verify_every == 0,
           "dist %s %g %d", d.dist_backend, d.dist_timeout_s, d.verify_every);

    char err[ERR_LEN] = "";
    EXPECT(c, config_validate(&d, err, sizeof err) == 0, "defaults do not validate: %s", err);

    // An empty file, or one of comments only, is all defaults; a load starts from the defaults.
    const char *empties[] = {"", "# nothing here\n\n", "---\n", "train:\n"};
    for (int i = 0; i < 4; i++) {
        Config e;
        config_defaults(&e);
        e.steps = 77;
        int rc = config_load_string(&e, empties[i], "empty.yaml", err, sizeof err);
        EXPECT(c, rc == 0, "empty config %d: %s", i, err);
        EXPECT(c, memcmp(&e, &d, sizeof d) == 0, "empty config %d differs from the defaults", i);
    }
}

// ---- presets ------------------------------------------------------------------------------------

static void test_presets(TestCounts *c, const char *source_dir) {
    char dir[1024], path[2048], err[ERR_LEN] = "";
    snprintf(dir, sizeof dir, "%s/configs", source_dir);
    DIR *d = opendir(dir);
    EXPECT(c, d != NULL, "cannot open %s", dir);
    int count = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 5, ".yaml") != 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        Config cfg;
        int rc = config_load_file(&cfg, path, err, sizeof err);
        EXPECT(c, rc == 0, "preset %s: %s", path, err);
        if (rc == 0) EXPECT(c, config_validate(&cfg, err, sizeof err) == 0, "preset %s does not validate: %s", path, err);
        count++;
    }
    if (d) closedir(d);
    EXPECT(c, count >= 3, "found %d presets in %s, expected at least cifar, fashion_mnist and smoke", count, dir);

    Config cfg;
    snprintf(path, sizeof path, "%s/cifar.yaml", dir);
    EXPECT(c, config_load_file(&cfg, path, err, sizeof err) == 0, "%s", err);
    EXPECT(c, strcmp(cfg.dataset, "cifar10") == 0 && cfg.batch_size == 256 && cfg.steps == 15000 && cfg.lr == 1e-3,
           "cifar: %s batch %d steps %lld lr %g", cfg.dataset, cfg.batch_size, (long long)cfg.steps, cfg.lr);
    EXPECT(c, cfg.num_hiddens == 128 && cfg.num_residual_hiddens == 32 && cfg.num_residual_layers == 2 &&
                  cfg.num_embeddings == 512 && cfg.embedding_dim == 64,
           "cifar model %d %d %d %d %d", cfg.num_hiddens, cfg.num_residual_hiddens, cfg.num_residual_layers,
           cfg.num_embeddings, cfg.embedding_dim);
    EXPECT(c, strcmp(cfg.quantizer, "ema") == 0 && cfg.decay == 0.99f && cfg.commitment_cost == 0.25f,
           "cifar quantizer %s %g %g", cfg.quantizer, cfg.decay, cfg.commitment_cost);

    snprintf(path, sizeof path, "%s/fashion_mnist.yaml", dir);
    EXPECT(c, config_load_file(&cfg, path, err, sizeof err) == 0, "%s", err);
    EXPECT(c, strcmp(cfg.dataset, "fashion_mnist") == 0 && strcmp(cfg.data_path, "/usr/share/datasets/fashion-mnist") == 0 &&
                  strcmp(cfg.checkpoint_dir, "runs/fashion_mnist") == 0,
           "fashion_mnist: %s %s %s", cfg.dataset, cfg.data_path, cfg.checkpoint_dir);
    // The quickstart's codebook settings are the winner of docs/CODEBOOK.md's table.
    EXPECT(c, strcmp(cfg.codebook_init, "kmeans") == 0 && cfg.pretrain_steps == 200 && cfg.dead_code_threshold == 1.0f,
           "fashion_mnist codebook: init %s, pretrain_steps %lld, dead_code_threshold %g (docs/CODEBOOK.md)",
           cfg.codebook_init, (long long)cfg.pretrain_steps, cfg.dead_code_threshold);

    snprintf(path, sizeof path, "%s/smoke.yaml", dir);
    EXPECT(c, config_load_file(&cfg, path, err, sizeof err) == 0, "%s", err);
    EXPECT(c, strcmp(cfg.dataset, "synthetic") == 0 && cfg.steps == 20 && cfg.batch_size == 16 && cfg.log_every == 5 &&
                  cfg.num_hiddens == 32 && strcmp(cfg.checkpoint_dir, "runs/smoke") == 0,
           "smoke: %s steps %lld batch %d log %d h %d dir %s", cfg.dataset, (long long)cfg.steps, cfg.batch_size,
           cfg.log_every, cfg.num_hiddens, cfg.checkpoint_dir);
}

// ---- overrides ----------------------------------------------------------------------------------

static void test_overrides(TestCounts *c) {
    Config cfg;
    config_defaults(&cfg);
    char err[ERR_LEN] = "";
    const char *good[] = {"train.lr=3e-4", "train.steps = 77", "train.deterministic=yes", "data.dataset=synthetic",
                          "log.metrics_file=", "data.path=/a=b c", "quantizer.decay=0", "train.cuda_graph=ON"};
    for (int i = 0; i < 8; i++)
        EXPECT(c, config_apply_override(&cfg, good[i], err, sizeof err) == 0, "override '%s': %s", good[i], err);
    EXPECT(c, cfg.lr == 3e-4, "lr %g", cfg.lr);
    EXPECT(c, cfg.steps == 77, "steps %lld", (long long)cfg.steps);
    EXPECT(c, cfg.deterministic == 1 && cfg.cuda_graph == 1, "bools %d %d", cfg.deterministic, cfg.cuda_graph);
    EXPECT(c, strcmp(cfg.dataset, "synthetic") == 0, "dataset %s", cfg.dataset);
    EXPECT(c, cfg.metrics_file[0] == '\0', "metrics_file '%s'", cfg.metrics_file);
    EXPECT(c, strcmp(cfg.data_path, "/a=b c") == 0, "path '%s' (the value runs to the end, '=' included)",
           cfg.data_path);
    EXPECT(c, cfg.decay == 0.0f, "decay %g", cfg.decay);

    // Overrides apply on top of a loaded file; a failed one leaves the config as it was.
    Config before;
    memcpy(&before, &cfg, sizeof cfg);
    EXPECT(c, config_apply_override(&cfg, "train.batch_size=0", err, sizeof err) == -1, "batch 0 accepted");
    EXPECT(c, memcmp(&before, &cfg, sizeof cfg) == 0, "a failed override changed the config");
}

// ---- round trip ---------------------------------------------------------------------------------

static void test_round_trip(TestCounts *c) {
    // A non-default value for every key, floats that are not short decimals, extreme integers, and
    // a string with characters that YAML would read as syntax.
    const char *sets[] = {
        "model.num_hiddens=66", "model.num_residual_hiddens=7", "model.num_residual_layers=5",
        "model.embedding_dim=3", "quantizer.type=vq", "quantizer.num_embeddings=1000",
        "quantizer.commitment_cost=1e-45", "quantizer.decay=0.99999994", "quantizer.epsilon=1.17549435e-38",
        "quantizer.init=normal", "data.dataset=cifar10", "data.synthetic_count=1", "data.channels=16",
        "data.image_size=4096", "train.batch_size=1048576", "train.steps=9223372036854775807", "train.lr=0.1",
        "train.beta1=0.123456789", "train.beta2=0", "train.eps=3.40282347e38", "train.weight_decay=2.5e-7",
        "train.seed=18446744073709551615", "train.device=cuda", "train.precision=bf16", "train.deterministic=true",
        "train.threads=4096", "train.cpu_conv=im2col", "train.eval_every=123", "train.eval_batches=7",
        "train.cuda_graph=1", "checkpoint.dir=runs/x y", "checkpoint.every=0", "checkpoint.keep=1000", "log.every=1",
        "log.metrics_file=null", "log.usage_window=1", "dist.backend=mpi", "dist.timeout_s=0.001",
        "dist.verify_every=1", "quantizer.kmeans_samples=1000", "quantizer.kmeans_iters=3",
        "quantizer.dead_code_threshold=0.5", "train.pretrain_steps=5", "model.type=vae", "model.arch=groupnorm",
        "model.in_channels=3", "model.channels=[8, 4096]", "model.block_out_channels=1,2,3,4,5,6,7,8",
        "model.layers_per_block=16", "model.norm_num_groups=4096", "model.norm_eps=1e-5", "model.dropout=0.5",
        "model.mid_attention=false", "model.latent_channels=4", "vae.latent_dim=2", "vae.kl_weight=0.5",
        "vae.recon_weight=0.25", "data.range=symmetric",
    };
    int nsets = (int)(sizeof sets / sizeof sets[0]);
    Config defaults, cfg;
    config_defaults(&defaults);
    config_defaults(&cfg);
    char err[ERR_LEN] = "";
    for (int i = 0; i < nsets; i++)
        EXPECT(c, config_apply_override(&cfg, sets[i], err, sizeof err) == 0, "override '%s': %s", sets[i], err);
    // Set directly (overrides trim blanks). NEL, LINE SEPARATOR and a C1 control: YAML folds or
    // refuses them raw, so the printer must escape them.
    const char *tricky = " lead \"q\" \\ # : yes\t\x01 caf\xc3\xa9 \xc2\x85|\xe2\x80\xa8|\xc2\x90 ";
    memset(cfg.data_path, 0, sizeof cfg.data_path);
    memcpy(cfg.data_path, tricky, strlen(tricky));

    char *yaml_def = config_to_yaml(&defaults), *yaml = config_to_yaml(&cfg);
    // Every key in the YAML (checks the list above covers the whole table: a new key must be added).
    static char keys_def[MAX_KEYS][64], keys[MAX_KEYS][64];
    int n_def = yaml_keys(yaml_def, keys_def, MAX_KEYS), n = yaml_keys(yaml, keys, MAX_KEYS);
    // The sets above and data.path (set directly).
    EXPECT(c, n == n_def && n == nsets + 1, "config_to_yaml has %d keys (defaults %d), the test sets %d + 1", n, n_def,
           nsets);
    for (const char *a = yaml_def, *b = yaml; *a && *b;) {  // line by line, every key line must differ
        const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
        if (!ea || !eb) break;
        if (a[0] == ' ')
            EXPECT(c, (ea - a) != (eb - b) || memcmp(a, b, (size_t)(ea - a)) != 0, "key line '%.*s' kept its default",
                   (int)(ea - a), a);
        a = ea + 1, b = eb + 1;
    }
    Config back;
    config_defaults(&back);
    int rc = config_load_string(&back, yaml, "round-trip", err, sizeof err);
    EXPECT(c, rc == 0, "reloading config_to_yaml output: %s\n%s", err, yaml);
    EXPECT(c, memcmp(&back, &cfg, sizeof cfg) == 0, "round trip changed the config:\n%s", yaml);
    EXPECT(c, back.lr == cfg.lr && back.beta1 == cfg.beta1 && back.commitment_cost == cfg.commitment_cost &&
                  back.epsilon == cfg.epsilon && back.adam_eps == cfg.adam_eps,
           "floats changed: lr %.9g beta1 %.9g beta %.9g eps %.9g", back.lr, back.beta1, back.commitment_cost, back.epsilon);
    EXPECT(c, strcmp(back.data_path, tricky) == 0, "string changed: '%s'", back.data_path);
    EXPECT(c, back.seed == UINT64_MAX && back.steps == INT64_MAX, "integers changed %llu %lld",
           (unsigned long long)back.seed, (long long)back.steps);
    char *yaml2 = config_to_yaml(&back);
    EXPECT(c, strcmp(yaml, yaml2) == 0, "YAML differs after a round trip:\n%s\n---\n%s", yaml, yaml2);
    // Floats carry a '.', so YAML 1.1 readers (PyYAML) see floats: "1.0e-05", not "1e-05".
    EXPECT(c, strstr(yaml_def, "epsilon: 1.0e-05\n") && strstr(yaml_def, "lr: 0.001\n") &&
                  strstr(yaml_def, "weight_decay: 0.0\n"),
           "float format:\n%s", yaml_def);
    free(yaml_def);
    free(yaml);
    free(yaml2);
}

// ---- architecture comparison --------------------------------------------------------------------

static void test_same_architecture(TestCounts *c) {
    Config a, b;
    config_defaults(&a);
    config_defaults(&b);
    char err[ERR_LEN] = "";
    EXPECT(c, config_same_architecture(&a, &b, err, sizeof err) == 0, "defaults differ: %s", err);
    const char *harmless[] = {"train.lr=0.5", "data.dataset=synthetic", "quantizer.decay=0.5", "quantizer.init=normal"};
    for (int i = 0; i < 4; i++) {
        EXPECT(c, config_apply_override(&b, harmless[i], err, sizeof err) == 0, "%s", err);
        EXPECT(c, config_same_architecture(&a, &b, err, sizeof err) == 0, "'%s' counted as architecture: %s",
               harmless[i], err);
    }
    struct { const char *set, *key, *va, *vb; } cases[] = {
        {"model.num_hiddens=64", "model.num_hiddens", "128", "64"},
        {"model.num_residual_layers=1", "model.num_residual_layers", "2", "1"},
        {"model.embedding_dim=16", "model.embedding_dim", "64", "16"},
        {"quantizer.type=vq", "quantizer.type", "ema", "vq"},
        {"quantizer.num_embeddings=256", "quantizer.num_embeddings", "512", "256"},
    };
    for (int i = 0; i < 5; i++) {
        config_defaults(&b);
        EXPECT(c, config_apply_override(&b, cases[i].set, err, sizeof err) == 0, "%s", err);
        err[0] = '\0';
        int rc = config_same_architecture(&a, &b, err, sizeof err);
        expect_error(c, rc, err, cases[i].key, cases[i].vb, cases[i].set);
        EXPECT(c, strstr(err, cases[i].va) != NULL, "%s: '%s' lacks the first value %s", cases[i].set, err, cases[i].va);
    }
}

// ---- docs/CONFIG.md -----------------------------------------------------------------------------

static void test_docs(TestCounts *c, const char *source_dir) {
    char path[1024], err[ERR_LEN] = "";
    snprintf(path, sizeof path, "%s/docs/CONFIG.md", source_dir);
    char *doc = read_text_file(path, NULL, err, sizeof err);
    EXPECT(c, doc != NULL, "%s", err);
    if (!doc) return;
    char *ref = reference_text();
    // Every row of the generated table appears verbatim, so a changed key, default or help text
    // fails here until the table in the doc is regenerated (test_io_config --print-reference).
    int rows = 0;
    for (char *line = ref; *line;) {
        char *end = strchr(line, '\n');
        if (!end) break;
        *end = '\0';
        EXPECT(c, strstr(doc, line) != NULL, "docs/CONFIG.md lacks the row \"%s\"; regenerate the table with "
               "test_io_config --print-reference", line);
        rows++;
        line = end + 1;
    }
    // And the table has a row for every key config_to_yaml writes.
    Config d;
    config_defaults(&d);
    char *yaml = config_to_yaml(&d);
    static char keys[MAX_KEYS][64];
    int n = yaml_keys(yaml, keys, MAX_KEYS);
    EXPECT(c, rows == n + 2, "reference has %d rows for %d keys (plus header and rule)", rows, n);
    for (int i = 0; i < n; i++) {
        char cell[96];
        snprintf(cell, sizeof cell, "| `%.63s` |", keys[i]);
        EXPECT(c, strstr(doc, cell) != NULL, "docs/CONFIG.md has no row for %s", keys[i]);
    }
    free(yaml);
    free(ref);
    free(doc);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--print-reference") == 0) {
        config_print_reference(stdout);
        return 0;
    }
    TestCounts c = {0, 0};
    const char *source_dir = getenv("VQ_SOURCE_DIR");
    EXPECT(&c, source_dir && *source_dir, "VQ_SOURCE_DIR is not set (ctest sets it; or export it to the repo root)");
    test_defaults(&c);
    test_overrides(&c);
    test_round_trip(&c);
    test_same_architecture(&c);
    if (source_dir && *source_dir) {
        test_presets(&c, source_dir);
        test_docs(&c, source_dir);
    }
    return test_finish("test_io_config", &c);
}
