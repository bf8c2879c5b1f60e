// test_ops_memory.c: the backends' memory accounting. alloc and release keep
// ctx->allocated_bytes exact and ctx->peak_allocated_bytes its high-water mark (the workspace
// included), release refuses a pointer alloc did not return, and memory_in_use sees a new buffer.
// The CUDA context's accounting: tests/gpu/test_gpu_memory.c.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/common.h"
#include "kernels/ops.h"
#include "test_util.h"

#define EXPECT_BYTES(c, ctx, now, peak)                                                                 \
    EXPECT(c, (ctx)->allocated_bytes == (size_t)(now) && (ctx)->peak_allocated_bytes == (size_t)(peak), \
           "allocated %zu (expected %zu), peak %zu (expected %zu)", (ctx)->allocated_bytes, (size_t)(now),  \
           (ctx)->peak_allocated_bytes, (size_t)(peak))

static void test_alloc_release_peak(OpsContext *ctx, TestCounts *c) {
    const Ops *ops = ctx->ops;
    EXPECT_BYTES(c, ctx, 0, 0);
    unsigned char *a = ops->alloc(ctx, 100);
    EXPECT_BYTES(c, ctx, 100, 100);
    EXPECT(c, (uintptr_t)a % 64 == 0, "alloc should return 64-byte aligned memory, got %p", (void *)a);
    int zero = 1;
    for (int i = 0; i < 100; i++) zero &= a[i] == 0;
    EXPECT(c, zero, "alloc should zero-fill");
    unsigned char *b = ops->alloc(ctx, 1000);
    EXPECT_BYTES(c, ctx, 1100, 1100);
    ops->release(ctx, a);
    EXPECT_BYTES(c, ctx, 1000, 1100);
    unsigned char *d = ops->alloc(ctx, 50);
    EXPECT_BYTES(c, ctx, 1050, 1100);

    // The workspace counts; growing it releases the old one first, so the peak holds one of them.
    ops->reserve_workspace(ctx, 4096);
    EXPECT_BYTES(c, ctx, 1050 + 4096, 1050 + 4096);
    ops->reserve_workspace(ctx, 1000);   // already large enough: nothing changes
    EXPECT_BYTES(c, ctx, 1050 + 4096, 1050 + 4096);
    ops->reserve_workspace(ctx, 8192);
    EXPECT_BYTES(c, ctx, 1050 + 8192, 1050 + 8192);

    // A zero-byte buffer is a distinct pointer and counts nothing; releasing NULL is a no-op.
    void *empty = ops->alloc(ctx, 0);
    EXPECT(c, empty != NULL && empty != (void *)d, "alloc(0) should return a distinct pointer");
    EXPECT_BYTES(c, ctx, 1050 + 8192, 1050 + 8192);
    ops->release(ctx, empty);
    ops->release(ctx, NULL);
    ops->release(ctx, b);
    ops->release(ctx, d);
    EXPECT_BYTES(c, ctx, 8192, 1050 + 8192);
}

// Each context counts its own buffers.
static void test_two_contexts(TestCounts *c) {
    OpsContext x, y;
    ops_context_init(&x, "cpu", 0, 1, PRECISION_FP32, 0);
    ops_context_init(&y, "cpu", 0, 1, PRECISION_FP32, 0);
    void *p = x.ops->alloc(&x, 300);
    void *q = y.ops->alloc(&y, 7);
    EXPECT_BYTES(c, &x, 300, 300);
    EXPECT_BYTES(c, &y, 7, 7);
    x.ops->release(&x, p);
    y.ops->release(&y, q);
    EXPECT_BYTES(c, &x, 0, 300);
    EXPECT_BYTES(c, &y, 0, 7);
    ops_context_destroy(&x);
    ops_context_destroy(&y);
}

// alloc zero-fills, so a new 64 MiB buffer is resident at once.
static void test_memory_in_use(OpsContext *ctx, TestCounts *c) {
    const size_t bytes = (size_t)64 << 20;
    size_t before = ctx->ops->memory_in_use(ctx);
    EXPECT(c, before > 0, "memory_in_use should be the resident set size, got 0");
    void *big = ctx->ops->alloc(ctx, bytes);
    size_t after = ctx->ops->memory_in_use(ctx);
    EXPECT(c, after >= before + bytes / 4 * 3, "memory_in_use grew by %zd bytes after a %zu-byte alloc",
           (ptrdiff_t)(after - before), bytes);
    ctx->ops->release(ctx, big);
}

// Releasing memory that alloc did not return must stop with a message. Run in a child process.
static void test_foreign_pointer(OpsContext *ctx, TestCounts *c) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        unsigned char *foreign = calloc(1, 256);
        if (!foreign || !freopen("/dev/null", "w", stderr)) _exit(3);
        ctx->ops->release(ctx, foreign + 64);
        _exit(0);   // reached only if the check did not fire
    }
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT(c, WIFEXITED(status) && WEXITSTATUS(status) == EXIT_ERROR,
           "release of a pointer alloc did not return should exit %d, status was %d", EXIT_ERROR, status);
}

int main(void) {
    TestCounts c = {0, 0};
    OpsContext ctx;
    ops_context_init(&ctx, "cpu", 0, 1, PRECISION_FP32, 0);
    test_alloc_release_peak(&ctx, &c);
    test_two_contexts(&c);
    test_memory_in_use(&ctx, &c);
    test_foreign_pointer(&ctx, &c);
    ops_context_destroy(&ctx);
    return test_finish("test_ops_memory", &c);
}
