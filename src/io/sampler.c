// sampler.c: see sampler.h.
#include "sampler.h"

#include <stdlib.h>

#include "../core/common.h"
#include "../core/rng.h"

void sampler_init(Sampler *s, uint64_t seed, int64_t count) {
    CHECK(count > 0, "sampler over an empty dataset");
    s->seed = seed;
    s->count = count;
    s->epoch = -1;
    s->perm = xmalloc((size_t)count * sizeof(int64_t));
}

void sampler_free(Sampler *s) {
    free(s->perm);
    s->perm = NULL;
}

void sampler_set_epoch(Sampler *s, int64_t epoch) {
    if (s->epoch == epoch) return;
    Rng rng = rng_stream(s->seed, RNG_PURPOSE_SHUFFLE, (uint64_t)epoch, 0);
    for (int64_t i = 0; i < s->count; i++) s->perm[i] = i;
    for (int64_t i = s->count - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&rng, (uint32_t)(i + 1));
        int64_t t = s->perm[i];
        s->perm[i] = s->perm[j];
        s->perm[j] = t;
    }
    s->epoch = epoch;
}

int64_t sampler_next_slice(Sampler *s, SamplerPosition *pos, int batch, int world, int rank) {
    int64_t global = (int64_t)batch * world;
    CHECK(global <= s->count,
          "global batch %lld (train.batch_size %d x %d ranks) is larger than the dataset (%lld images); "
          "lower train.batch_size", (long long)global, batch, world, (long long)s->count);
    if (pos->offset + global > s->count) {
        pos->epoch++;
        pos->offset = 0;
    }
    sampler_set_epoch(s, pos->epoch);
    int64_t start = pos->offset + (int64_t)rank * batch;
    pos->offset += global;
    if (pos->offset + global > s->count) {
        pos->epoch++;
        pos->offset = 0;
    }
    return start;
}

void sampler_next_batch(Sampler *s, SamplerPosition *pos, int batch, int world, int rank, int64_t *indices) {
    int64_t start = sampler_next_slice(s, pos, batch, world, rank);
    for (int i = 0; i < batch; i++) indices[i] = s->perm[start + i];
}
