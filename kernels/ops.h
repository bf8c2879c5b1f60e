// ops.h: the one compute interface. The model calls only these; kernels/cpu and kernels/cuda
// implement them. Every pointer argument is device memory of the context's backend (plain host
// memory on the CPU backend). Tensors are float32, NCHW, contiguous, like PyTorch.
//
// Conventions:
// - Outputs are overwritten, never accumulated, unless an argument says `accumulate`.
// - Scalar results (losses, norms) are written to a device float so the step needs no host sync;
//   the trainer downloads them at log intervals.
// - Nothing here allocates after start-up: scratch memory is the context's workspace, sized once
//   with ops_reserve_workspace() from the *_workspace_bytes queries.
// - Every op is deterministic on the CPU backend (fixed summation order), so CPU runs are
//   bit-reproducible. The CUDA backend is deterministic when ctx->deterministic is set.
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "../src/core/philox.h"   // VQ_HOST_DEVICE; the counter layout of the random ops

typedef enum { BACKEND_CPU = 0, BACKEND_CUDA = 1 } BackendKind;

// Precision of the convolutions on the CUDA backend (the quantizer is always fp32).
typedef enum { PRECISION_FP32 = 0, PRECISION_TF32 = 1, PRECISION_BF16 = 2 } Precision;

// A 2-D convolution (transposed = 0; PyTorch Conv2d, weight [out, in, k, k]) or a transposed
// convolution (transposed = 1; PyTorch ConvTranspose2d, weight [in, out, k, k]). Square kernels,
// equal stride and padding on both axes, dilation 1, groups 1. output_padding is
// ConvTranspose2d's: extra output rows and columns at the bottom and right (0 <= it < stride),
// which only the bias reaches where no kernel tap does; it makes a stride-2 layer undo a Conv2d
// whose input size was even (7 -> 14 with k3 s2 p1 op1).
typedef struct {
    int batch, in_channels, in_height, in_width;
    int out_channels, out_height, out_width;
    int kernel, stride, pad;
    int output_padding;   // ConvTranspose2d only; set with conv_shape_set_output_padding
    int transposed;
    int has_bias;
    int plan;   // backend's plan slot, set by conv_prepare (cuDNN plans, oneDNN primitives); -1 for none
} ConvShape;

// Fill the derived output size: Conv2d: out = (in + 2 pad - k) / stride + 1;
// ConvTranspose2d: out = (in - 1) stride - 2 pad + k (+ output_padding, which this leaves 0).
ConvShape conv_shape(int batch, int in_channels, int in_height, int in_width, int out_channels,
                     int kernel, int stride, int pad, int transposed, int has_bias);
// Give a ConvTranspose2d shape an output_padding (0 <= output_padding < stride) and recompute its
// output size; fatal for a Conv2d or an output_padding out of range, as PyTorch refuses them.
void conv_shape_set_output_padding(ConvShape *s, int output_padding);
size_t conv_weight_count(const ConvShape *s);   // out*in*k*k
size_t conv_in_count(const ConvShape *s);       // batch*in*h*w
size_t conv_out_count(const ConvShape *s);      // batch*out*ho*wo

typedef struct OpsContext OpsContext;

// How gather_images maps a byte to a pixel value (data.range; the io layer's DataRange has the
// same values).
typedef enum { PIXELS_CENTERED = 0, PIXELS_UNIT = 1, PIXELS_SYMMETRIC = 2 } PixelRange;

// The CPU backend's convolution engine (train.cpu_conv): oneDNN primitives, or im2col + OpenBLAS
// sgemm (the reference the tests compare oneDNN with). Both are bit-reproducible for any thread
// count (kernels/cpu/cpu_conv_internal.h).
typedef enum { CPU_CONV_ONEDNN = 0, CPU_CONV_IM2COL = 1 } CpuConv;

// "onednn" | "im2col" | "auto" (onednn when the build has it, else im2col); fatal otherwise, and
// for onednn in a build without oneDNN.
CpuConv cpu_conv_from_name(const char *name);
const char *cpu_conv_name(CpuConv conv);
int onednn_compiled(void);   // 1 when the build has oneDNN (libdnnl-dev at configure time)
// 1 when oneDNN has native bf16 convolutions on this CPU (AVX512-BF16): train.precision=bf16 there.
int onednn_bf16_supported(void);
const char *onednn_isa_name(void);   // the instruction set oneDNN uses here ("avx2", ...; "none")

// Adam's hyperparameters as the config holds them (double, like Python's floats).
typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
} AdamHyper;

// Adam's per-step float scalars, formed in double and rounded to float once, as Python forms
// them before ATen casts them to the tensor's dtype (see adam_scalars).
typedef struct {
    float neg_step_size;          // -lr / (1 - beta1^t)
    float bias_correction2_sqrt;  // sqrt(1 - beta2^t)
    float beta1, beta2;           // (float)beta, as ATen multiplies by them
    float one_minus_beta1, one_minus_beta2;
    float eps, weight_decay;
} AdamScalars;

// One formula for the host (CPU step_commit) and the device (CUDA step_commit), so both backends
// form the same scalars. step is the 1-based optimizer step after increment.
static inline VQ_HOST_DEVICE AdamScalars adam_scalars(const AdamHyper *hyper, long step) {
    double bias_correction1 = 1.0 - pow(hyper->beta1, (double)step);
    double bias_correction2 = 1.0 - pow(hyper->beta2, (double)step);
    AdamScalars s;
    s.neg_step_size = (float)(-(hyper->lr / bias_correction1));
    s.bias_correction2_sqrt = (float)sqrt(bias_correction2);
    s.beta1 = (float)hyper->beta1;
    s.beta2 = (float)hyper->beta2;
    s.one_minus_beta1 = (float)(1.0 - hyper->beta1);
    s.one_minus_beta2 = (float)(1.0 - hyper->beta2);
    s.eps = (float)hyper->eps;
    s.weight_decay = (float)hyper->weight_decay;
    return s;
}

// The training step's counters and verdict, in device memory (host memory on the CPU backend),
// updated by step_commit so that the step needs no host decision; the trainer downloads it at
// log intervals and for checkpoints.
typedef struct {
    int32_t steps;          // steps done, skipped ones included
    int32_t adam_steps;     // optimizer steps taken
    int32_t skipped;        // steps skipped because the loss or gradient was not finite on some rank
    int32_t last_skipped;   // the `steps` value of the last skipped step, 0 = none
    int32_t finite;         // the current step's verdict: 1 = update, 0 = skip
    int32_t restarts;       // dead codes restarted so far (vq_restart_apply)
    int32_t reserved[2];
    AdamScalars adam;       // the current step's Adam scalars (when finite)
} StepState;

typedef struct Ops {
    const char *name;

    // ---- memory ---------------------------------------------------------------------------
    void *(*alloc)(OpsContext *ctx, size_t bytes);        // zero-filled; fatal on failure
    void (*release)(OpsContext *ctx, void *ptr);
    void (*to_device)(OpsContext *ctx, void *dst, const void *src_host, size_t bytes);
    void (*to_host)(OpsContext *ctx, void *dst_host, const void *src, size_t bytes);  // synchronizes
    void (*copy)(OpsContext *ctx, void *dst, const void *src, size_t bytes);          // device to device
    void (*synchronize)(OpsContext *ctx);
    // Make sure the workspace holds at least `bytes` (start-up only).
    void (*reserve_workspace)(OpsContext *ctx, size_t bytes);

    // ---- convolution ----------------------------------------------------------------------
    // Choose algorithms for this shape (once, at start-up); sets s->plan. Returns the workspace
    // bytes that conv_forward / conv_backward need for it.
    size_t (*conv_prepare)(OpsContext *ctx, ConvShape *s);
    // out = conv(in, weight) + bias (bias NULL when !has_bias).
    void (*conv_forward)(OpsContext *ctx, const ConvShape *s, const float *in, const float *weight,
                         const float *bias, float *out);
    // Gradients of conv_forward. din may be NULL (first layer); dbias NULL when !has_bias.
    // din, dweight and dbias are overwritten.
    void (*conv_backward)(OpsContext *ctx, const ConvShape *s, const float *in, const float *weight,
                          const float *dout, float *din, float *dweight, float *dbias);

    // ---- elementwise ----------------------------------------------------------------------
    void (*relu_forward)(OpsContext *ctx, const float *x, float *y, size_t n);          // y may alias x
    // dx = y > 0 ? dy : 0, where y is the ReLU's output (or its input: same sign test). dx may alias dy.
    void (*relu_backward)(OpsContext *ctx, const float *y, const float *dy, float *dx, size_t n);
    void (*add)(OpsContext *ctx, const float *a, const float *b, float *out, size_t n); // out may alias a or b
    void (*scale)(OpsContext *ctx, float *x, float alpha, size_t n);
    void (*fill)(OpsContext *ctx, float *x, float value, size_t n);
    // [n, c, hw] <-> [n, hw, c] (channels-last, the quantizer's flat [n*hw, c] view)
    void (*nchw_to_nhwc)(OpsContext *ctx, const float *in, float *out, int n, int c, int hw);
    void (*nhwc_to_nchw)(OpsContext *ctx, const float *in, float *out, int n, int c, int hw);

    // ---- loss -----------------------------------------------------------------------------
    // *out = mean((pred - target)^2) over n elements.
    void (*mse_forward)(OpsContext *ctx, const float *pred, const float *target, size_t n, float *out);
    // dpred (=|+=) scale * 2 (pred - target) / n.
    void (*mse_backward)(OpsContext *ctx, const float *pred, const float *target, size_t n, float scale,
                         int accumulate, float *dpred);

    // ---- vector quantizer (z is [m, d] channels-last, codebook [k, d]) ---------------------
    size_t (*vq_workspace_bytes)(OpsContext *ctx, int m, int k, int d);
    // codes[i] = argmin_j ||z_i - e_j||^2, computed as |z|^2 + |e|^2 - 2 z.e (the PyTorch
    // notebook's formula); ties go to the lowest index, as torch.argmin.
    void (*vq_nearest)(OpsContext *ctx, const float *z, const float *codebook, int m, int k, int d,
                       int32_t *codes);
    // out[i] = codebook[codes[i]]
    void (*vq_gather)(OpsContext *ctx, const float *codebook, const int32_t *codes, int m, int d, float *out);
    // counts[j] = #{i : codes[i] = j}; sums[j] = sum of z_i with codes[i] = j (sums may be NULL).
    // Deterministic: fixed summation order on every backend.
    void (*vq_code_stats)(OpsContext *ctx, const float *z, const int32_t *codes, int m, int k, int d,
                          float *counts, float *sums);
    // Gradient of mean((e_codes - sg(z))^2) w.r.t. the codebook given the stats:
    // dcodebook[j] = scale * (counts[j] * e_j - sums[j]) with scale = 2 / (m d) (times any loss weight).
    void (*vq_codebook_grad)(OpsContext *ctx, const float *codebook, const float *counts, const float *sums,
                             int k, int d, float scale, float *dcodebook);
    // The EMA codebook update of the PyTorch notebook (VectorQuantizerEMA), with global stats:
    //   N_j <- decay N_j + (1 - decay) counts_j
    //   n = sum_j N_j;  N_j <- (N_j + eps) / (n + k eps) * n        (Laplace smoothing, stored)
    //   m_j <- decay m_j + (1 - decay) sums_j
    //   e_j <- m_j / N_j
    // A no-op when state is given and state->finite is 0 (a skipped step); state NULL: always.
    void (*ema_update)(OpsContext *ctx, float *cluster_size, float *ema_w, float *codebook, const float *counts,
                       const float *sums, int k, int d, float decay, float epsilon, const StepState *state);

    // ---- dead-code restart (after ema_update; state is required; a no-op on a skipped step) --
    // For each code j whose cluster_size[j] < threshold, one latent of the GLOBAL batch is drawn:
    // id = rng_below(rng_stream(seed, RNG_PURPOSE_RESTART, state->steps, j), global_m) (src/core/
    // rng.h), a pure function of (seed, step, code), so every rank and every world size draws the
    // same. When this rank holds it (first_latent <= id < first_latent + m), out[j (d + 1) ..]
    // gets z[id - first_latent] and a 1 after it (the mark); everything else in out[k (d + 1)] is
    // 0. A SUM all-reduce of out then gives every rank the replacements.
    void (*vq_restart_pick)(OpsContext *ctx, const float *cluster_size, float threshold, const float *z, int m,
                            int k, int d, int64_t first_latent, int64_t global_m, uint64_t seed,
                            float *out, const StepState *state);
    // Where out[j (d + 1) + d] is set: codebook[j] = the vector, cluster_size[j] = threshold and
    // ema_w[j] = threshold x the vector (so the EMA goes on from the new centre), and
    // state->restarts += 1.
    void (*vq_restart_apply)(OpsContext *ctx, float *cluster_size, float *ema_w, float *codebook, const float *picked,
                             int k, int d, float threshold, StepState *state);

    // ---- optimizer and reductions ---------------------------------------------------------
    // torch.optim.Adam (amsgrad off) over a flat buffer, with the step's scalars from
    // state->adam; a no-op when state->finite is 0. weight_decay is Adam's L2 term
    // (grad += wd * param), as PyTorch.
    void (*adam_update)(OpsContext *ctx, float *params, const float *grads, float *exp_avg, float *exp_avg_sq,
                        size_t n, const StepState *state);
    // *out = sum(x^2) (inf/NaN propagate, which the trainer uses as its "not finite" test).
    void (*sum_squares)(OpsContext *ctx, const float *x, size_t n, float *out);

    // ---- step bookkeeping on the device (no host decision inside a step) -------------------
    // *flag = 0 if values[0..n) are all finite, else NaN. The trainer puts the flag of its local
    // losses in the slot after the gradients, so the gradient all-reduce also carries "some rank's
    // loss is not finite" and every rank reaches the same verdict without another collective.
    void (*flag_nonfinite)(OpsContext *ctx, const float *values, int n, float *flag);
    // One thread's work after the all-reduce: steps += 1; finite = isfinite(*grad_sumsq); if finite,
    // adam_steps += 1 and state->adam = adam_scalars(hyper, adam_steps); else skipped += 1 and
    // last_skipped = steps.
    void (*step_commit)(OpsContext *ctx, StepState *state, const float *grad_sumsq, const AdamHyper *hyper);

    // ---- data -----------------------------------------------------------------------------
    // The dataset lives on the device as uint8 (uploaded once with to_device). For i < n, with
    // x = float(pixels[perm[offset + i]]) / 255 (image_elems values per image):
    //   out[i] = x - 0.5 (PIXELS_CENTERED), x (PIXELS_UNIT), (x - 0.5) / 0.5 (PIXELS_SYMMETRIC)
    // with the same float ops as dataset_fill_batch, so both give identical batches.
    void (*gather_images)(OpsContext *ctx, const uint8_t *pixels, const int32_t *perm, int64_t offset, int n,
                          size_t image_elems, PixelRange range, float *out);

    // ---- CUDA graphs (NULL on backends without them) --------------------------------------
    // graph_begin starts capturing the context's stream; the ops called until graph_end are
    // recorded, not run; graph_end instantiates them as ctx->graph; graph_launch runs it (once
    // per call, on the stream); graph_destroy frees it (ops_context_destroy calls it).
    void (*graph_begin)(OpsContext *ctx);
    void (*graph_end)(OpsContext *ctx);
    void (*graph_launch)(OpsContext *ctx);
    void (*graph_destroy)(OpsContext *ctx);

    // ---- layers of the other networks (GroupNorm/SiLU VQModel, small VQ-VAE, Gaussian VAE) ---
    // x, y are [n, c, hw] (NCHW with hw = h * w) unless said. No op here needs a workspace except
    // attention (attention_workspace_bytes).

    // PyTorch nn.GroupNorm(groups, c, eps, affine=True): the c / groups consecutive channels of
    // group g are normalized together over those channels and hw, per sample:
    //   y = (x - mean) * rstd * gamma[ch] + beta[ch],  rstd = 1 / sqrt(var + eps)
    // with var the biased variance; mean and rstd [n * groups] are saved for the backward. The
    // statistics are summed in double (two passes). c must be a multiple of groups.
    void (*group_norm_forward)(OpsContext *ctx, const float *x, const float *gamma, const float *beta, int n, int c,
                               int hw, int groups, float eps, float *y, float *mean, float *rstd);
    // dx = rstd (dy gamma - mean(dy gamma) - xhat mean(dy gamma xhat)) (means over the group),
    // dgamma[ch] = sum over n, hw of dy xhat, dbeta[ch] = sum of dy; xhat = (x - mean) rstd.
    void (*group_norm_backward)(OpsContext *ctx, const float *x, const float *gamma, const float *mean,
                                const float *rstd, const float *dy, int n, int c, int hw, int groups, float *dx,
                                float *dgamma, float *dbeta);

    // SiLU: y = x / (1 + exp(-x)) (y may alias x); dx = dy s (1 + x (1 - s)), s = sigmoid(x)
    // (dx may alias dy). Sigmoid: y = 1 / (1 + exp(-x)) (y may alias x); its backward takes the
    // OUTPUT y: dx = dy (1 - y) y, as PyTorch's sigmoid_backward (dx may alias dy).
    void (*silu_forward)(OpsContext *ctx, const float *x, float *y, size_t n);
    void (*silu_backward)(OpsContext *ctx, const float *x, const float *dy, float *dx, size_t n);
    void (*sigmoid_forward)(OpsContext *ctx, const float *x, float *y, size_t n);
    void (*sigmoid_backward)(OpsContext *ctx, const float *y, const float *dy, float *dx, size_t n);

    // Nearest-neighbour x2 upsampling (nn.Upsample(scale_factor=2, mode="nearest")):
    // x [n, c, h, w] -> y [n, c, 2h, 2w], y[.., i, j] = x[.., i / 2, j / 2]. The backward sums the
    // four dy of each x as PyTorch does, row by row from +0: (((0 + dy00) + dy01) + dy10) + dy11.
    void (*upsample2x_forward)(OpsContext *ctx, const float *x, int n, int c, int h, int w, float *y);
    void (*upsample2x_backward)(OpsContext *ctx, const float *dy, int n, int c, int h, int w, float *dx);

    // Zero padding (F.pad(x, (left, right, top, bottom))): x [n, c, h, w] ->
    // y [n, c, h + top + bottom, w + left + right]; amounts >= 0. The backward crops dy back to
    // dx [n, c, h, w]. (diffusers' Downsample2D with padding 0: right = bottom = 1.)
    void (*pad2d_forward)(OpsContext *ctx, const float *x, int n, int c, int h, int w, int top, int bottom, int left,
                          int right, float *y);
    void (*pad2d_backward)(OpsContext *ctx, const float *dy, int n, int c, int h, int w, int top, int bottom,
                           int left, int right, float *dx);

    // Single-head attention over the hw positions, on q, k, v [n, c, hw] as 1x1 projections
    // write them (channel-major):
    //   s[b, i, j] = scale sum_c q[b, c, i] k[b, c, j];  p[b, i, :] = softmax(s[b, i, :])
    //   out[b, c, i] = sum_j p[b, i, j] v[b, c, j]
    // probs [n, hw, hw] is saved for the backward. Batched GEMMs (OpenBLAS sgemm per sample;
    // cuBLAS strided batched, fp32 in every precision mode) and a max-subtracted softmax whose
    // sums are in double. out must not alias q, k or v.
    size_t (*attention_workspace_bytes)(OpsContext *ctx, int n, int c, int hw);
    void (*attention_forward)(OpsContext *ctx, const float *q, const float *k, const float *v, int n, int c, int hw,
                              float scale, float *probs, float *out);
    // dq, dk, dv overwritten (they must not alias each other or the inputs). Uses the workspace
    // for dp / ds: [hw, hw] floats on the CPU, [n, hw, hw] on CUDA.
    void (*attention_backward)(OpsContext *ctx, const float *q, const float *k, const float *v, const float *probs,
                               const float *dout, int n, int c, int hw, float scale, float *dq, float *dk, float *dv);

    // PyTorch nn.Linear: y [n, out] = x [n, in] w^T + b, w [out, in], b [out] or NULL (fp32 GEMMs
    // in every precision mode).
    void (*linear_forward)(OpsContext *ctx, const float *x, const float *w, const float *b, int n, int in, int out,
                           float *y);
    // dx = dy w (NULL: not wanted), dw = dy^T x, db = sum over n of dy (NULL: no bias; summed in
    // double, fixed order).
    void (*linear_backward)(OpsContext *ctx, const float *x, const float *w, const float *dy, int n, int in, int out,
                            float *dx, float *dw, float *db);

    // Dropout with a counter-based mask: x, y are n samples of per_sample values; sample i of this
    // slice is global sample first_sample + i. The mask is a pure function of (seed, layer, *step,
    // global sample, element within the sample) (src/core/philox.h gives the exact layout): the
    // same at any world size or batch slicing, and on resume. An element is kept when its uniform
    // u >= p, and becomes x * (float)(1 / (1 - p)); p = 0 copies x, p = 1 gives zeros. y may
    // alias x. step is DEVICE memory (e.g.
    // &state->steps, the 0-based index of the step under way), so that the launch is the same
    // every step and a captured CUDA graph draws a new mask each replay. layer < 2^24;
    // first_sample + n and *step < 2^32.
    void (*dropout_forward)(OpsContext *ctx, const float *x, float *y, int n, size_t per_sample, int64_t first_sample,
                            float p, uint64_t seed, uint32_t layer, const int32_t *step);
    // dx = dy masked and scaled as the forward, the mask recomputed (no mask buffer); dx may alias dy.
    void (*dropout_backward)(OpsContext *ctx, const float *dy, float *dx, int n, size_t per_sample,
                             int64_t first_sample, float p, uint64_t seed, uint32_t layer, const int32_t *step);

    // The VAE's reparameterization over [n, dim]: eps ~ N(0, 1) keyed like dropout on (seed,
    // layer, *step, global sample first_sample + i, element) (philox.h), saved to eps;
    // z = mean + eps * exp(0.5 logvar) (the exp in double, rounded to float).
    void (*reparam_forward)(OpsContext *ctx, const float *mean, const float *logvar, int n, int dim,
                            int64_t first_sample, uint64_t seed, uint32_t layer, const int32_t *step, float *z,
                            float *eps);
    // dmean = dz, dlogvar = ((dz eps) exp(0.5 logvar)) 0.5 (overwritten; autograd's order).
    // dmean may alias dz (then it is already there).
    void (*reparam_backward)(OpsContext *ctx, const float *logvar, const float *eps, const float *dz, int n, int dim,
                             float *dmean, float *dlogvar);
    // *out = sum over count elements of -0.5 (1 + logvar - mean^2 - exp(logvar)), to one device
    // float (summed in double, fixed order; the caller scales it, e.g. by 1 / count for the mean).
    void (*kl_forward)(OpsContext *ctx, const float *mean, const float *logvar, size_t count, float *out);
    // ACCUMULATES: dmean += scale mean, dlogvar += scale 0.5 (exp(logvar) - 1), the gradients of
    // scale * kl_forward (so the reparam gradient already there is kept).
    void (*kl_backward)(OpsContext *ctx, const float *mean, const float *logvar, size_t count, float scale,
                        float *dmean, float *dlogvar);

    // ---- memory accounting ----------------------------------------------------------------
    // Bytes of device memory this process uses now (CUDA: cudaMemGetInfo's used minus what was
    // used before the context was created, so cuDNN and cuBLAS internals count; CPU: resident
    // set size). For benchmarks; may synchronize.
    size_t (*memory_in_use)(OpsContext *ctx);
} Ops;

struct OpsContext {
    const Ops *ops;
    BackendKind kind;
    Precision precision;
    int deterministic;      // CUDA: no float atomics, deterministic algorithms
    int threads;            // CPU: the threads of every op (one OpenMP pool; OpenBLAS runs single-threaded in it)
    CpuConv cpu_conv;       // CPU: the convolution engine; change it only before the first conv_prepare
    int device_index;       // CUDA: the GPU this rank uses
    void *workspace;        // backend scratch, ops_reserve_workspace()
    size_t workspace_bytes;
    size_t allocated_bytes;        // bytes from alloc (and the workspace) now, and the peak
    size_t peak_allocated_bytes;
    void *graph;            // the captured training step (CUDA graph_end), or NULL
    void *backend;          // backend-private state (CUDA stream, cuBLAS and cuDNN handles, plans)
};

// ---- backends ---------------------------------------------------------------------------
extern const Ops cpu_ops;
int cuda_backend_compiled(void);   // 1 when the build has the CUDA backend
int cuda_device_count(void);       // 0 without a usable GPU (or without the CUDA backend)

// Create a context for "cpu", "cuda" or "auto" (CUDA when a GPU is visible). threads is for the
// CPU backend (0: all cores). Fails with a message naming the device string when impossible.
void ops_context_init(OpsContext *ctx, const char *device, int device_index, int threads, Precision precision,
                      int deterministic);
// The same with the CPU backend's convolution engine chosen (train.cpu_conv); ops_context_init uses
// cpu_conv_from_name("auto"). CUDA contexts ignore it.
void ops_context_init_with_conv(OpsContext *ctx, const char *device, int device_index, int threads,
                                Precision precision, int deterministic, CpuConv cpu_conv);
void ops_context_destroy(OpsContext *ctx);

// What a context runs on, for benchmark records: the device's name (the CPU's model name from
// /proc/cpuinfo, "unknown CPU" without it; the GPU's name) and, on CUDA, the versions of the
// CUDA runtime, driver and cuDNN the process runs with (0 on the CPU backend).
typedef struct {
    char device[256];
    int cuda_runtime, cuda_driver;   // e.g. 12040 for 12.4
    size_t cudnn;                    // cudnnGetVersion(), e.g. 90100
} OpsDescription;
void ops_context_describe(const OpsContext *ctx, OpsDescription *out);

// Backend entry points used by ops_context_init (defined in kernels/cpu/cpu_context.c and
// kernels/cuda/cuda_context.cu).
void cpu_context_init(OpsContext *ctx, int threads);
void cpu_context_destroy(OpsContext *ctx);
void cuda_context_init(OpsContext *ctx, int device_index, Precision precision, int deterministic);
void cuda_context_destroy(OpsContext *ctx);
void cpu_context_describe(const OpsContext *ctx, OpsDescription *out);
void cuda_context_describe(const OpsContext *ctx, OpsDescription *out);
