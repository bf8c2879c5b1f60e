// init.c: PyTorch's default initialization from our counter-based RNG. Each registry entry draws
// from its own stream (seed, INIT, entry index), so the values do not depend on the order in
// which layers are built, nor on the world size.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../core/rng.h"
#include "vqvae.h"

// Codebook init, resolved from quantizer.init ("auto": data for ema, uniform for vq).
typedef enum { CODEBOOK_UNIFORM, CODEBOOK_NORMAL, CODEBOOK_DATA } CodebookInit;

static CodebookInit codebook_init_kind(const Config *cfg) {
    if (strcmp(cfg->codebook_init, "uniform") == 0) return CODEBOOK_UNIFORM;
    if (strcmp(cfg->codebook_init, "normal") == 0) return CODEBOOK_NORMAL;
    if (strcmp(cfg->codebook_init, "data") == 0) return CODEBOOK_DATA;
    CHECK(strcmp(cfg->codebook_init, "auto") == 0, "quantizer.init '%s' unknown", cfg->codebook_init);
    return strcmp(cfg->quantizer, "ema") == 0 ? CODEBOOK_DATA : CODEBOOK_UNIFORM;
}

int model_codebook_init_from_data(const Config *cfg) { return codebook_init_kind(cfg) == CODEBOOK_DATA; }

static void fill_uniform(Rng *rng, float *x, size_t n, float bound) {
    for (size_t i = 0; i < n; i++) x[i] = rng_uniform_range(rng, -bound, bound);
}

static void fill_normal(Rng *rng, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(rng);
}

// The quantizer's entries, by key: the codebook, and for EMA its cluster sizes and sums.
static void init_codebook_entry(const ParamEntry *e, const Model *m, CodebookInit kind, Rng *rng, float *x) {
    int k = m->num_embeddings;
    if (strcmp(e->key, "_vq_vae._embedding.weight") == 0) {
        if (kind == CODEBOOK_NORMAL) fill_normal(rng, x, e->count);
        else fill_uniform(rng, x, e->count, 1.0f / (float)k);   // data: replaced after the first batch
    } else if (strcmp(e->key, "_vq_vae._ema_cluster_size") == 0) {
        // notebook: zeros; stable init: one member per code, matching ema_w = codebook
        float v = kind == CODEBOOK_NORMAL ? 0.0f : 1.0f;
        for (size_t i = 0; i < e->count; i++) x[i] = v;
    } else if (strcmp(e->key, "_vq_vae._ema_w") == 0) {
        if (kind == CODEBOOK_NORMAL) fill_normal(rng, x, e->count);   // notebook: its own N(0,1) draw
        // otherwise copied from the codebook by model_init_params
    } else {
        fatal_at(__FILE__, __LINE__, "no codebook init for '%s'", e->key);
    }
}

void model_init_params(Model *m, const Config *cfg, uint64_t seed) {
    const ParamRegistry *reg = &m->registry;
    CodebookInit codebook_kind = codebook_init_kind(cfg);
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
        case INIT_CODEBOOK: init_codebook_entry(e, m, codebook_kind, &rng, x); break;
        case INIT_ZERO: break;
        case INIT_ONE:
            for (size_t j = 0; j < e->count; j++) x[j] = 1.0f;
            break;
        }
    }
    if (m->quantizer == QUANTIZER_EMA && codebook_kind != CODEBOOK_NORMAL)
        memcpy(host + m->ema_w, host + m->codebook, sizeof(float) * (size_t)m->num_embeddings * m->embedding_dim);
    m->ctx->ops->to_device(m->ctx, m->params, host, reg->total_count * sizeof(float));
    m->ctx->ops->fill(m->ctx, m->adam_m, 0.0f, reg->trainable_count);
    m->ctx->ops->fill(m->ctx, m->adam_v, 0.0f, reg->trainable_count);
    free(host);
}
