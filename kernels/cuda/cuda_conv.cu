// cuda_conv.cu: convolutions with cuDNN's legacy API (cudnnConvolutionForward / BackwardData /
// BackwardFilter), algorithms chosen once per shape in conv_prepare; bias add and bias gradient
// are our own small kernels (the gradient is a fixed-order block reduction: deterministic).
//
// Conv2d (transposed = 0), weight [Cout, Cin, k, k] = cuDNN's KCRS filter. PyTorch's Conv2d is
// cuDNN's CROSS_CORRELATION mode. cuDNN x = layer input, y = layer output:
//   forward:          out     = Forward(x := in, w)
//   backward data:    din     = BackwardData(w, dy := dout)        -> dx
//   backward filter:  dweight = BackwardFilter(x := in, dy := dout)
//
// ConvTranspose2d (transposed = 1), weight [Cin, Cout, k, k]. Write C for the Conv2d with the
// same kernel, stride and padding that maps [N, Cout, Ho, Wo] to [N, Cin, H, W] with filter
// [K = Cin, C = Cout, k, k]: that filter is PyTorch's ConvTranspose2d weight exactly as stored,
// and the sizes agree, (Ho + 2p - k)/s + 1 = H since Ho = (H - 1)s - 2p + k + op with
// output_padding 0 <= op < s: the op extra rows and columns of C's input (our output) are ones no
// tap of C reaches (the division rounds down), so only x's descriptor, which holds them, changes.
// ConvTranspose2d is the adjoint C^T (PyTorch defines it as the input gradient of C). So in
// cuDNN terms x = layer output, y = layer input, and:
//   forward:          out = C^T(in)             = BackwardData(w, dy := in)       -> dx := out
//   backward data:    din = (C^T)^T(dout) = C(dout) = Forward(x := dout, w)        -> y := din
//   backward filter:  out[n,o,p] = sum_{i,q} w[i,o,t(p,q)] in[n,i,q] (t = the tap linking
//                     output pixel p and input pixel q), so dw[i,o,t] = sum_{n,p,q} dout[n,o,p]
//                     in[n,i,q]. C's filter gradient with input X and output gradient DY is
//                     sum X[n,o,p] DY[n,i,q] over the same (p, q, t) triples, so
//                     dweight = BackwardFilter(x := dout, dy := in): x and dy swap roles.
//   bias (both kinds): one value per layer output channel.
// In both kinds, then, BackwardFilter reads cuDNN's x and y tensors, whichever layer tensors
// they hold.
//
// Precision (ctx->precision):
// - fp32: CUDNN_FMA_MATH only (no tensor cores).
// - tf32: CUDNN_TENSOR_OP_MATH for the query, then each direction runs with the math type its
//   chosen algorithm reported (as cuDNN asks).
// - bf16: the model's buffers stay fp32 (fp32 master weights, fp32 activations and gradients).
//   Each call converts its operands to bf16 (round to nearest even) into staging buffers at the
//   start of the workspace, runs cuDNN's PSEUDO_BFLOAT16 configuration (every tensor and the
//   filter CUDNN_DATA_BFLOAT16, the convolution's compute type CUDNN_DATA_FLOAT: products of
//   bf16 values are exact in fp32 and accumulate in fp32), and converts the result back to fp32,
//   adding the bias in fp32 on the way. cuDNN's legacy API has no bf16-in / fp32-out
//   configuration, so y, dx and dw are bf16 before the conversion back (one more rounding,
//   relative 2^-8, of each result; the weight gradient as in PyTorch's autocast). The bias
//   gradient is computed from the fp32 dout as in fp32 mode. Needs compute capability 8.0.
//   A shape for which cuDNN offers no acceptable bf16 algorithm (or a GPU older than 8.0) runs
//   that layer in tf32 instead, with a warning naming it; the plan's descriptors record which.
// Algorithms that convert down (CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, e.g. to fp16) are never
// allowed. See docs/CUDA.md.
//
// Algorithm choice: cuda_conv_algo.cu.
//
// Workspace of one plan: [bf16 staging: x | y | w] (bf16 plans only) then cuDNN's scratch, the
// largest of its three directions. conv_prepare returns the sum; nothing is allocated later.
#include <cuda_bf16.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_conv_internal.h"

// Alignment of each part of the workspace (cudaMalloc's own alignment, enough for any kernel).
static const size_t WORKSPACE_ALIGN = 256;

// ---- kernels ---------------------------------------------------------------------------------

// out[n, c, p] += bias[c] over a [batch, channels, hw] tensor.
__global__ void add_bias_kernel(float *out, const float *bias, size_t total, int channels, int hw) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        int c = (int)((i / (size_t)hw) % (size_t)channels);
        out[i] += bias[c];
    }
}

// dbias[c] = sum over n and p of dout[n, c, p]; one block per channel, every thread sums a fixed
// strided subset, then a fixed-shape tree: the same bits on every run. In double, rounded to
// float once, like the CPU backend.
__global__ void bias_grad_kernel(const float *dout, float *dbias, int batch, int channels, int hw) {
    const int c = blockIdx.x;
    const size_t per_channel = (size_t)batch * (size_t)hw;
    double sum = 0.0;
    for (size_t e = threadIdx.x; e < per_channel; e += blockDim.x) {
        size_t n = e / (size_t)hw, p = e % (size_t)hw;
        sum += dout[(n * (size_t)channels + (size_t)c) * (size_t)hw + p];
    }
    sum = block_reduce_sum(sum);
    if (threadIdx.x == 0) dbias[c] = (float)sum;
}

// out = bf16(in), round to nearest even (NaN stays NaN, overflow gives inf as in any float
// rounding; bf16 has fp32's exponent range, so only values within half a bf16 ulp of FLT_MAX do).
__global__ void to_bf16_kernel(const float *in, __nv_bfloat16 *out, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16_rn(in[i]);
}

// out = float(in) (exact), plus bias[c] over a [batch, channels, hw] tensor when bias is given.
__global__ void from_bf16_kernel(const __nv_bfloat16 *in, const float *bias, size_t n, int channels, int hw,
                                 float *out) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = __bfloat162float(in[i]);
        if (bias) v += bias[(i / (size_t)hw) % (size_t)channels];
        out[i] = v;
    }
}

// ---- bf16 staging ----------------------------------------------------------------------------

static size_t align_up(size_t bytes) { return (bytes + WORKSPACE_ALIGN - 1) / WORKSPACE_ALIGN * WORKSPACE_ALIGN; }

// Values of cuDNN's x and y tensors (see the top of the file: they swap for ConvTranspose2d).
static size_t cudnn_x_count(const ConvShape *s) { return s->transposed ? conv_out_count(s) : conv_in_count(s); }
static size_t cudnn_y_count(const ConvShape *s) { return s->transposed ? conv_in_count(s) : conv_out_count(s); }

static size_t staging_part(size_t values) { return align_up(values * sizeof(__nv_bfloat16)); }

// Bytes of the bf16 copies of x, y and w at the start of a bf16 plan's workspace.
static size_t staging_bytes(const ConvShape *s) {
    return staging_part(cudnn_x_count(s)) + staging_part(cudnn_y_count(s)) + staging_part(conv_weight_count(s));
}

// The workspace of a bf16 plan, carved up. x, y and w are in cuDNN's terms; each holds an
// operand or, when cuDNN writes one, its result, in turn (the calls below say which and when).
typedef struct {
    __nv_bfloat16 *x, *y, *w;
    void *cudnn;   // cuDNN's own scratch
} Staging;

static Staging staging(OpsContext *ctx, const ConvShape *s) {
    char *base = (char *)ctx->workspace;
    Staging st;
    st.x = (__nv_bfloat16 *)base;
    st.y = (__nv_bfloat16 *)(base + staging_part(cudnn_x_count(s)));
    st.w = (__nv_bfloat16 *)(base + staging_part(cudnn_x_count(s)) + staging_part(cudnn_y_count(s)));
    st.cudnn = base + staging_bytes(s);
    return st;
}

static void to_bf16(cudaStream_t stream, const float *in, __nv_bfloat16 *out, size_t n) {
    to_bf16_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, stream>>>(in, out, n);
    CUDA_CHECK(cudaGetLastError());
}

// out = float(in) (+ bias[c] when bias is not NULL, for the layer output [batch, channels, hw]).
static void from_bf16(cudaStream_t stream, const __nv_bfloat16 *in, const float *bias, int channels, int hw,
                      float *out, size_t n) {
    from_bf16_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, stream>>>(in, bias, n, channels, hw, out);
    CUDA_CHECK(cudaGetLastError());
}

// ---- plans -----------------------------------------------------------------------------------

static int same_shape(const ConvShape *a, const ConvShape *b) {
    return a->batch == b->batch && a->in_channels == b->in_channels && a->in_height == b->in_height &&
           a->in_width == b->in_width && a->out_channels == b->out_channels && a->out_height == b->out_height &&
           a->out_width == b->out_width && a->kernel == b->kernel && a->stride == b->stride && a->pad == b->pad &&
           a->output_padding == b->output_padding && a->transposed == b->transposed && a->has_bias == b->has_bias;
}

// A plan runs in bf16 when its descriptors say so (conv_prepare may have put a layer in tf32).
static int plan_is_bf16(const ConvPlan *p) {
    cudnnDataType_t type;
    cudnnTensorFormat_t format;
    int k, c, h, w;
    CUDNN_CHECK(cudnnGetFilter4dDescriptor(p->w_desc, &type, &format, &k, &c, &h, &w));
    return type == CUDNN_DATA_BFLOAT16;
}

size_t cuda_conv_prepare(OpsContext *ctx, ConvShape *s) {
    CudaBackend *b = cuda_backend(ctx);
    CHECK(s->batch > 0 && s->in_channels > 0 && s->out_channels > 0 && s->kernel > 0 && s->stride > 0 &&
              s->pad >= 0 && s->out_height > 0 && s->out_width > 0,
          "conv_prepare: invalid %s shape (batch %d, %d->%d, k%d s%d p%d)", cuda_conv_kind(s), s->batch,
          s->in_channels, s->out_channels, s->kernel, s->stride, s->pad);

    // Layers of the same shape (the residual stacks) share one plan.
    for (int i = 0; i < b->plan_count; i++) {
        if (same_shape(&b->plans[i].shape, s)) {
            s->plan = i;
            return b->plans[i].workspace_bytes;
        }
    }
    if (b->plan_count == b->plan_capacity) {
        int capacity = b->plan_capacity ? 2 * b->plan_capacity : 16;
        ConvPlan *plans = (ConvPlan *)realloc(b->plans, (size_t)capacity * sizeof *plans);
        if (!plans) fatal("out of host memory for convolution plans");
        b->plans = plans;
        b->plan_capacity = capacity;
    }
    ConvPlan *p = &b->plans[b->plan_count];
    memset(p, 0, sizeof *p);
    p->shape = *s;
    p->shape.plan = -1;
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->x_desc));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->y_desc));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->w_desc));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->fwd_conv));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->bwd_data_conv));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->bwd_filter_conv));

    // The precision asked for. bf16 is tried first and, where cuDNN cannot do a layer in bf16,
    // the layer runs in tf32 (the closest faster-than-fp32 mode) rather than stopping the run.
    Precision precision = ctx->precision;
    char why[CONV_WHY_BYTES] = "";
    if (precision == PRECISION_BF16) {
        if (b->props.major < 8)
            snprintf(why, sizeof why, "the GPU has compute capability %d.%d and bf16 convolutions need 8.0",
                     b->props.major, b->props.minor);
        else
            cuda_conv_describe(p, PRECISION_BF16);
        if (b->props.major < 8 || cuda_conv_choose_algorithms(b, p, PRECISION_BF16, why)) {
            if (launcher_rank() == 0)
                log_warn("precision bf16: %s %d->%d k%d s%d p%d on %dx%d (batch %d) runs in tf32: %s",
                         cuda_conv_kind(s), s->in_channels, s->out_channels, s->kernel, s->stride, s->pad, s->in_height,
                         s->in_width, s->batch, why);
            precision = PRECISION_TF32;
        }
    }
    if (precision != PRECISION_BF16) {
        cuda_conv_describe(p, precision);
        const char *failed = cuda_conv_choose_algorithms(b, p, precision, why);
        if (failed) cuda_conv_no_algorithm(s, precision, failed, why);
    }

    size_t cudnn_bytes = p->fwd_workspace;
    if (p->bwd_data_workspace > cudnn_bytes) cudnn_bytes = p->bwd_data_workspace;
    if (p->bwd_filter_workspace > cudnn_bytes) cudnn_bytes = p->bwd_filter_workspace;
    p->workspace_bytes = precision == PRECISION_BF16 ? staging_bytes(s) + cudnn_bytes : cudnn_bytes;

    s->plan = b->plan_count++;
    return p->workspace_bytes;
}

void cuda_conv_destroy_plans(CudaBackend *b) {
    for (int i = 0; i < b->plan_count; i++) {
        ConvPlan *p = &b->plans[i];
        CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(p->fwd_conv));
        CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(p->bwd_data_conv));
        CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(p->bwd_filter_conv));
        CUDNN_CHECK(cudnnDestroyFilterDescriptor(p->w_desc));
        CUDNN_CHECK(cudnnDestroyTensorDescriptor(p->y_desc));
        CUDNN_CHECK(cudnnDestroyTensorDescriptor(p->x_desc));
    }
    free(b->plans);
    b->plans = NULL;
    b->plan_count = b->plan_capacity = 0;
}

// The plan of a prepared shape, after checking that it is this context's and that the workspace
// was reserved for it.
static const ConvPlan *plan_for(OpsContext *ctx, const ConvShape *s, const char *op) {
    CudaBackend *b = cuda_backend(ctx);
    CHECK(s->plan >= 0 && s->plan < b->plan_count && same_shape(&b->plans[s->plan].shape, s),
          "%s: %s %d->%d was not prepared on this CUDA context (plan %d); call conv_prepare at start-up", op,
          cuda_conv_kind(s), s->in_channels, s->out_channels, s->plan);
    const ConvPlan *p = &b->plans[s->plan];
    CHECK(ctx->workspace_bytes >= p->workspace_bytes,
          "%s: the workspace holds %zu bytes but this convolution needs %zu; reserve conv_prepare's result "
          "with reserve_workspace at start-up", op, ctx->workspace_bytes, p->workspace_bytes);
    return p;
}

// ---- bf16 calls (see the top of the file) ----------------------------------------------------

static void forward_bf16(OpsContext *ctx, const ConvShape *s, const ConvPlan *p, const float *in,
                         const float *weight, const float *bias, float *out) {
    CudaBackend *b = cuda_backend(ctx);
    const Staging st = staging(ctx, s);
    const float one = 1.0f, zero = 0.0f;   // scaling factors are float for bf16 tensors
    to_bf16(b->stream, weight, st.w, conv_weight_count(s));
    if (!s->transposed) {
        to_bf16(b->stream, in, st.x, conv_in_count(s));
        CUDNN_CHECK(cudnnConvolutionForward(b->cudnn, &one, p->x_desc, st.x, p->w_desc, st.w, p->fwd_conv,
                                            p->fwd_algo, st.cudnn, p->fwd_workspace, &zero, p->y_desc, st.y));
    } else {
        to_bf16(b->stream, in, st.y, conv_in_count(s));
        CUDNN_CHECK(cudnnConvolutionBackwardData(b->cudnn, &one, p->w_desc, st.w, p->y_desc, st.y, p->bwd_data_conv,
                                                 p->bwd_data_algo, st.cudnn, p->bwd_data_workspace, &zero, p->x_desc,
                                                 st.x));
    }
    const __nv_bfloat16 *result = s->transposed ? st.x : st.y;
    from_bf16(b->stream, result, s->has_bias ? bias : NULL, s->out_channels, s->out_height * s->out_width, out,
              conv_out_count(s));
}

// The filter gradient first: it reads the bf16 layer input and dout, and its bf16 result goes
// through the w buffer before the weight itself is converted there for the data gradient, which
// then overwrites the (no longer needed) bf16 layer input with din. All on the one stream, so
// each step sees the previous one's writes.
static void backward_bf16(OpsContext *ctx, const ConvShape *s, const ConvPlan *p, const float *in,
                          const float *weight, const float *dout, float *din, float *dweight) {
    CudaBackend *b = cuda_backend(ctx);
    const Staging st = staging(ctx, s);
    const float one = 1.0f, zero = 0.0f;
    // cuDNN's x is the layer input for Conv2d and the layer output for ConvTranspose2d; y the other.
    __nv_bfloat16 *in_b = s->transposed ? st.y : st.x;     // bf16 layer input, later din
    __nv_bfloat16 *dout_b = s->transposed ? st.x : st.y;   // bf16 dout
    to_bf16(b->stream, dout, dout_b, conv_out_count(s));
    if (dweight) {
        to_bf16(b->stream, in, in_b, conv_in_count(s));
        CUDNN_CHECK(cudnnConvolutionBackwardFilter(b->cudnn, &one, p->x_desc, st.x, p->y_desc, st.y,
                                                   p->bwd_filter_conv, p->bwd_filter_algo, st.cudnn,
                                                   p->bwd_filter_workspace, &zero, p->w_desc, st.w));
        from_bf16(b->stream, st.w, NULL, 1, 1, dweight, conv_weight_count(s));
    }
    if (din) {
        to_bf16(b->stream, weight, st.w, conv_weight_count(s));
        if (!s->transposed)
            CUDNN_CHECK(cudnnConvolutionBackwardData(b->cudnn, &one, p->w_desc, st.w, p->y_desc, st.y,
                                                     p->bwd_data_conv, p->bwd_data_algo, st.cudnn,
                                                     p->bwd_data_workspace, &zero, p->x_desc, st.x));
        else
            CUDNN_CHECK(cudnnConvolutionForward(b->cudnn, &one, p->x_desc, st.x, p->w_desc, st.w, p->fwd_conv,
                                                p->fwd_algo, st.cudnn, p->fwd_workspace, &zero, p->y_desc, st.y));
        from_bf16(b->stream, in_b, NULL, 1, 1, din, conv_in_count(s));
    }
}

// ---- ops -------------------------------------------------------------------------------------

void cuda_conv_forward(OpsContext *ctx, const ConvShape *s, const float *in, const float *weight,
                       const float *bias, float *out) {
    CudaBackend *b = cuda_backend(ctx);
    const ConvPlan *p = plan_for(ctx, s, "conv_forward");
    CHECK(!s->has_bias || bias != NULL, "conv_forward: %s %d->%d has a bias but none was passed", cuda_conv_kind(s),
          s->in_channels, s->out_channels);
    if (plan_is_bf16(p)) {
        forward_bf16(ctx, s, p, in, weight, bias, out);
        return;
    }
    const float one = 1.0f, zero = 0.0f;   // beta = 0: out is overwritten and never read
    if (!s->transposed)
        CUDNN_CHECK(cudnnConvolutionForward(b->cudnn, &one, p->x_desc, in, p->w_desc, weight, p->fwd_conv, p->fwd_algo,
                                            ctx->workspace, p->fwd_workspace, &zero, p->y_desc, out));
    else
        CUDNN_CHECK(cudnnConvolutionBackwardData(b->cudnn, &one, p->w_desc, weight, p->y_desc, in, p->bwd_data_conv,
                                                 p->bwd_data_algo, ctx->workspace, p->bwd_data_workspace, &zero,
                                                 p->x_desc, out));
    if (s->has_bias) {
        size_t hw = (size_t)s->out_height * (size_t)s->out_width;
        size_t total = conv_out_count(s);
        add_bias_kernel<<<cuda_grid(total, CUDA_BLOCK), CUDA_BLOCK, 0, b->stream>>>(out, bias, total, s->out_channels,
                                                                                  (int)hw);
        CUDA_CHECK(cudaGetLastError());
    }
}

void cuda_conv_backward(OpsContext *ctx, const ConvShape *s, const float *in, const float *weight,
                        const float *dout, float *din, float *dweight, float *dbias) {
    CudaBackend *b = cuda_backend(ctx);
    const ConvPlan *p = plan_for(ctx, s, "conv_backward");
    if (plan_is_bf16(p)) {
        backward_bf16(ctx, s, p, in, weight, dout, din, dweight);
    } else {
        const float one = 1.0f, zero = 0.0f;   // beta = 0: gradients are overwritten
        if (din) {
            if (!s->transposed)
                CUDNN_CHECK(cudnnConvolutionBackwardData(b->cudnn, &one, p->w_desc, weight, p->y_desc, dout,
                                                         p->bwd_data_conv, p->bwd_data_algo, ctx->workspace,
                                                         p->bwd_data_workspace, &zero, p->x_desc, din));
            else
                CUDNN_CHECK(cudnnConvolutionForward(b->cudnn, &one, p->x_desc, dout, p->w_desc, weight, p->fwd_conv,
                                                    p->fwd_algo, ctx->workspace, p->fwd_workspace, &zero, p->y_desc,
                                                    din));
        }
        if (dweight) {
            // cuDNN x is the layer input for Conv2d and dout for ConvTranspose2d; dy the other one.
            const float *x = s->transposed ? dout : in;
            const float *dy = s->transposed ? in : dout;
            CUDNN_CHECK(cudnnConvolutionBackwardFilter(b->cudnn, &one, p->x_desc, x, p->y_desc, dy,
                                                       p->bwd_filter_conv, p->bwd_filter_algo, ctx->workspace,
                                                       p->bwd_filter_workspace, &zero, p->w_desc, dweight));
        }
    }
    // The bias gradient is the same fp32 reduction of dout in every precision.
    if (s->has_bias && dbias) {
        int hw = s->out_height * s->out_width;
        bias_grad_kernel<<<s->out_channels, CUDA_BLOCK, 0, b->stream>>>(dout, dbias, s->batch, s->out_channels, hw);
        CUDA_CHECK(cudaGetLastError());
    }
}
