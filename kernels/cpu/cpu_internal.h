// cpu_internal.h: the CPU backend's functions, one group per file; cpu_context.c gathers them
// into the cpu_ops table.
#pragma once
#include "../ops.h"

// ctx->backend of a CPU context.
typedef struct {
    struct OnednnState *onednn;   // oneDNN's engine, stream and convolution plans (cpu_conv_onednn.c), or NULL
} CpuBackend;

// Every parallel region of the backend has exactly ctx->threads threads, however short its loop:
// libgomp reuses a team only for the same thread count, and allocates a new one otherwise (a
// malloc and a free inside the step, test_step_allocations); a region costs ~1-2 microseconds.

// cpu_context.c: memory, workspace, threads
void *cpu_alloc(OpsContext *ctx, size_t bytes);
void cpu_release(OpsContext *ctx, void *ptr);
void cpu_to_device(OpsContext *ctx, void *dst, const void *src_host, size_t bytes);
void cpu_to_host(OpsContext *ctx, void *dst_host, const void *src, size_t bytes);
void cpu_copy(OpsContext *ctx, void *dst, const void *src, size_t bytes);
void cpu_synchronize(OpsContext *ctx);
void cpu_reserve_workspace(OpsContext *ctx, size_t bytes);

// cpu_conv.c: the driver of the two engines (oneDNN, im2col + OpenBLAS), see cpu_conv_internal.h
size_t cpu_conv_prepare(OpsContext *ctx, ConvShape *s);
void cpu_conv_forward(OpsContext *ctx, const ConvShape *s, const float *in, const float *weight, const float *bias,
                      float *out);
void cpu_conv_backward(OpsContext *ctx, const ConvShape *s, const float *in, const float *weight, const float *dout,
                       float *din, float *dweight, float *dbias);

// cpu_elementwise.c
void cpu_relu_forward(OpsContext *ctx, const float *x, float *y, size_t n);
void cpu_relu_backward(OpsContext *ctx, const float *y, const float *dy, float *dx, size_t n);
void cpu_add(OpsContext *ctx, const float *a, const float *b, float *out, size_t n);
void cpu_scale(OpsContext *ctx, float *x, float alpha, size_t n);
void cpu_fill(OpsContext *ctx, float *x, float value, size_t n);
void cpu_nchw_to_nhwc(OpsContext *ctx, const float *in, float *out, int n, int c, int hw);
void cpu_nhwc_to_nchw(OpsContext *ctx, const float *in, float *out, int n, int c, int hw);
void cpu_mse_forward(OpsContext *ctx, const float *pred, const float *target, size_t n, float *out);
void cpu_mse_backward(OpsContext *ctx, const float *pred, const float *target, size_t n, float scale, int accumulate,
                      float *dpred);
void cpu_sum_squares(OpsContext *ctx, const float *x, size_t n, float *out);

// cpu_quantizer.c
size_t cpu_vq_workspace_bytes(OpsContext *ctx, int m, int k, int d);
void cpu_vq_nearest(OpsContext *ctx, const float *z, const float *codebook, int m, int k, int d, int32_t *codes);
void cpu_vq_gather(OpsContext *ctx, const float *codebook, const int32_t *codes, int m, int d, float *out);
void cpu_vq_code_stats(OpsContext *ctx, const float *z, const int32_t *codes, int m, int k, int d, float *counts,
                       float *sums);
void cpu_vq_codebook_grad(OpsContext *ctx, const float *codebook, const float *counts, const float *sums, int k, int d,
                          float scale, float *dcodebook);
void cpu_ema_update(OpsContext *ctx, float *cluster_size, float *ema_w, float *codebook, const float *counts,
                    const float *sums, int k, int d, float decay, float epsilon, const StepState *state);

// cpu_codebook.c
void cpu_vq_restart_pick(OpsContext *ctx, const float *cluster_size, float threshold, const float *z, int m, int k,
                         int d, int64_t first_latent, int64_t global_m, uint64_t seed, float *out,
                         const StepState *state);
void cpu_vq_restart_apply(OpsContext *ctx, float *cluster_size, float *ema_w, float *codebook, const float *picked,
                          int k, int d, float threshold, StepState *state);

// cpu_adam.c (with the step bookkeeping)
void cpu_adam_update(OpsContext *ctx, float *params, const float *grads, float *exp_avg, float *exp_avg_sq, size_t n,
                     const StepState *state);
void cpu_flag_nonfinite(OpsContext *ctx, const float *values, int n, float *flag);
void cpu_step_commit(OpsContext *ctx, StepState *state, const float *grad_sumsq, const AdamHyper *hyper);

// cpu_data.c
void cpu_gather_images(OpsContext *ctx, const uint8_t *pixels, const int32_t *perm, int64_t offset, int n,
                       size_t image_elems, PixelRange range, float *out);

// cpu_norm.c
void cpu_group_norm_forward(OpsContext *ctx, const float *x, const float *gamma, const float *beta, int n, int c,
                            int hw, int groups, float eps, float *y, float *mean, float *rstd);
void cpu_group_norm_backward(OpsContext *ctx, const float *x, const float *gamma, const float *mean,
                             const float *rstd, const float *dy, int n, int c, int hw, int groups, float *dx,
                             float *dgamma, float *dbeta);

// cpu_activation.c
void cpu_silu_forward(OpsContext *ctx, const float *x, float *y, size_t n);
void cpu_silu_backward(OpsContext *ctx, const float *x, const float *dy, float *dx, size_t n);
void cpu_sigmoid_forward(OpsContext *ctx, const float *x, float *y, size_t n);
void cpu_sigmoid_backward(OpsContext *ctx, const float *y, const float *dy, float *dx, size_t n);

// cpu_resample.c
void cpu_upsample2x_forward(OpsContext *ctx, const float *x, int n, int c, int h, int w, float *y);
void cpu_upsample2x_backward(OpsContext *ctx, const float *dy, int n, int c, int h, int w, float *dx);
void cpu_pad2d_forward(OpsContext *ctx, const float *x, int n, int c, int h, int w, int top, int bottom, int left,
                       int right, float *y);
void cpu_pad2d_backward(OpsContext *ctx, const float *dy, int n, int c, int h, int w, int top, int bottom,
                        int left, int right, float *dx);

// cpu_attention.c
size_t cpu_attention_workspace_bytes(OpsContext *ctx, int n, int c, int hw);
void cpu_attention_forward(OpsContext *ctx, const float *q, const float *k, const float *v, int n, int c, int hw,
                           float scale, float *probs, float *out);
void cpu_attention_backward(OpsContext *ctx, const float *q, const float *k, const float *v, const float *probs,
                            const float *dout, int n, int c, int hw, float scale, float *dq, float *dk, float *dv);

// cpu_linear.c
void cpu_linear_forward(OpsContext *ctx, const float *x, const float *w, const float *b, int n, int in, int out,
                        float *y);
void cpu_linear_backward(OpsContext *ctx, const float *x, const float *w, const float *dy, int n, int in, int out,
                         float *dx, float *dw, float *db);

// cpu_random.c (dropout, reparameterization, KL)
void cpu_dropout_forward(OpsContext *ctx, const float *x, float *y, int n, size_t per_sample, int64_t first_sample,
                         float p, uint64_t seed, uint32_t layer, const int32_t *step);
void cpu_dropout_backward(OpsContext *ctx, const float *dy, float *dx, int n, size_t per_sample,
                          int64_t first_sample, float p, uint64_t seed, uint32_t layer, const int32_t *step);
void cpu_reparam_forward(OpsContext *ctx, const float *mean, const float *logvar, int n, int dim,
                         int64_t first_sample, uint64_t seed, uint32_t layer, const int32_t *step, float *z,
                         float *eps);
void cpu_reparam_backward(OpsContext *ctx, const float *logvar, const float *eps, const float *dz, int n, int dim,
                          float *dmean, float *dlogvar);
void cpu_kl_forward(OpsContext *ctx, const float *mean, const float *logvar, size_t count, float *out);
void cpu_kl_backward(OpsContext *ctx, const float *mean, const float *logvar, size_t count, float scale,
                     float *dmean, float *dlogvar);

// cpu_context.c
size_t cpu_memory_in_use(OpsContext *ctx);
