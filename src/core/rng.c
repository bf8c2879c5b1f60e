// rng.c: Philox4x32-10. Constants from Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3" (SC 2011).
#include "rng.h"

#include <math.h>

enum { PHILOX_ROUNDS = 10 };
static const uint32_t PHILOX_M0 = 0xD2511F53u, PHILOX_M1 = 0xCD9E8D57u;
static const uint32_t PHILOX_W0 = 0x9E3779B9u, PHILOX_W1 = 0xBB67AE85u;

static inline void mul_hi_lo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t product = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(product >> 32);
    *lo = (uint32_t)product;
}

void philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < PHILOX_ROUNDS; round++) {
        uint32_t hi0, lo0, hi1, lo1;
        mul_hi_lo(PHILOX_M0, c0, &hi0, &lo0);
        mul_hi_lo(PHILOX_M1, c2, &hi1, &lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
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

float rng_uniform(Rng *rng) { return (float)(rng_u32(rng) >> 8) * (1.0f / 16777216.0f); }

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
