// test_rng.c: Philox4x32-10 known answers (Random123's kat_vectors) and basic distribution checks.
#include <stdint.h>
#include <string.h>

#include "core/rng.h"
#include "test_util.h"

int main(void) {
    TestCounts c = {0, 0};
    {
        uint32_t ctr[4] = {0, 0, 0, 0}, key[2] = {0, 0}, out[4];
        philox4x32_10(ctr, key, out);
        uint32_t want[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u};
        EXPECT(&c, memcmp(out, want, sizeof want) == 0, "zero KAT got %08x %08x %08x %08x", out[0], out[1], out[2], out[3]);
    }
    {
        uint32_t ctr[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, key[2] = {0xffffffffu, 0xffffffffu}, out[4];
        philox4x32_10(ctr, key, out);
        uint32_t want[4] = {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu};
        EXPECT(&c, memcmp(out, want, sizeof want) == 0, "ones KAT got %08x %08x %08x %08x", out[0], out[1], out[2], out[3]);
    }
    {
        uint32_t ctr[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, key[2] = {0xa4093822u, 0x299f31d0u}, out[4];
        philox4x32_10(ctr, key, out);
        uint32_t want[4] = {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u};
        EXPECT(&c, memcmp(out, want, sizeof want) == 0, "pi KAT got %08x %08x %08x %08x", out[0], out[1], out[2], out[3]);
    }
    // Same (seed, purpose, a, b) gives the same stream; different a gives a different one.
    Rng r1 = rng_stream(42, RNG_PURPOSE_TEST, 7, 3), r2 = rng_stream(42, RNG_PURPOSE_TEST, 7, 3);
    Rng r3 = rng_stream(42, RNG_PURPOSE_TEST, 8, 3);
    int same = 1, differ = 0;
    for (int i = 0; i < 100; i++) {
        uint32_t a = rng_u32(&r1), b = rng_u32(&r2), d = rng_u32(&r3);
        same &= a == b;
        differ |= a != d;
    }
    EXPECT(&c, same, "streams with equal keys differ");
    EXPECT(&c, differ, "streams with different keys are equal");
    // Moments of uniform and normal.
    Rng r = rng_stream(1, RNG_PURPOSE_TEST, 0, 0);
    double su = 0, sn = 0, sn2 = 0;
    int n = 200000, below_ok = 1;
    float umin = 1, umax = 0;
    for (int i = 0; i < n; i++) {
        float u = rng_uniform(&r);
        if (u < umin) umin = u;
        if (u > umax) umax = u;
        su += u;
        float z = rng_normal(&r);
        sn += z;
        sn2 += (double)z * z;
        below_ok &= rng_below(&r, 10) < 10;
    }
    EXPECT(&c, umin >= 0.0f && umax < 1.0f, "uniform range [%g, %g]", umin, umax);
    EXPECT(&c, test_close(su / n, 0.5, 0, 0.005), "uniform mean %g", su / n);
    EXPECT(&c, test_close(sn / n, 0.0, 0, 0.01), "normal mean %g", sn / n);
    EXPECT(&c, test_close(sn2 / n, 1.0, 0, 0.02), "normal variance %g", sn2 / n);
    EXPECT(&c, below_ok, "rng_below out of range");
    return test_finish("test_rng", &c);
}
