// fuzz_config.c: the config parser and the command-line overrides. An input is YAML text, then
// NUL-separated overrides ("train.lr=3e-4"). Beyond "no crash": a config that loads and
// validates must print as YAML that loads again to the same config (the checkpoint stores that
// text), and a file with a NUL byte must be refused.
#include "fuzz.h"
#include "io/config.h"

void fuzz_make_seeds(const char *dir) {
    static const char *const seeds[] = {
        "model:\n  num_hiddens: 32\n  embedding_dim: 8\nquantizer:\n  type: vq\n  num_embeddings: 16\n",
        ("train:\n  batch_size: 4\n  lr: 3.0e-3\n  seed: 18446744073709551615\ndata:\n  dataset: synthetic\n"
         "  image_size: 16\n"),
        "checkpoint:\n  dir: \"runs/x: y # z\"\n  keep: 2\nlog:\n  metrics_file: ''\n",
        "# comments only\n",
        "train: {steps: 5, deterministic: yes}\n",
    };
    char name[32];
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        snprintf(name, sizeof name, "seed_%zu.yaml", i);
        fuzz_seed(dir, name, seeds[i], strlen(seeds[i]));
    }
    static const char with_overrides[] = "train:\n  steps: 3\n\0train.lr = 1e-4\0quantizer.type=ema\0log.every=7";
    fuzz_seed(dir, "seed_overrides", with_overrides, sizeof with_overrides - 1);
}

// A validated config prints as YAML that loads back to the same YAML.
static void check_round_trip(const Config *cfg) {
    char err[2048];
    char *yaml = config_to_yaml(cfg);
    Config again;
    if (config_load_string(&again, yaml, "printed config", err, sizeof err) != 0) {
        fprintf(stderr, "a valid config printed as YAML that does not load: %s\n%s", err, yaml);
        abort();
    }
    char *yaml2 = config_to_yaml(&again);
    if (strcmp(yaml, yaml2) != 0) {
        fprintf(stderr, "the config changed in a YAML round trip:\n%s---\n%s", yaml, yaml2);
        abort();
    }
    free(yaml2);
    free(yaml);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    char err[2048], unknown[400];
    config_unknown_keys(text, unknown, sizeof unknown);
    Config cfg;
    config_defaults(&cfg);
    if (config_load_string(&cfg, text, "fuzz input", err, sizeof err) == 0) {
        for (size_t at = strlen(text) + 1; at < size; at += strlen(text + at) + 1)
            config_apply_override(&cfg, text + at, err, sizeof err);   // a bad one leaves cfg as it was
        if (config_validate(&cfg, err, sizeof err) == 0) check_round_trip(&cfg);
    }
    // The same bytes as a file: a NUL anywhere must be refused, never cut the text short.
    const char *path = fuzz_scratch("input.yaml");
    fuzz_write(path, data, size);
    config_defaults(&cfg);
    int rc = config_load_file(&cfg, path, err, sizeof err);
    if (memchr(data, 0, size) && (rc == 0 || !strstr(err, "NUL byte"))) {
        fprintf(stderr, "a config file with a NUL byte was not refused as such (rc %d): %s\n", rc, err);
        abort();
    }
    free(text);
    return 0;
}
