// test_ops_data.c: the CPU gather_images (batches from the uint8 dataset through a permutation)
// against the definition, value by value: out = (float)v / 255 - 0.5 of image perm[offset + i].
#include <stdint.h>
#include <string.h>

#include "kernels/ops.h"
#include "test_util.h"

int main(void) {
    TestCounts c = {0, 0};
    OpsContext ctx;
    memset(&ctx, 0, sizeof ctx);
    cpu_context_init(&ctx, 1);

    enum { COUNT = 23, IMAGE = 2 * 4 * 4, BATCH = 6, OFFSET = 9 };
    uint8_t pixels[COUNT * IMAGE];
    int32_t perm[COUNT];
    for (int i = 0; i < COUNT * IMAGE; i++) pixels[i] = (uint8_t)(i * 37 + 11);
    for (int i = 0; i < COUNT; i++) perm[i] = (i * 5 + 2) % COUNT;
    float out[BATCH * IMAGE + 1];
    out[BATCH * IMAGE] = 42.0f;   // a guard past the batch
    ctx.ops->gather_images(&ctx, pixels, perm, OFFSET, BATCH, IMAGE, out);
    int wrong = 0, first = -1;
    for (int i = 0; i < BATCH; i++)
        for (int j = 0; j < IMAGE; j++) {
            float want = (float)pixels[perm[OFFSET + i] * IMAGE + j] / 255.0f - 0.5f;
            if (memcmp(&out[i * IMAGE + j], &want, sizeof want) != 0 && wrong++ == 0) first = i * IMAGE + j;
        }
    EXPECT(&c, wrong == 0, "%d values differ from v / 255 - 0.5 (first at %d)", wrong, first);
    EXPECT(&c, out[BATCH * IMAGE] == 42.0f, "gather_images wrote past the batch");
    EXPECT(&c, out[0] == (float)pixels[perm[OFFSET] * IMAGE] / 255.0f - 0.5f, "first value");
    // the extremes map to -0.5 and +0.5 exactly
    uint8_t ends[2] = {0, 255};
    int32_t ident[2] = {0, 1};
    float two[2];
    ctx.ops->gather_images(&ctx, ends, ident, 0, 2, 1, two);
    EXPECT(&c, two[0] == -0.5f && two[1] == 0.5f, "0 and 255 should map to -0.5 and 0.5, got %g %g", two[0], two[1]);

    cpu_context_destroy(&ctx);
    return test_finish("test_ops_data", &c);
}
