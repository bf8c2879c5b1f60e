// cuda_common.h: shared by the CUDA backend's .cu files (C++ only). The backend state that lives
// in ctx->backend, launch helpers, deterministic reduction helpers, and the functions each file
// contributes to the cuda_ops table (cuda_context.cu gathers them); the check macros come from
// cuda_check.h (shared with src/dist).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#if CUDNN_MAJOR < 9
#error "cuDNN 9 or newer is needed (CUDNN_CHECK uses cudnnGetLastErrorString); install cuDNN 9 or configure with -DVQ_CUDA=OFF"
#endif
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "../../src/core/common.h"
#include "../ops.h"
}
#include "cuda_api.h"
#include "cuda_check.h"

// ---- launch configuration --------------------------------------------------------------------
enum {
    CUDA_BLOCK = 256,            // threads per block of the elementwise and reduction kernels
    CUDA_MAX_GRID = 1 << 16,     // grid-stride loops cover the rest
    CUDA_REDUCE_BLOCKS = 1024,   // fixed first-pass block count of the two-pass reductions
};

static inline unsigned int cuda_grid(size_t n, int block) {
    size_t g = (n + (size_t)block - 1) / (size_t)block;
    if (g > CUDA_MAX_GRID) g = CUDA_MAX_GRID;
    if (g == 0) g = 1;   // a zero-block launch is an error; the kernels' loops handle n = 0
    return (unsigned int)g;
}

// Every index i < n, over a grid of any size (cuda_grid caps it).
#define GRID_STRIDE_LOOP(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

// ---- backend state ---------------------------------------------------------------------------
// One cuDNN plan per distinct ConvShape. The cuDNN convolution is described in its own terms:
// x (its input), w (filter [K, C, k, k]) and y (its output). For Conv2d, x = layer input and
// y = layer output. For ConvTranspose2d, the layer is the adjoint of a Conv2d, so x = layer
// output and y = layer input (see cuda_conv.cu).
typedef struct {
    ConvShape shape;                              // plan field ignored; used to share plans
    cudnnTensorDescriptor_t x_desc, y_desc;
    cudnnFilterDescriptor_t w_desc;
    // One convolution descriptor per direction, because each carries the math type of the
    // algorithm chosen for that direction.
    cudnnConvolutionDescriptor_t fwd_conv, bwd_data_conv, bwd_filter_conv;
    cudnnConvolutionFwdAlgo_t fwd_algo;
    cudnnConvolutionBwdDataAlgo_t bwd_data_algo;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter_algo;
    size_t fwd_workspace, bwd_data_workspace, bwd_filter_workspace;
    size_t workspace_bytes;                       // max over the three directions
} ConvPlan;

typedef struct {
    cudaStream_t stream;          // non-blocking; every op of the context runs on it
    cublasHandle_t cublas;        // bound to stream, with its own workspace (graph capture safe)
    void *cublas_workspace;
    size_t cublas_workspace_bytes;
    cudnnHandle_t cudnn;          // bound to stream
    cudaDeviceProp props;
    Precision conv_precision;     // the requested precision; cuda_conv.cu follows ctx->precision and may run
                                  // single layers of a bf16 context in tf32 (with a warning)
    int deterministic;
    ConvPlan *plans;
    int plan_count, plan_capacity;
    double *partials;             // CUDA_REDUCE_BLOCKS doubles: first pass of the reductions
} CudaBackend;

static inline CudaBackend *cuda_backend(OpsContext *ctx) { return (CudaBackend *)ctx->backend; }
static inline cudaStream_t cuda_stream(OpsContext *ctx) { return cuda_backend(ctx)->stream; }

// ---- deterministic reductions (device) -------------------------------------------------------
// The xor butterfly leaves the same bits in every lane (each step adds the same two values in
// either order), and the order never depends on timing, so results are run-to-run identical.
template <typename T>
static __device__ __forceinline__ T warp_reduce_sum(T v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); the result is in every thread.
// May be called several times in one kernel: the leading barrier protects warp_sums.
template <typename T>
static __device__ __forceinline__ T block_reduce_sum(T v) {
    __shared__ T warp_sums[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = warp_reduce_sum(v);
    __syncthreads();
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    v = lane < warps ? warp_sums[lane] : (T)0;
    return warp_reduce_sum(v);
}

// ---- the ops of each file --------------------------------------------------------------------
// cuda_context.cu: memory and workspace
void *cuda_alloc(OpsContext *ctx, size_t bytes);
void cuda_release(OpsContext *ctx, void *ptr);
void cuda_to_device(OpsContext *ctx, void *dst, const void *src_host, size_t bytes);
void cuda_to_host(OpsContext *ctx, void *dst_host, const void *src, size_t bytes);
void cuda_copy(OpsContext *ctx, void *dst, const void *src, size_t bytes);
void cuda_synchronize(OpsContext *ctx);
void cuda_reserve_workspace(OpsContext *ctx, size_t bytes);

// cuda_conv.cu: cuDNN convolutions
size_t cuda_conv_prepare(OpsContext *ctx, ConvShape *s);
void cuda_conv_forward(OpsContext *ctx, const ConvShape *s, const float *in, const float *weight,
                       const float *bias, float *out);
void cuda_conv_backward(OpsContext *ctx, const ConvShape *s, const float *in, const float *weight,
                        const float *dout, float *din, float *dweight, float *dbias);
void cuda_conv_destroy_plans(CudaBackend *b);

// cuda_elementwise.cu
void cuda_relu_forward(OpsContext *ctx, const float *x, float *y, size_t n);
void cuda_relu_backward(OpsContext *ctx, const float *y, const float *dy, float *dx, size_t n);
void cuda_add(OpsContext *ctx, const float *a, const float *b, float *out, size_t n);
void cuda_scale(OpsContext *ctx, float *x, float alpha, size_t n);
void cuda_fill(OpsContext *ctx, float *x, float value, size_t n);
void cuda_nchw_to_nhwc(OpsContext *ctx, const float *in, float *out, int n, int c, int hw);
void cuda_nhwc_to_nchw(OpsContext *ctx, const float *in, float *out, int n, int c, int hw);
void cuda_mse_forward(OpsContext *ctx, const float *pred, const float *target, size_t n, float *out);
void cuda_mse_backward(OpsContext *ctx, const float *pred, const float *target, size_t n, float scale,
                       int accumulate, float *dpred);
void cuda_sum_squares(OpsContext *ctx, const float *x, size_t n, float *out);

// cuda_quantizer.cu
size_t cuda_vq_workspace_bytes(OpsContext *ctx, int m, int k, int d);
void cuda_vq_nearest(OpsContext *ctx, const float *z, const float *codebook, int m, int k, int d,
                     int32_t *codes);
void cuda_vq_gather(OpsContext *ctx, const float *codebook, const int32_t *codes, int m, int d, float *out);
void cuda_vq_code_stats(OpsContext *ctx, const float *z, const int32_t *codes, int m, int k, int d,
                        float *counts, float *sums);
void cuda_vq_codebook_grad(OpsContext *ctx, const float *codebook, const float *counts, const float *sums,
                           int k, int d, float scale, float *dcodebook);
void cuda_ema_update(OpsContext *ctx, float *cluster_size, float *ema_w, float *codebook, const float *counts,
                     const float *sums, int k, int d, float decay, float epsilon, const StepState *state);

// cuda_codebook.cu
void cuda_vq_restart_pick(OpsContext *ctx, const float *cluster_size, float threshold, const float *z, int m, int k,
                          int d, int64_t first_latent, int64_t global_m, uint64_t seed, float *out,
                          const StepState *state);
void cuda_vq_restart_apply(OpsContext *ctx, float *cluster_size, float *ema_w, float *codebook, const float *picked,
                           int k, int d, float threshold, StepState *state);

// cuda_adam.cu (with the step bookkeeping)
void cuda_adam_update(OpsContext *ctx, float *params, const float *grads, float *exp_avg, float *exp_avg_sq,
                      size_t n, const StepState *state);
void cuda_flag_nonfinite(OpsContext *ctx, const float *values, int n, float *flag);
void cuda_step_commit(OpsContext *ctx, StepState *state, const float *grad_sumsq, const AdamHyper *hyper);

// cuda_graph.cu
void cuda_graph_begin(OpsContext *ctx);
void cuda_graph_end(OpsContext *ctx);
void cuda_graph_launch(OpsContext *ctx);
void cuda_graph_destroy(OpsContext *ctx);

// cuda_data.cu
void cuda_gather_images(OpsContext *ctx, const uint8_t *pixels, const int32_t *perm, int64_t offset, int n,
                        size_t image_elems, PixelRange range, float *out);

// cuda_norm.cu
void cuda_group_norm_forward(OpsContext *ctx, const float *x, const float *gamma, const float *beta, int n, int c,
                             int hw, int groups, float eps, float *y, float *mean, float *rstd);
void cuda_group_norm_backward(OpsContext *ctx, const float *x, const float *gamma, const float *mean,
                              const float *rstd, const float *dy, int n, int c, int hw, int groups, float *dx,
                              float *dgamma, float *dbeta);

// cuda_activation.cu
void cuda_silu_forward(OpsContext *ctx, const float *x, float *y, size_t n);
void cuda_silu_backward(OpsContext *ctx, const float *x, const float *dy, float *dx, size_t n);
void cuda_sigmoid_forward(OpsContext *ctx, const float *x, float *y, size_t n);
void cuda_sigmoid_backward(OpsContext *ctx, const float *y, const float *dy, float *dx, size_t n);

// cuda_resample.cu
void cuda_upsample2x_forward(OpsContext *ctx, const float *x, int n, int c, int h, int w, float *y);
void cuda_upsample2x_backward(OpsContext *ctx, const float *dy, int n, int c, int h, int w, float *dx);
void cuda_pad2d_forward(OpsContext *ctx, const float *x, int n, int c, int h, int w, int top, int bottom, int left,
                        int right, float *y);
void cuda_pad2d_backward(OpsContext *ctx, const float *dy, int n, int c, int h, int w, int top, int bottom,
                         int left, int right, float *dx);

// cuda_attention.cu
size_t cuda_attention_workspace_bytes(OpsContext *ctx, int n, int c, int hw);
void cuda_attention_forward(OpsContext *ctx, const float *q, const float *k, const float *v, int n, int c, int hw,
                            float scale, float *probs, float *out);
void cuda_attention_backward(OpsContext *ctx, const float *q, const float *k, const float *v, const float *probs,
                             const float *dout, int n, int c, int hw, float scale, float *dq, float *dk, float *dv);

// cuda_linear.cu
void cuda_linear_forward(OpsContext *ctx, const float *x, const float *w, const float *b, int n, int in, int out,
                         float *y);
void cuda_linear_backward(OpsContext *ctx, const float *x, const float *w, const float *dy, int n, int in, int out,
                          float *dx, float *dw, float *db);

// cuda_random.cu (dropout, reparameterization, KL)
void cuda_dropout_forward(OpsContext *ctx, const float *x, float *y, int n, size_t per_sample, int64_t first_sample,
                          float p, uint64_t seed, uint32_t layer, const int32_t *step);
void cuda_dropout_backward(OpsContext *ctx, const float *dy, float *dx, int n, size_t per_sample,
                           int64_t first_sample, float p, uint64_t seed, uint32_t layer, const int32_t *step);
void cuda_reparam_forward(OpsContext *ctx, const float *mean, const float *logvar, int n, int dim,
                          int64_t first_sample, uint64_t seed, uint32_t layer, const int32_t *step, float *z,
                          float *eps);
void cuda_reparam_backward(OpsContext *ctx, const float *logvar, const float *eps, const float *dz, int n, int dim,
                           float *dmean, float *dlogvar);
void cuda_kl_forward(OpsContext *ctx, const float *mean, const float *logvar, size_t count, float *out);
void cuda_kl_backward(OpsContext *ctx, const float *mean, const float *logvar, size_t count, float scale,
                      float *dmean, float *dlogvar);

// cuda_context.cu
size_t cuda_memory_in_use(OpsContext *ctx);

extern "C" const Ops cuda_ops;
