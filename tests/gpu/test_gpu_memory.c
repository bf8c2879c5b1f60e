// test_gpu_memory.c: the CUDA context's memory accounting (the CPU side is test_ops_memory.c).
// A new context counts its own cuBLAS workspace from the start; alloc and release keep
// allocated_bytes exact and peak_allocated_bytes its high-water mark (the workspace included);
// memory_in_use (cudaMemGetInfo's used minus the value at context creation) covers our buffers.
// SKIP (exit 77) when the build has no CUDA backend or no GPU is visible.
#include <stdio.h>

#include "core/common.h"
#include "kernels/ops.h"
#include "gpu_test.h"
#include "test_util.h"

#define EXPECT_BYTES(c, ctx, now, peak)                                                                 \
    EXPECT(c, (ctx)->allocated_bytes == (size_t)(now) && (ctx)->peak_allocated_bytes == (size_t)(peak), \
           "allocated %zu (expected %zu), peak %zu (expected %zu)", (ctx)->allocated_bytes, (size_t)(now),  \
           (ctx)->peak_allocated_bytes, (size_t)(peak))

int main(void) {
    if (gpu_test_unavailable()) return TEST_SKIP_CODE;
    TestCounts c = {0, 0};
    OpsContext g;
    ops_context_init(&g, "cuda", 0, 0, PRECISION_TF32, 0);
    const Ops *ops = g.ops;
    size_t base = g.allocated_bytes;
    EXPECT(&c, base >= ((size_t)32 << 20) && g.peak_allocated_bytes == base,
           "a new CUDA context should hold its 32 MiB cuBLAS workspace, holds %zu (peak %zu)", base,
           g.peak_allocated_bytes);
    const size_t big_bytes = (size_t)64 << 20;
    void *a = ops->alloc(&g, 1000), *big = ops->alloc(&g, big_bytes);
    EXPECT_BYTES(&c, &g, base + 1000 + big_bytes, base + 1000 + big_bytes);
    size_t in_use = ops->memory_in_use(&g);
    EXPECT(&c, in_use >= base + big_bytes, "memory_in_use %zu should cover our %zu allocated bytes", in_use,
           base + 1000 + big_bytes);
    ops->release(&g, a);
    EXPECT_BYTES(&c, &g, base + big_bytes, base + 1000 + big_bytes);
    ops->reserve_workspace(&g, 4096);
    EXPECT_BYTES(&c, &g, base + big_bytes + 4096, base + big_bytes + 4096);
    ops->release(&g, big);
    EXPECT_BYTES(&c, &g, base + 4096, base + big_bytes + 4096);
    ops_context_destroy(&g);
    return test_finish("test_gpu_memory", &c);
}
