// cpu_context.c: the CPU backend's memory, workspace and thread settings, and its ops table.
// Threads: one pool, OpenMP's (libgomp), which oneDNN uses too: every op splits its work over
// ctx->threads threads in fixed chunks, and OpenBLAS runs single-threaded inside them, because two
// pools on two cores were measured 2.5-3x slower than one.
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../../src/core/common.h"
#include "cpu_conv_internal.h"

enum { CPU_ALIGNMENT = 64 };

// Each block carries a header of one alignment unit in front of it, holding the size asked for,
// so that release can keep ctx->allocated_bytes exact without a table, and a tag that catches a
// pointer this allocator did not hand out.
typedef struct {
    size_t bytes;
    uint64_t tag;
} CpuBlockHeader;
static const uint64_t CPU_BLOCK_TAG = 0x7671766165637075ull;   // "vqvaecpu"
_Static_assert(sizeof(CpuBlockHeader) <= CPU_ALIGNMENT, "the block header must fit in one alignment unit");

void *cpu_alloc(OpsContext *ctx, size_t bytes) {
    size_t rounded = (bytes + CPU_ALIGNMENT - 1) / CPU_ALIGNMENT * CPU_ALIGNMENT;
    unsigned char *base = aligned_alloc(CPU_ALIGNMENT, CPU_ALIGNMENT + rounded);
    if (!base) fatal("out of host memory allocating %zu bytes; lower train.batch_size", bytes);
    memset(base, 0, CPU_ALIGNMENT + rounded);
    CpuBlockHeader *h = (CpuBlockHeader *)base;
    h->bytes = bytes;
    h->tag = CPU_BLOCK_TAG;
    ctx->allocated_bytes += bytes;
    if (ctx->allocated_bytes > ctx->peak_allocated_bytes) ctx->peak_allocated_bytes = ctx->allocated_bytes;
    return base + CPU_ALIGNMENT;
}

void cpu_release(OpsContext *ctx, void *ptr) {
    if (!ptr) return;
    unsigned char *base = (unsigned char *)ptr - CPU_ALIGNMENT;
    CpuBlockHeader *h = (CpuBlockHeader *)base;
    CHECK(h->tag == CPU_BLOCK_TAG, "cpu_release: %p was not allocated by the CPU backend's alloc "
          "(or was released twice); release only what ops->alloc returned", ptr);
    CHECK(h->bytes <= ctx->allocated_bytes, "cpu_release: releasing %zu bytes but only %zu are allocated in "
          "this context; a buffer was released through another context", h->bytes, ctx->allocated_bytes);
    ctx->allocated_bytes -= h->bytes;
    h->tag = 0;
    free(base);
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
    .vq_restart_pick = cpu_vq_restart_pick,
    .vq_restart_apply = cpu_vq_restart_apply,
    .adam_update = cpu_adam_update,
    .sum_squares = cpu_sum_squares,
    .flag_nonfinite = cpu_flag_nonfinite,
    .step_commit = cpu_step_commit,
    .gather_images = cpu_gather_images,
    .group_norm_forward = cpu_group_norm_forward,
    .group_norm_backward = cpu_group_norm_backward,
    .silu_forward = cpu_silu_forward,
    .silu_backward = cpu_silu_backward,
    .sigmoid_forward = cpu_sigmoid_forward,
    .sigmoid_backward = cpu_sigmoid_backward,
    .upsample2x_forward = cpu_upsample2x_forward,
    .upsample2x_backward = cpu_upsample2x_backward,
    .pad2d_forward = cpu_pad2d_forward,
    .pad2d_backward = cpu_pad2d_backward,
    .attention_workspace_bytes = cpu_attention_workspace_bytes,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .linear_forward = cpu_linear_forward,
    .linear_backward = cpu_linear_backward,
    .dropout_forward = cpu_dropout_forward,
    .dropout_backward = cpu_dropout_backward,
    .reparam_forward = cpu_reparam_forward,
    .reparam_backward = cpu_reparam_backward,
    .kl_forward = cpu_kl_forward,
    .kl_backward = cpu_kl_backward,
    .memory_in_use = cpu_memory_in_use,
};

void cpu_context_init(OpsContext *ctx, int threads) {
    if (threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cores > 0 ? (int)cores : 1;
    }
    ctx->ops = &cpu_ops;
    ctx->threads = threads;
    ctx->cpu_conv = cpu_conv_from_name("auto");
    ctx->backend = xcalloc(1, sizeof(CpuBackend));
    // OpenBLAS is called from inside our parallel regions, one call per thread: its own pool
    // would compete with OpenMP's for the same cores.
    openblas_set_num_threads(1);
}

void cpu_context_destroy(OpsContext *ctx) {
    CpuBackend *b = (CpuBackend *)ctx->backend;
    if (b) onednn_destroy(b->onednn);
    free(b);
    ctx->backend = NULL;
    cpu_release(ctx, ctx->workspace);
    ctx->workspace = NULL;
    ctx->workspace_bytes = 0;
}

// The resident set size of the process now (the CPU backend's "device" is host memory), from
// /proc/self/statm; where that cannot be read, the peak resident set size from getrusage.
// The CPU's model name from /proc/cpuinfo ("model name"), or "unknown CPU".
void cpu_context_describe(const OpsContext *ctx, OpsDescription *out) {
    (void)ctx;
    copy_string(out->device, sizeof out->device, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        const char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) != 0 || !colon) continue;
        colon++;
        while (*colon == ' ' || *colon == '\t') colon++;
        copy_string(out->device, sizeof out->device, colon);
        out->device[strcspn(out->device, "\n")] = '\0';
        break;
    }
    fclose(f);
}

size_t cpu_memory_in_use(OpsContext *ctx) {
    (void)ctx;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        unsigned long long size_pages = 0, resident_pages = 0;
        int got = fscanf(f, "%llu %llu", &size_pages, &resident_pages);
        fclose(f);
        long page = sysconf(_SC_PAGESIZE);
        if (got == 2 && page > 0) return (size_t)resident_pages * (size_t)page;
    }
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
    return (size_t)usage.ru_maxrss * 1024;   // KiB on Linux
}
