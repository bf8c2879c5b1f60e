// dataset_synthetic.c: smooth random images (a pure function of seed and index), for tests and
// benchmarks without dataset files.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../core/rng.h"
#include "dataset_internal.h"

enum { SYNTHETIC_MAX_BLOBS = 4 };

// One image: a per-channel base colour with a linear gradient, plus 2-4 Gaussian blobs of random
// centre, width and per-channel colour; smooth, so a small VQ-VAE learns it quickly. All random
// numbers come from the image's own stream, in a fixed order: a pure function of (seed, index).
// work holds (2 * SYNTHETIC_MAX_BLOBS + 1) * size floats.
static void synthetic_image(uint64_t seed, uint64_t index, int channels, int size, uint8_t *dst, float *work) {
    Rng rng = rng_stream(seed, RNG_PURPOSE_SYNTHETIC, index, 0);
    float base[SYNTHETIC_MAX_CHANNELS], grad_x[SYNTHETIC_MAX_CHANNELS], grad_y[SYNTHETIC_MAX_CHANNELS];
    for (int c = 0; c < channels; c++) {
        base[c] = rng_uniform_range(&rng, 0.2f, 0.8f);
        grad_x[c] = rng_uniform_range(&rng, -0.4f, 0.4f);
        grad_y[c] = rng_uniform_range(&rng, -0.4f, 0.4f);
    }
    int blobs = 2 + (int)rng_below(&rng, 3);
    float colour[SYNTHETIC_MAX_BLOBS][SYNTHETIC_MAX_CHANNELS];
    float *coord = work;  // pixel centre in [-0.5, 0.5]
    for (int i = 0; i < size; i++) coord[i] = ((float)i + 0.5f) / (float)size - 0.5f;
    // A Gaussian blob is separable: exp(-r^2 / 2s^2) = gx[x] * gy[y], so each costs 2 x size exps.
    for (int b = 0; b < blobs; b++) {
        float cx = rng_uniform_range(&rng, -0.35f, 0.35f), cy = rng_uniform_range(&rng, -0.35f, 0.35f);
        float sigma = rng_uniform_range(&rng, 0.06f, 0.22f);
        for (int c = 0; c < channels; c++) colour[b][c] = rng_uniform_range(&rng, -0.6f, 0.6f);
        float *gx = work + (1 + 2 * b) * size, *gy = gx + size;
        for (int i = 0; i < size; i++) {
            float dx = (coord[i] - cx) / sigma, dy = (coord[i] - cy) / sigma;
            gx[i] = expf(-0.5f * dx * dx);
            gy[i] = expf(-0.5f * dy * dy);
        }
    }
    for (int c = 0; c < channels; c++) {
        for (int y = 0; y < size; y++) {
            for (int x = 0; x < size; x++) {
                float v = base[c] + grad_x[c] * coord[x] + grad_y[c] * coord[y];
                for (int b = 0; b < blobs; b++) {
                    const float *gx = work + (1 + 2 * b) * size, *gy = gx + size;
                    v += colour[b][c] * gx[x] * gy[y];
                }
                v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                dst[((size_t)c * size + y) * size + x] = (uint8_t)(v * 255.0f + 0.5f);
            }
        }
    }
}

void dataset_synthetic_range(uint64_t seed, uint64_t first_index, int64_t count, int channels, int size,
                             Dataset *out) {
    CHECK(count > 0 && channels > 0 && channels <= SYNTHETIC_MAX_CHANNELS && size > 0,
          "synthetic dataset of %lld images of %dx%dx%d: expected count > 0, 1..%d channels, size > 0",
          (long long)count, channels, size, size, SYNTHETIC_MAX_CHANNELS);
    memset(out, 0, sizeof *out);
    out->count = count;
    out->channels = channels;
    out->height = size;
    out->width = size;
    size_t image_bytes = (size_t)channels * size * size;
    out->pixels = xmalloc((size_t)count * image_bytes);
    float *work = xmalloc((size_t)(2 * SYNTHETIC_MAX_BLOBS + 1) * size * sizeof(float));
    for (int64_t i = 0; i < count; i++)
        synthetic_image(seed, first_index + (uint64_t)i, channels, size, out->pixels + (size_t)i * image_bytes, work);
    free(work);
    dataset_compute_stats(out);
    snprintf(out->source, sizeof out->source, "synthetic (seed %llu, images %llu..%llu, %dx%dx%d)",
             (unsigned long long)seed, (unsigned long long)first_index,
             (unsigned long long)(first_index + (uint64_t)count - 1), channels, size, size);
}

void dataset_make_synthetic(uint64_t seed, int64_t count, int channels, int size, Dataset *out) {
    dataset_synthetic_range(seed, 0, count, channels, size, out);
}
