// params.c: see params.h.
#include "params.h"

#include <string.h>

#include "../core/common.h"

void param_registry_init(ParamRegistry *reg) { memset(reg, 0, sizeof *reg); }

ParamEntry *param_registry_add(ParamRegistry *reg, const char *key, int trainable, InitKind init, int fan_in,
                               int ndim, const int *shape) {
    CHECK(reg->count < PARAM_MAX_ENTRIES, "more than %d parameters; raise PARAM_MAX_ENTRIES", PARAM_MAX_ENTRIES);
    CHECK(ndim >= 1 && ndim <= PARAM_MAX_DIMS, "parameter '%s' has %d dims", key, ndim);
    CHECK(param_registry_find(reg, key) == NULL, "parameter '%s' registered twice", key);
    ParamEntry *e = &reg->entries[reg->count++];
    memset(e, 0, sizeof *e);
    CHECK(copy_string(e->key, sizeof e->key, key) == 0, "parameter key '%s' too long", key);
    e->ndim = ndim;
    e->count = 1;
    for (int i = 0; i < ndim; i++) {
        CHECK(shape[i] > 0, "parameter '%s' has dim %d = %d", key, i, shape[i]);
        e->shape[i] = shape[i];
        e->count *= (size_t)shape[i];
    }
    e->trainable = trainable;
    e->init = init;
    e->init_fan_in = fan_in;
    return e;
}

void param_registry_finalize(ParamRegistry *reg) {
    size_t offset = 0;
    for (int pass = 0; pass < 2; pass++) {
        int want_trainable = pass == 0;
        for (int i = 0; i < reg->count; i++) {
            ParamEntry *e = &reg->entries[i];
            if (e->trainable != want_trainable) continue;
            e->offset = offset;
            offset += e->count;
        }
        if (pass == 0) reg->trainable_count = offset;
    }
    reg->total_count = offset;
}

const ParamEntry *param_registry_find(const ParamRegistry *reg, const char *key) {
    for (int i = 0; i < reg->count; i++)
        if (strcmp(reg->entries[i].key, key) == 0) return &reg->entries[i];
    return NULL;
}
