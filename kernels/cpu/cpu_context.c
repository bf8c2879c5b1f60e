// cpu_context.c: the CPU backend's memory, workspace and thread settings, and its ops table.
// Threads: OpenBLAS owns the only thread pool (our own loops are single-threaded), because two
// pools on two cores were measured 2.5-3x slower than one.
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/core/common.h"
#include "cpu_internal.h"

enum { CPU_ALIGNMENT = 64 };

void *cpu_alloc(OpsContext *ctx, size_t bytes) {
    (void)ctx;
    size_t rounded = (bytes + CPU_ALIGNMENT - 1) / CPU_ALIGNMENT * CPU_ALIGNMENT;
    void *p = aligned_alloc(CPU_ALIGNMENT, rounded ? rounded : CPU_ALIGNMENT);
    if (!p) fatal("out of host memory allocating %zu bytes; lower train.batch_size", bytes);
    memset(p, 0, rounded);
    return p;
}

void cpu_release(OpsContext *ctx, void *ptr) {
    (void)ctx;
    free(ptr);
}

void cpu_to_device(OpsContext *ctx, void *dst, const void *src_host, size_t bytes) {
    (void)ctx;
    if (bytes) memcpy(dst, src_host, bytes);
}

void cpu_to_host(OpsContext *ctx, void *dst_host, const void *src, size_t bytes) {
    (void)ctx;
    if (bytes) memcpy(dst_host, src, bytes);
}

void cpu_copy(OpsContext *ctx, void *dst, const void *src, size_t bytes) {
    (void)ctx;
    if (bytes && dst != src) memmove(dst, src, bytes);
}

void cpu_synchronize(OpsContext *ctx) { (void)ctx; }

void cpu_reserve_workspace(OpsContext *ctx, size_t bytes) {
    if (bytes <= ctx->workspace_bytes) return;
    cpu_release(ctx, ctx->workspace);
    ctx->workspace = cpu_alloc(ctx, bytes);
    ctx->workspace_bytes = bytes;
}

const Ops cpu_ops = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .release = cpu_release,
    .to_device = cpu_to_device,
    .to_host = cpu_to_host,
    .copy = cpu_copy,
    .synchronize = cpu_synchronize,
    .reserve_workspace = cpu_reserve_workspace,
    .conv_prepare = cpu_conv_prepare,
    .conv_forward = cpu_conv_forward,
    .conv_backward = cpu_conv_backward,
    .relu_forward = cpu_relu_forward,
    .relu_backward = cpu_relu_backward,
    .add = cpu_add,
    .scale = cpu_scale,
    .fill = cpu_fill,
    .nchw_to_nhwc = cpu_nchw_to_nhwc,
    .nhwc_to_nchw = cpu_nhwc_to_nchw,
    .mse_forward = cpu_mse_forward,
    .mse_backward = cpu_mse_backward,
    .vq_workspace_bytes = cpu_vq_workspace_bytes,
    .vq_nearest = cpu_vq_nearest,
    .vq_gather = cpu_vq_gather,
    .vq_code_stats = cpu_vq_code_stats,
    .vq_codebook_grad = cpu_vq_codebook_grad,
    .ema_update = cpu_ema_update,
    .adam_update = cpu_adam_update,
    .sum_squares = cpu_sum_squares,
};

void cpu_context_init(OpsContext *ctx, int threads) {
    if (threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cores > 0 ? (int)cores : 1;
    }
    ctx->ops = &cpu_ops;
    ctx->threads = threads;
    openblas_set_num_threads(threads);
}

void cpu_context_destroy(OpsContext *ctx) {
    cpu_release(ctx, ctx->workspace);
    ctx->workspace = NULL;
    ctx->workspace_bytes = 0;
}
