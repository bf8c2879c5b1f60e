// init.c: PyTorch's default initialization from our counter-based RNG. Each registry entry draws
// from its own stream (seed, INIT, entry index), so the values do not depend on the order in
// which layers are built, nor on the world size.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../core/rng.h"
#include "model.h"

static void fill_uniform(Rng *rng, float *x, size_t n, float bound) {
    for (size_t i = 0; i < n; i++) x[i] = rng_uniform_range(rng, -bound, bound);
}

static void fill_normal(Rng *rng, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(rng);
}

static void fill_value(float *x, size_t n, float v) {
    for (size_t i = 0; i < n; i++) x[i] = v;
}

// The quantizer's entries. For the data init the codebook is replaced after the first batch.
static void init_quantizer_entry(const ParamEntry *e, CodebookInit kind, int k, Rng *rng, float *x) {
    switch (e->init) {
    case INIT_CODEBOOK:
        if (kind == CODEBOOK_INIT_NORMAL) fill_normal(rng, x, e->count);
        else fill_uniform(rng, x, e->count, 1.0f / (float)k);
        break;
    case INIT_EMA_CLUSTER_SIZE:   // notebook: zeros; stable init: one member per code, matching ema_w
        fill_value(x, e->count, kind == CODEBOOK_INIT_NORMAL ? 0.0f : 1.0f);
        break;
    case INIT_EMA_W:   // notebook: its own N(0,1) draw; otherwise the codebook (model_init_params)
        if (kind == CODEBOOK_INIT_NORMAL) fill_normal(rng, x, e->count);
        break;
    default: fatal_at(__FILE__, __LINE__, "'%s' is not a quantizer entry", e->key);
    }
}

void model_init_params(Model *m, uint64_t seed) {
    const ParamRegistry *reg = &m->registry;
    CodebookInit codebook_kind = m->spec.codebook_init;
    float *host = xcalloc(reg->total_count, sizeof(float));
    for (int i = 0; i < reg->count; i++) {
        const ParamEntry *e = &reg->entries[i];
        Rng rng = rng_stream(seed, RNG_PURPOSE_INIT, (uint64_t)i, 0);
        float *x = host + e->offset;
        switch (e->init) {
        case INIT_KAIMING_UNIFORM:   // kaiming_uniform_(a=sqrt(5)): bound = sqrt(6/((1+5) fan_in))
        case INIT_BIAS_UNIFORM:      // bias: bound = 1/sqrt(fan_in)
            fill_uniform(&rng, x, e->count, 1.0f / sqrtf((float)e->init_fan_in));
            break;
        case INIT_CODEBOOK:
        case INIT_EMA_CLUSTER_SIZE:
        case INIT_EMA_W: init_quantizer_entry(e, codebook_kind, m->spec.num_embeddings, &rng, x); break;
        case INIT_ZERO: break;
        case INIT_ONE: fill_value(x, e->count, 1.0f); break;
        }
    }
    if (m->ema_w_entry >= 0 && codebook_kind != CODEBOOK_INIT_NORMAL) {
        const ParamEntry *w = &reg->entries[m->ema_w_entry], *cb = &reg->entries[m->codebook_entry];
        memcpy(host + w->offset, host + cb->offset, sizeof(float) * cb->count);
    }
    m->ctx->ops->to_device(m->ctx, m->params, host, reg->total_count * sizeof(float));
    m->ctx->ops->fill(m->ctx, m->adam_m, 0.0f, reg->trainable_count);
    m->ctx->ops->fill(m->ctx, m->adam_v, 0.0f, reg->trainable_count);
    free(host);
}
