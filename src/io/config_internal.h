// config_internal.h: the one key table (config_keys.c) and the helpers over it, shared by the
// config_*.c files. Not part of io's interface: everything outside io goes through config.h.
#pragma once
#include <stddef.h>

#include "io/config.h"

// KEY_DOUBLE: values used in double arithmetic (Adam's hyperparameters, as Python floats are).
// KEY_INT_LIST: a ConfigIntList, written [16, 32, 64] (YAML flow or block list; "16,32,64" in an override).
typedef enum {
    KEY_INT,
    KEY_INT64,
    KEY_UINT64,
    KEY_FLOAT,
    KEY_DOUBLE,
    KEY_STRING,
    KEY_BOOL,
    KEY_ENUM,
    KEY_INT_LIST
} KeyType;
extern const char *const CONFIG_TYPE_NAMES[];

// Flags: which bounds apply (value >= min, > min, <= max, < max; for a list, to every element),
// and whether the key changes the network's parameter shapes (config_same_architecture).
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

// Upper bound of the table's length (the YAML loader keeps a line number per key).
enum { CONFIG_MAX_KEYS = 128 };
extern const KeySpec CONFIG_KEYS[];
extern const size_t CONFIG_NUM_KEYS;

// ---- the table (config_keys.c) ----
size_t ck_section_len(const char *key);   // "model" of "model.arch"
const char *ck_leaf(const char *key);     // "arch" of "model.arch"
const KeySpec *ck_find(const char *full_key);
int ck_find_section(const char *name);    // index of the section's first key, or -1
int ck_first_of_section(size_t i);        // 1 when key i starts a section
static inline void *ck_field(Config *cfg, const KeySpec *k) { return (char *)cfg + k->offset; }
static inline const void *ck_cfield(const Config *cfg, const KeySpec *k) { return (const char *)cfg + k->offset; }

// ---- values (config_value.c) ----
// Append printf output at *pos of buf[len] (truncating, always NUL-terminated).
__attribute__((format(printf, 4, 5))) void ck_append(char *buf, size_t len, size_t *pos, const char *fmt, ...);
// Walks an enum's "ema|vq": returns the next choice and its length in *len, or NULL at the end.
const char *ck_next_choice(const char **cursor, int *len);
void ck_choices_list(const char *choices, char *buf, size_t len);   // "ema|vq" -> "[ema, vq]"
int ck_enum_has(const char *choices, const char *text);
// The value of key k in cfg as text (unquoted; a list as [a, b]).
void ck_format(const KeySpec *k, const Config *cfg, char *buf, size_t len);
double ck_numeric(const KeySpec *k, const Config *cfg);
// 0 when v satisfies k's bounds, else -1 with "KEY must be >= 1, got TEXT". Written so NaN fails.
int ck_check_range(const KeySpec *k, double v, const char *text, char *msg, size_t msg_len);
const char *ck_expected_kind(const KeySpec *k);   // "an integer", for messages
void ck_quote_got(const char *text, char *buf, size_t len);   // "'abc'" or "an empty value"
// Parse text as the value of key k and store it in cfg. On failure cfg is unchanged and msg says
// what was expected ("train.batch_size must be an integer, got 'abc'"), without a location; hint
// gets "; did you mean 'ema'?" or stays empty.
int ck_set_value(Config *cfg, const KeySpec *k, const char *text, char *msg, size_t msg_len, char *hint,
                 size_t hint_len);

// ---- hints for unknown names (config_hint.c) ----
void ck_suggest_key(const char *name, char *hint, size_t hint_len);
void ck_suggest_section(const char *name, char *hint, size_t hint_len);
