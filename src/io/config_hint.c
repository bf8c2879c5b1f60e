// config_hint.c: hints for a name that is not a key or a section: the nearest one by edit
// distance, or the list of what there is.
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "io/config_internal.h"

// Appends "sections are model, quantizer, ...".
static void section_list(char *buf, size_t len, size_t *pos) {
    ck_append(buf, len, pos, "sections are");
    for (size_t i = 0; i < CONFIG_NUM_KEYS; i++)
        if (ck_first_of_section(i))
            ck_append(buf, len, pos, "%s %.*s", i ? "," : "", (int)ck_section_len(CONFIG_KEYS[i].key), CONFIG_KEYS[i].key);
}

// Hint for an unknown name ("train.lrr", "trian", "lr"): the nearest key by edit distance over the
// full dotted keys and over the leaf within its section; an exact leaf in another section wins
// ("train.decay" -> "quantizer.decay"). Without a close one, lists the section's keys.
void ck_suggest_key(const char *name, char *hint, size_t hint_len) {
    const char *dot = strchr(name, '.');
    size_t sec_n = dot ? (size_t)(dot - name) : 0;
    const char *leaf = dot ? dot + 1 : name;
    const KeySpec *best = NULL;
    int best_d = 1 << 30;
    for (size_t i = 0; i < CONFIG_NUM_KEYS; i++) {
        const KeySpec *k = &CONFIG_KEYS[i];
        int d = edit_distance(name, k->key);
        int same_section = dot && ck_section_len(k->key) == sec_n && strncmp(k->key, name, sec_n) == 0;
        if (same_section) {
            int dl = edit_distance(leaf, ck_leaf(k->key));
            if (dl < d) d = dl;
            size_t ll = strlen(leaf), kl = strlen(ck_leaf(k->key));
            size_t shorter = ll < kl ? ll : kl;
            if (shorter >= 3 && strncmp(leaf, ck_leaf(k->key), shorter) == 0 && d > 1) d = 1;  // "commitment"
                                                                                              // -> commitment_cost
        }
        if (strcmp(leaf, ck_leaf(k->key)) == 0) d = 0;
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
    int first = dot ? ck_find_section(section) : -1;
    if (first < 0) {
        ck_append(hint, hint_len, &pos, "; keys are section.name, ");
        section_list(hint, hint_len, &pos);
        return;
    }
    ck_append(hint, hint_len, &pos, "; valid keys in section '%s':", section);
    for (size_t i = (size_t)first; i < CONFIG_NUM_KEYS && (i == (size_t)first || !ck_first_of_section(i)); i++)
        ck_append(hint, hint_len, &pos, "%s %s", i == (size_t)first ? "" : ",", ck_leaf(CONFIG_KEYS[i].key));
}

// Hint for an unknown top-level name: a close section, or the key it names when written flat
// ("train.lr:" or a bare "lr:" at the top level).
void ck_suggest_section(const char *name, char *hint, size_t hint_len) {
    const KeySpec *k = ck_find(name);
    if (k) {
        snprintf(hint, hint_len, "; write '%s' nested: a line '%.*s:' with '  %s: ...' under it", name,
                 (int)ck_section_len(k->key), k->key, ck_leaf(k->key));
        return;
    }
    for (size_t i = 0; i < CONFIG_NUM_KEYS; i++)
        if (strcmp(name, ck_leaf(CONFIG_KEYS[i].key)) == 0) {
            snprintf(hint, hint_len, "; did you mean '%s' (key '%s' inside section '%.*s:')?", CONFIG_KEYS[i].key, name,
                     (int)ck_section_len(CONFIG_KEYS[i].key), CONFIG_KEYS[i].key);
            return;
        }
    const char *best = NULL;
    int best_d = 1 << 30, best_n = 0;
    for (size_t i = 0; i < CONFIG_NUM_KEYS; i++) {
        if (!ck_first_of_section(i)) continue;
        char section[64];
        snprintf(section, sizeof section, "%.*s", (int)ck_section_len(CONFIG_KEYS[i].key), CONFIG_KEYS[i].key);
        int d = edit_distance(name, section);
        if (d < best_d) best_d = d, best = CONFIG_KEYS[i].key, best_n = (int)ck_section_len(CONFIG_KEYS[i].key);
    }
    if (best && best_d <= 2) {
        snprintf(hint, hint_len, "; did you mean '%.*s'?", best_n, best);
        return;
    }
    size_t pos = 0;
    ck_append(hint, hint_len, &pos, "; ");
    section_list(hint, hint_len, &pos);
}
