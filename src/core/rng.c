// rng.c: streams of Philox4x32-10 (the block function is in philox.h, shared with the GPU).
#include "rng.h"

#include <math.h>

#include "philox.h"

// The op purposes share the counter's top byte with rng_stream's purposes: keep them apart.
enum { RNG_OP_DROPOUT = PHILOX_PURPOSE_DROPOUT, RNG_OP_NORMAL = PHILOX_PURPOSE_NORMAL };
_Static_assert((int)RNG_OP_DROPOUT > (int)RNG_PURPOSE_CODEBOOK && (int)RNG_OP_NORMAL > (int)RNG_PURPOSE_CODEBOOK &&
                   (int)RNG_OP_DROPOUT != (int)RNG_PURPOSE_TEST && (int)RNG_OP_NORMAL != (int)RNG_PURPOSE_TEST,
               "philox.h's op purposes must differ from every RngPurpose");

void philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) {
    philox4x32_10_block(counter, key, out);
}

Rng rng_stream(uint64_t seed, RngPurpose purpose, uint64_t a, uint32_t b) {
    Rng rng;
    rng.key[0] = (uint32_t)seed;
    rng.key[1] = (uint32_t)(seed >> 32);
    // counter = [block index, b, a (64 bits folded with the purpose)]
    rng.counter[0] = 0;
    rng.counter[1] = b;
    rng.counter[2] = (uint32_t)a;
    rng.counter[3] = (uint32_t)(a >> 32) ^ ((uint32_t)purpose << 24);
    rng.used = 4;
    return rng;
}

uint32_t rng_u32(Rng *rng) {
    if (rng->used == 4) {
        philox4x32_10(rng->counter, rng->key, rng->block);
        rng->counter[0]++;
        rng->used = 0;
    }
    return rng->block[rng->used++];
}

float rng_uniform(Rng *rng) { return philox_uniform(rng_u32(rng)); }

float rng_uniform_range(Rng *rng, float lo, float hi) { return lo + (hi - lo) * rng_uniform(rng); }

float rng_normal(Rng *rng) {
    // (0, 1] so that log() is finite
    float u1 = ((float)(rng_u32(rng) >> 8) + 1.0f) * (1.0f / 16777216.0f);
    float u2 = rng_uniform(rng);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958647692f * u2);
}

uint32_t rng_below(Rng *rng, uint32_t bound) {
    // Lemire's multiply-shift with rejection: unbiased for every bound.
    uint64_t m = (uint64_t)rng_u32(rng) * bound;
    uint32_t low = (uint32_t)m;
    if (low < bound) {
        uint32_t threshold = (uint32_t)(-bound) % bound;
        while (low < threshold) {
            m = (uint64_t)rng_u32(rng) * bound;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}
