// cuda_context.cu: the CUDA backend's context (device, stream, cuBLAS and cuDNN handles),
// memory, workspace and the cuda_ops table.
//
// Memory is plain cudaMalloc (never managed memory): allocations happen at start-up only, so the
// allocator's speed does not matter, and plain device pointers work with NCCL, on any stream and
// inside CUDA graphs. Everything else is ordered on the context's one stream.
#include <stdlib.h>
#include <string.h>

#include "cuda_common.h"

// cuBLAS's recommended workspace for Hopper. Giving it one up front means cuBLAS never allocates
// while a step runs (which also keeps the step capturable in a CUDA graph).
static const size_t CUBLAS_WORKSPACE_BYTES = (size_t)32 << 20;

// This file's view of ctx->backend: the CudaBackend the other files share (first member, so
// cuda_backend(ctx) stays valid) plus the memory accounting only this file needs.
typedef struct {
    void *ptr;
    size_t bytes;
} CudaAllocation;

typedef struct {
    CudaBackend base;              // must stay first
    // Live allocations, so that release knows how many bytes it frees (cudaFree does not say).
    // Unordered; grows only while allocating, i.e. at start-up.
    CudaAllocation *allocations;
    int allocation_count, allocation_capacity;
    size_t used_at_init;           // cudaMemGetInfo's used bytes before our handles and buffers
} CudaContextState;

static CudaContextState *context_state(OpsContext *ctx) { return (CudaContextState *)ctx->backend; }

extern "C" int cuda_backend_compiled(void) { return 1; }

extern "C" int cuda_device_count(void) {
    // Called on machines without a GPU or driver ("auto" device, GPU tests deciding to skip):
    // any error only means "no usable GPU", so it is neither fatal nor printed.
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        (void)cudaGetLastError();   // clear it so that later calls do not report it
        return 0;
    }
    return count;
}

extern "C" void *cuda_context_stream(OpsContext *ctx) {
    CHECK(ctx && ctx->kind == BACKEND_CUDA && ctx->backend,
          "cuda_context_stream called on a context that is not a CUDA context");
    return (void *)cuda_stream(ctx);
}

// ---- memory ----------------------------------------------------------------------------------

void *cuda_alloc(OpsContext *ctx, size_t bytes) {
    void *p = NULL;
    // A 0-byte request still returns a distinct pointer, as the CPU backend does.
    cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
    if (err != cudaSuccess) {
        size_t free_bytes = 0, total_bytes = 0;
        (void)cudaGetLastError();
        (void)cudaMemGetInfo(&free_bytes, &total_bytes);
        fatal("out of GPU memory allocating %zu bytes on GPU %d (%s; %zu of %zu MiB free); "
              "lower train.batch_size", bytes, ctx->device_index, cudaGetErrorString(err),
              free_bytes >> 20, total_bytes >> 20);
    }
    if (bytes) CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cuda_stream(ctx)));

    CudaContextState *st = context_state(ctx);
    if (st->allocation_count == st->allocation_capacity) {
        int capacity = st->allocation_capacity ? 2 * st->allocation_capacity : 64;
        CudaAllocation *grown = (CudaAllocation *)realloc(st->allocations, (size_t)capacity * sizeof *grown);
        if (!grown) fatal("out of host memory growing the table of GPU allocations to %d entries", capacity);
        st->allocations = grown;
        st->allocation_capacity = capacity;
    }
    st->allocations[st->allocation_count++] = CudaAllocation{p, bytes};
    ctx->allocated_bytes += bytes;
    if (ctx->allocated_bytes > ctx->peak_allocated_bytes) ctx->peak_allocated_bytes = ctx->allocated_bytes;
    return p;
}

void cuda_release(OpsContext *ctx, void *ptr) {
    if (!ptr) return;
    // Work queued on the stream may still read the buffer.
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream(ctx)));
    CudaContextState *st = context_state(ctx);
    int i = 0;
    while (i < st->allocation_count && st->allocations[i].ptr != ptr) i++;
    CHECK(i < st->allocation_count, "cuda_release: %p is not a live allocation of this CUDA context (released "
          "twice, or allocated by another context); release only what ops->alloc returned", ptr);
    ctx->allocated_bytes -= st->allocations[i].bytes;
    st->allocations[i] = st->allocations[--st->allocation_count];
    CUDA_CHECK(cudaFree(ptr));
}

// A pageable source may be reused as soon as this returns (CUDA stages pageable memory before
// cudaMemcpyAsync returns); a pinned source must stay untouched until the stream reaches the copy.
void cuda_to_device(OpsContext *ctx, void *dst, const void *src_host, size_t bytes) {
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, cuda_stream(ctx)));
}

void cuda_to_host(OpsContext *ctx, void *dst_host, const void *src, size_t bytes) {
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, cuda_stream(ctx)));
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream(ctx)));
}

// Unlike the CPU backend's memmove, overlapping (but different) ranges are not supported.
void cuda_copy(OpsContext *ctx, void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_stream(ctx)));
}

void cuda_synchronize(OpsContext *ctx) { CUDA_CHECK(cudaStreamSynchronize(cuda_stream(ctx))); }

void cuda_reserve_workspace(OpsContext *ctx, size_t bytes) {
    if (bytes <= ctx->workspace_bytes) return;
    cuda_release(ctx, ctx->workspace);
    ctx->workspace = cuda_alloc(ctx, bytes);
    ctx->workspace_bytes = bytes;
}

// ---- the table -------------------------------------------------------------------------------

const Ops cuda_ops = {
    .name = "cuda",
    .alloc = cuda_alloc,
    .release = cuda_release,
    .to_device = cuda_to_device,
    .to_host = cuda_to_host,
    .copy = cuda_copy,
    .synchronize = cuda_synchronize,
    .reserve_workspace = cuda_reserve_workspace,
    .conv_prepare = cuda_conv_prepare,
    .conv_forward = cuda_conv_forward,
    .conv_backward = cuda_conv_backward,
    .relu_forward = cuda_relu_forward,
    .relu_backward = cuda_relu_backward,
    .add = cuda_add,
    .scale = cuda_scale,
    .fill = cuda_fill,
    .nchw_to_nhwc = cuda_nchw_to_nhwc,
    .nhwc_to_nchw = cuda_nhwc_to_nchw,
    .mse_forward = cuda_mse_forward,
    .mse_backward = cuda_mse_backward,
    .vq_workspace_bytes = cuda_vq_workspace_bytes,
    .vq_nearest = cuda_vq_nearest,
    .vq_gather = cuda_vq_gather,
    .vq_code_stats = cuda_vq_code_stats,
    .vq_codebook_grad = cuda_vq_codebook_grad,
    .ema_update = cuda_ema_update,
    .vq_restart_pick = cuda_vq_restart_pick,
    .vq_restart_apply = cuda_vq_restart_apply,
    .adam_update = cuda_adam_update,
    .sum_squares = cuda_sum_squares,
    .flag_nonfinite = cuda_flag_nonfinite,
    .step_commit = cuda_step_commit,
    .gather_images = cuda_gather_images,
    .graph_begin = cuda_graph_begin,
    .graph_end = cuda_graph_end,
    .graph_launch = cuda_graph_launch,
    .graph_destroy = cuda_graph_destroy,
    .group_norm_forward = cuda_group_norm_forward,
    .group_norm_backward = cuda_group_norm_backward,
    .silu_forward = cuda_silu_forward,
    .silu_backward = cuda_silu_backward,
    .sigmoid_forward = cuda_sigmoid_forward,
    .sigmoid_backward = cuda_sigmoid_backward,
    .upsample2x_forward = cuda_upsample2x_forward,
    .upsample2x_backward = cuda_upsample2x_backward,
    .pad2d_forward = cuda_pad2d_forward,
    .pad2d_backward = cuda_pad2d_backward,
    .attention_workspace_bytes = cuda_attention_workspace_bytes,
    .attention_forward = cuda_attention_forward,
    .attention_backward = cuda_attention_backward,
    .linear_forward = cuda_linear_forward,
    .linear_backward = cuda_linear_backward,
    .dropout_forward = cuda_dropout_forward,
    .dropout_backward = cuda_dropout_backward,
    .reparam_forward = cuda_reparam_forward,
    .reparam_backward = cuda_reparam_backward,
    .kl_forward = cuda_kl_forward,
    .kl_backward = cuda_kl_backward,
    .memory_in_use = cuda_memory_in_use,
};

// ---- context ---------------------------------------------------------------------------------

extern "C" void cuda_context_init(OpsContext *ctx, int device_index, Precision precision, int deterministic) {
    int count = cuda_device_count();
    if (device_index < 0 || device_index >= count) {
        const char *visible = getenv("CUDA_VISIBLE_DEVICES");
        fatal("GPU %d asked for, but %d GPU(s) are visible (CUDA_VISIBLE_DEVICES=%s); "
              "use one rank per GPU or set train.device=cpu", device_index, count, visible ? visible : "unset");
    }
    CUDA_CHECK(cudaSetDevice(device_index));

    CudaContextState *st = (CudaContextState *)xcalloc(1, sizeof *st);
    CudaBackend *b = &st->base;
    // The baseline of memory_in_use. cudaMemGetInfo creates the primary context first if needed,
    // so the context's own memory is in the baseline and our handles and buffers are not.
    size_t free_bytes = 0, total_bytes = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    st->used_at_init = total_bytes - free_bytes;
    CUDA_CHECK(cudaGetDeviceProperties(&b->props, device_index));
    b->deterministic = deterministic;
    b->conv_precision = precision;   // bf16: cuda_conv.cu stages operands in bf16 (docs/CUDA.md)

    CUDA_CHECK(cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking));
    ctx->backend = b;   // cuda_alloc needs the stream and the table from here on

    CUBLAS_CHECK(cublasCreate(&b->cublas));
    CUBLAS_CHECK(cublasSetStream(b->cublas, b->stream));   // resets the workspace: set it after
    b->cublas_workspace_bytes = CUBLAS_WORKSPACE_BYTES;
    b->cublas_workspace = cuda_alloc(ctx, b->cublas_workspace_bytes);
    CUBLAS_CHECK(cublasSetWorkspace(b->cublas, b->cublas_workspace, b->cublas_workspace_bytes));
    // TF32 for any cuBLAS call that allows it, unless fp32 was asked for. The quantizer's GEMM
    // asks for CUBLAS_COMPUTE_32F_PEDANTIC itself, so it stays fp32 whatever this says.
    CUBLAS_CHECK(cublasSetMathMode(b->cublas, b->conv_precision == PRECISION_FP32 ? CUBLAS_DEFAULT_MATH
                                                                                    : CUBLAS_TF32_TENSOR_OP_MATH));

    CUDNN_CHECK(cudnnCreate(&b->cudnn));
    CUDNN_CHECK(cudnnSetStream(b->cudnn, b->stream));

    b->partials = (double *)cuda_alloc(ctx, CUDA_REDUCE_BLOCKS * sizeof(double));

    ctx->ops = &cuda_ops;
    ctx->kind = BACKEND_CUDA;
    ctx->precision = precision;
    ctx->deterministic = deterministic;
    ctx->device_index = device_index;
    ctx->workspace = NULL;
    ctx->workspace_bytes = 0;
}

extern "C" void cuda_context_destroy(OpsContext *ctx) {
    CudaBackend *b = cuda_backend(ctx);
    if (!b) return;
    CudaContextState *st = context_state(ctx);
    CUDA_CHECK(cudaStreamSynchronize(b->stream));
    cuda_release(ctx, ctx->workspace);
    ctx->workspace = NULL;
    ctx->workspace_bytes = 0;
    cuda_conv_destroy_plans(b);
    cuda_release(ctx, b->partials);
    CUDNN_CHECK(cudnnDestroy(b->cudnn));
    CUBLAS_CHECK(cublasDestroy(b->cublas));
    cuda_release(ctx, b->cublas_workspace);
    // Buffers their owners did not release die with the context.
    while (st->allocation_count > 0) cuda_release(ctx, st->allocations[st->allocation_count - 1].ptr);
    CUDA_CHECK(cudaStreamDestroy(b->stream));
    free(st->allocations);
    free(st);
    ctx->backend = NULL;
}

// The GPU's name (read at init) and the versions of the libraries this process runs with.
extern "C" void cuda_context_describe(const OpsContext *ctx, OpsDescription *out) {
    const CudaBackend *b = (const CudaBackend *)ctx->backend;
    CHECK(b, "cuda_context_describe called on a context that is not a live CUDA context");
    copy_string(out->device, sizeof out->device, b->props.name);
    CUDA_CHECK(cudaRuntimeGetVersion(&out->cuda_runtime));
    CUDA_CHECK(cudaDriverGetVersion(&out->cuda_driver));
    out->cudnn = cudnnGetVersion();
}

// Device memory this process added since the context was created: cudaMemGetInfo's used bytes
// minus the baseline taken then, so cuDNN's and cuBLAS's internal allocations count along with
// ours. cudaMemGetInfo sees the whole GPU: other processes on the same GPU count too.
size_t cuda_memory_in_use(OpsContext *ctx) {
    size_t free_bytes = 0, total_bytes = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    size_t used = total_bytes - free_bytes, baseline = context_state(ctx)->used_at_init;
    return used > baseline ? used - baseline : 0;
}
