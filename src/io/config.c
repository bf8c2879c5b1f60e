// config.c: see config.h. The keys are one table (config_keys.c); this file holds what walks it
// as a whole: defaults, overrides, validation, the architecture comparison and the reference.
#include "io/config.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "io/config_internal.h"

void config_defaults(Config *cfg) {
    memset(cfg, 0, sizeof *cfg);  // padding and string tails too, so configs compare with memcmp
    for (size_t i = 0; i < CONFIG_NUM_KEYS; i++) {
        char msg[256];
        int rc = ck_set_value(cfg, &CONFIG_KEYS[i], CONFIG_KEYS[i].def, msg, sizeof msg, NULL, 0);
        CHECK(rc == 0, "bad default in the config table: %s", msg);
    }
}

int config_has_key(const char *full_key) { return ck_find(full_key) != NULL; }

const char *config_data_path(const Config *cfg) {
    if (strcmp(cfg->data_path, "auto") != 0) return cfg->data_path;
    if (strcmp(cfg->dataset, "mnist") == 0) return "/usr/share/datasets/mnist";
    if (strcmp(cfg->dataset, "cifar10") == 0) return "/usr/share/datasets/cifar10";
    return "/usr/share/datasets/fashion-mnist";
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
    const KeySpec *k = ck_find(key);
    if (!k) {
        char hint[400];
        ck_suggest_key(key, hint, sizeof hint);
        return set_error(err, err_len, "in command-line override '%s': unknown key '%s'%s", assignment, key, hint);
    }
    size_t n = (size_t)(ve - vs);
    char *value = xmalloc(n + 1);
    memcpy(value, vs, n);
    value[n] = '\0';
    char msg[700], hint[100];
    int rc = ck_set_value(cfg, k, value, msg, sizeof msg, hint, sizeof hint);
    free(value);
    if (rc) return set_error(err, err_len, "in command-line override '%s': %s%s", assignment, msg, hint);
    return 0;
}

int config_validate(const Config *cfg, char *err, size_t err_len) {
    // Per key: the same ranges and choices as the parser (a Config may be filled in by code).
    for (size_t i = 0; i < CONFIG_NUM_KEYS; i++) {
        const KeySpec *k = &CONFIG_KEYS[i];
        char text[CONFIG_STRING_MAX + 8];
        if ((k->type == KEY_STRING || k->type == KEY_ENUM) && !memchr(ck_cfield(cfg, k), '\0', k->size))
            return set_error(err, err_len, "%s is not NUL-terminated", k->key);
        ck_format(k, cfg, text, sizeof text);
        if (k->type == KEY_ENUM && !ck_enum_has(k->choices, text)) {
            char list[200];
            ck_choices_list(k->choices, list, sizeof list);
            return set_error(err, err_len, "%s must be one of %s, got '%s'", k->key, list, text);
        }
        if (k->type == KEY_INT_LIST) {
            const ConfigIntList *list = ck_cfield(cfg, k);
            if (list->count < 1 || list->count > CONFIG_LIST_MAX)
                return set_error(err, err_len, "%s must have 1 to %d elements, got %d", k->key, CONFIG_LIST_MAX,
                                 list->count);
            for (int j = 0; j < list->count; j++)
                if (ck_check_range(k, list->values[j], text, err, err_len)) return -1;
        } else if (k->type != KEY_STRING && k->type != KEY_ENUM && k->type != KEY_BOOL &&
                   ck_check_range(k, ck_numeric(k, cfg), text, err, err_len)) {
            return -1;
        }
    }
    // Across keys.
    int resnet = strcmp(cfg->arch, "resnet") == 0;
    if (resnet && cfg->num_hiddens % 2 != 0)
        return set_error(err, err_len, "model.num_hiddens must be even (the first encoder conv has num_hiddens/2 "
                         "channels), got %d", cfg->num_hiddens);
    int synthetic = strcmp(cfg->dataset, "synthetic") == 0;
    if (resnet && synthetic && cfg->synthetic_size % 4 != 0)
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

int config_same_architecture(const Config *a, const Config *b, char *err, size_t err_len) {
    for (size_t i = 0; i < CONFIG_NUM_KEYS; i++) {
        const KeySpec *k = &CONFIG_KEYS[i];
        if (!(k->flags & ARCH)) continue;
        char va[CONFIG_STRING_MAX + 8], vb[CONFIG_STRING_MAX + 8];
        ck_format(k, a, va, sizeof va);
        ck_format(k, b, vb, sizeof vb);
        if (strcmp(va, vb) != 0) return set_error(err, err_len, "%s differs: %s vs %s", k->key, va, vb);
    }
    return 0;
}

void config_print_reference(FILE *out) {
    fprintf(out, "| Key | Type | Default | Allowed | Description |\n");
    fprintf(out, "|---|---|---|---|---|\n");
    for (size_t i = 0; i < CONFIG_NUM_KEYS; i++) {
        const KeySpec *k = &CONFIG_KEYS[i];
        char allowed[200];
        size_t pos = 0;
        allowed[0] = '\0';
        if (k->type == KEY_ENUM) {
            int n;
            for (const char *cur = k->choices, *c; (c = ck_next_choice(&cur, &n));)
                ck_append(allowed, sizeof allowed, &pos, "%s`%.*s`", pos ? ", " : "", n, c);
        } else if (k->type == KEY_BOOL) {
            ck_append(allowed, sizeof allowed, &pos, "`true`, `false`");
        } else if ((k->flags & (GE_MIN | GT_MIN)) && (k->flags & (LE_MAX | LT_MAX))) {
            ck_append(allowed, sizeof allowed, &pos, "%c%.10g, %.10g%c", k->flags & GE_MIN ? '[' : '(', k->min, k->max,
                   k->flags & LE_MAX ? ']' : ')');
        } else if (k->flags & (GE_MIN | GT_MIN)) {
            ck_append(allowed, sizeof allowed, &pos, "%s %.10g", k->flags & GE_MIN ? ">=" : ">", k->min);
        } else if (k->type == KEY_UINT64) {
            ck_append(allowed, sizeof allowed, &pos, "[0, 2^64)");
        } else if (k->type == KEY_STRING) {
            ck_append(allowed, sizeof allowed, &pos, "text, at most %zu bytes", k->size - 1);
        }
        fprintf(out, "| `%s` | %s | `%s` | %s | ", k->key, CONFIG_TYPE_NAMES[k->type], *k->def ? k->def : "\"\"", allowed);
        for (const char *h = k->help; *h; h++) fprintf(out, *h == '|' ? "\\|" : "%c", *h);  // '|' ends a cell
        fprintf(out, " |\n");
    }
}
