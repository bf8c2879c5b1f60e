// cpu_data.c: batches from the uint8 dataset (ops.h gather_images), one image per iteration on the
// threads.
#include "../../src/core/common.h"
#include "cpu_internal.h"

void cpu_gather_images(OpsContext *ctx, const uint8_t *pixels, const int32_t *perm, int64_t offset, int n,
                       size_t image_elems, PixelRange range, float *out) {
    // Same float ops as dataset_fill_batch (torchvision's ToTensor, then Normalize(0.5, 1) or
    // Normalize(0.5, 0.5), or nothing).
    float scale[256];
    for (int v = 0; v < 256; v++) {
        float x = (float)v / 255.0f;
        scale[v] = range == PIXELS_UNIT ? x : range == PIXELS_SYMMETRIC ? (x - 0.5f) / 0.5f : x - 0.5f;
    }
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int i = 0; i < n; i++) {
        const uint8_t *src = pixels + (size_t)perm[offset + i] * image_elems;
        float *dst = out + (size_t)i * image_elems;
        for (size_t j = 0; j < image_elems; j++) dst[j] = scale[src[j]];
    }
}
