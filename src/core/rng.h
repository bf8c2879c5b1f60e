// rng.h: counter-based random numbers (Philox4x32-10, Salmon et al. 2011).
// A stream is a pure function of (seed, purpose, a, b): no state needs saving in a checkpoint,
// and every rank can reproduce any other rank's numbers.
#pragma once
#include <stdint.h>

// What the numbers are for; part of the key so that purposes never share a stream.
typedef enum {
    RNG_PURPOSE_INIT = 1,        // parameter initialization (a = parameter index)
    RNG_PURPOSE_SHUFFLE = 2,     // epoch permutation (a = epoch)
    RNG_PURPOSE_SYNTHETIC = 3,   // synthetic dataset images (a = image index)
    RNG_PURPOSE_CODEBOOK = 4,    // data-driven codebook init (a = step)
    RNG_PURPOSE_RESTART = 5,     // dead-code restart (a = step, b = code)
    RNG_PURPOSE_KMEANS = 6,      // k-means++ seeding of the codebook
    RNG_PURPOSE_SAMPLE = 7,      // `sample`: a VAE's z ~ N(0, I) (a = sample index)
    RNG_PURPOSE_TEST = 99,       // tests only
} RngPurpose;

typedef struct {
    uint32_t key[2];
    uint32_t counter[4];
    uint32_t block[4];   // last output block
    int used;            // words of block already handed out (4 = need a new block)
} Rng;

// One Philox4x32-10 block: out = philox(counter, key).
void philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);

Rng rng_stream(uint64_t seed, RngPurpose purpose, uint64_t a, uint32_t b);
uint32_t rng_u32(Rng *rng);
float rng_uniform(Rng *rng);                  // [0, 1), 24 random bits
float rng_uniform_range(Rng *rng, float lo, float hi);
float rng_normal(Rng *rng);                   // N(0, 1), Box-Muller
uint32_t rng_below(Rng *rng, uint32_t bound); // uniform in [0, bound), unbiased; bound > 0
