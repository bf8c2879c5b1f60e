// params.h: the registry of named parameters and buffers. Each entry has its PyTorch state_dict
// key and layout, and an offset into one flat float buffer. Trainable parameters come first, so
// the gradient buffer, the Adam moments and the gradient all-reduce cover the prefix
// [0, trainable_count) in one piece; non-trainable buffers (the EMA codebook state) follow.
#pragma once
#include <stddef.h>

enum { PARAM_MAX_ENTRIES = 512, PARAM_KEY_MAX = 96, PARAM_MAX_DIMS = 4 };

// How an entry is initialized (PyTorch's defaults, from our counter-based RNG).
typedef enum {
    INIT_KAIMING_UNIFORM,   // U(+-1/sqrt(fan_in)): kaiming_uniform_(a=sqrt(5)); fan_in from the layout
    INIT_BIAS_UNIFORM,      // U(+-1/sqrt(fan_in)) with fan_in of the layer's weight (init_fan_in)
    INIT_CODEBOOK,          // per the spec's codebook init (uniform +-1/K, normal, or from data)
    INIT_EMA_CLUSTER_SIZE,  // EMA cluster sizes: 1 per code (0 for the notebook's normal init)
    INIT_EMA_W,             // EMA sums: the codebook (its own N(0,1) draw for the normal init)
    INIT_ZERO,
    INIT_ONE,
} InitKind;

typedef struct {
    char key[PARAM_KEY_MAX];   // e.g. "_encoder._conv_1.weight"
    int ndim;
    int shape[PARAM_MAX_DIMS]; // PyTorch layout
    size_t offset;             // in floats, into the flat buffer
    size_t count;
    int trainable;
    InitKind init;
    int init_fan_in;           // for INIT_KAIMING_UNIFORM / INIT_BIAS_UNIFORM
} ParamEntry;

typedef struct {
    ParamEntry entries[PARAM_MAX_ENTRIES];
    int count;
    size_t trainable_count;   // floats in the trainable prefix
    size_t total_count;       // floats in the whole buffer
} ParamRegistry;

// Registration happens in two passes so trainable entries end up first: add everything, then
// param_registry_finalize assigns offsets (trainable first, each group in registration order).
void param_registry_init(ParamRegistry *reg);
ParamEntry *param_registry_add(ParamRegistry *reg, const char *key, int trainable, InitKind init, int fan_in,
                               int ndim, const int *shape);
void param_registry_finalize(ParamRegistry *reg);
const ParamEntry *param_registry_find(const ParamRegistry *reg, const char *key);  // NULL if absent
