// test_data_gather.c: the CPU gather_images (batches from the uint8 dataset through a permutation)
// against the definition, value by value, for each data.range: x = (float)v / 255 of image
// perm[offset + i], then x - 0.5 (centered), x (unit) or (x - 0.5) / 0.5 (symmetric); and the same
// bytes through dataset_fill_batch (what evaluation and reconstruct use) give the same floats.
#include <stdint.h>
#include <string.h>

#include "kernels/ops.h"
#include "src/io/dataset.h"
#include "test_util.h"

enum { COUNT = 23, IMAGE = 2 * 4 * 4, BATCH = 6, OFFSET = 9 };

static float definition(uint8_t v, PixelRange range) {
    float x = (float)v / 255.0f;
    return range == PIXELS_UNIT ? x : range == PIXELS_SYMMETRIC ? (x - 0.5f) / 0.5f : x - 0.5f;
}

static void test_range(TestCounts *c, OpsContext *ctx, const uint8_t *pixels, const int32_t *perm, PixelRange range) {
    float out[BATCH * IMAGE + 1], filled[BATCH * IMAGE];
    out[BATCH * IMAGE] = 42.0f;   // a guard past the batch
    ctx->ops->gather_images(ctx, pixels, perm, OFFSET, BATCH, IMAGE, range, out);
    int wrong = 0, first = -1;
    for (int i = 0; i < BATCH; i++)
        for (int j = 0; j < IMAGE; j++) {
            float want = definition(pixels[perm[OFFSET + i] * IMAGE + j], range);
            if (memcmp(&out[i * IMAGE + j], &want, sizeof want) != 0 && wrong++ == 0) first = i * IMAGE + j;
        }
    EXPECT(c, wrong == 0, "range %d: %d values differ from the definition (first at %d)", (int)range, wrong, first);
    EXPECT(c, out[BATCH * IMAGE] == 42.0f, "range %d: gather_images wrote past the batch", (int)range);

    // dataset_fill_batch on the same images: the training and the evaluation batches agree
    Dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.pixels = (uint8_t *)pixels;
    ds.count = COUNT;
    ds.channels = 2;
    ds.height = ds.width = 4;
    ds.range = (DataRange)range;
    int64_t indices[BATCH];
    for (int i = 0; i < BATCH; i++) indices[i] = perm[OFFSET + i];
    dataset_fill_batch(&ds, indices, BATCH, filled);
    EXPECT(c, memcmp(filled, out, sizeof filled) == 0, "range %d: gather_images and dataset_fill_batch differ",
           (int)range);

    // the extremes map exactly to the range's ends
    uint8_t ends[2] = {0, 255};
    int32_t ident[2] = {0, 1};
    float two[2];
    float lo = range == PIXELS_UNIT ? 0.0f : range == PIXELS_SYMMETRIC ? -1.0f : -0.5f;
    ctx->ops->gather_images(ctx, ends, ident, 0, 2, 1, range, two);
    EXPECT(c, two[0] == lo && two[1] == lo + (range == PIXELS_SYMMETRIC ? 2.0f : 1.0f),
           "range %d: 0 and 255 map to %g %g", (int)range, two[0], two[1]);
}

int main(void) {
    TestCounts c = {0, 0};
    OpsContext ctx;
    memset(&ctx, 0, sizeof ctx);
    cpu_context_init(&ctx, 1);
    uint8_t pixels[COUNT * IMAGE];
    int32_t perm[COUNT];
    for (int i = 0; i < COUNT * IMAGE; i++) pixels[i] = (uint8_t)(i * 37 + 11);
    for (int i = 0; i < COUNT; i++) perm[i] = (i * 5 + 2) % COUNT;
    test_range(&c, &ctx, pixels, perm, PIXELS_CENTERED);
    test_range(&c, &ctx, pixels, perm, PIXELS_UNIT);
    test_range(&c, &ctx, pixels, perm, PIXELS_SYMMETRIC);
    cpu_context_destroy(&ctx);
    return test_finish("test_data_gather", &c);
}
