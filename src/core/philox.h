// philox.h: the Philox4x32-10 block function (Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3", SC 2011) and the counter layout of the random ops (dropout, the VAE's eps), shared by
// the host (rng.c, the CPU backend) and the device (the CUDA backend), so both draw the same bits.
//
// Counter layout of the ops (dropout_forward, reparam_forward in kernels/ops.h):
//   key     = { seed & 0xffffffff, seed >> 32 }
//   counter = { block, sample, step, (purpose << 24) | layer }
// with sample the GLOBAL index of the sample (its position in the global batch, < 2^32), step the
// training step (< 2^32), layer the caller's id of the layer (< 2^24), purpose PHILOX_PURPOSE_*,
// and block the index of a 4-word output block within the sample. Nothing depends on which rank
// holds the sample or where it sits in a rank's slice, so the numbers are the same at any world
// size, and a resumed run (same seed and step) draws the same ones.
// - Dropout: element e of a sample (its index in the sample's flattened [c, h, w]) uses word
//   e % 4 of block e / 4; u = philox_uniform(word); kept when u >= p.
// - Normal: element e uses words 2 (e % 2) and 2 (e % 2) + 1 of block e / 2 as (a, b) of
//   philox_normal (Box-Muller's cosine branch, in double).
// The purposes sit above rng.h's RngPurpose values in the counter's top byte (rng_stream puts its
// purpose there too), so the ops' streams never meet rng_stream's; rng.c checks this.
#pragma once
#include <math.h>
#include <stdint.h>

#ifndef VQ_HOST_DEVICE
#ifdef __CUDACC__
#define VQ_HOST_DEVICE __host__ __device__
#else
#define VQ_HOST_DEVICE
#endif
#endif

enum {
    PHILOX_PURPOSE_DROPOUT = 0x40,
    PHILOX_PURPOSE_NORMAL = 0x41,   // reparam_forward's eps
    PHILOX_LAYER_LIMIT = 1 << 24,   // layer ids must be below this
};

// out = philox4x32_10(counter, key): ten rounds of two 32x32->64 multiplies, key bumped by the
// Weyl constants after each round.
static inline VQ_HOST_DEVICE void philox4x32_10_block(const uint32_t counter[4], const uint32_t key[2],
                                                      uint32_t out[4]) {
    const uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u, w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
    uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)m0 * (uint64_t)c0, p1 = (uint64_t)m1 * (uint64_t)c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c0 = n0;
        c1 = (uint32_t)p1;
        c2 = n2;
        c3 = (uint32_t)p0;
        k0 += w0;
        k1 += w1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

// The block `block` of (seed, purpose, layer, step, sample), in the layout above.
static inline VQ_HOST_DEVICE void philox_op_block(uint64_t seed, uint32_t purpose, uint32_t layer, uint32_t step,
                                                  uint32_t sample, uint32_t block, uint32_t out[4]) {
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t counter[4] = {block, sample, step, (purpose << 24) | layer};
    philox4x32_10_block(counter, key, out);
}

// [0, 1) from the top 24 bits, exactly (as rng_uniform): 24-bit integers and the power of two are
// exact in float, so every backend forms the same value.
static inline VQ_HOST_DEVICE float philox_uniform(uint32_t word) {
    return (float)(word >> 8) * (1.0f / 16777216.0f);
}

// N(0, 1) from two words: u1 in (0, 1] (so log is finite), u2 in [0, 1), both exact, then
// sqrt(-2 log u1) cos(2 pi u2) in double, rounded to float once. Double, unlike rng_normal's float
// formula, so that the host's and the device's log and cos (each within an ulp of double) round
// to the same float except in vanishingly rare cases.
static inline VQ_HOST_DEVICE float philox_normal(uint32_t a, uint32_t b) {
    double u1 = ((double)(a >> 8) + 1.0) * (1.0 / 16777216.0);
    double u2 = (double)(b >> 8) * (1.0 / 16777216.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2));
}
