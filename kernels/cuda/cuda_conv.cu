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
// and the sizes agree, (Ho + 2p - k)/s + 1 = H since Ho = (H - 1)s - 2p + k (output_padding 0).
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
//
// Algorithm choice. Deterministic mode: cudnnGet*Algorithm_v7 (heuristics: the same choice on
// every run) keeping only CUDNN_DETERMINISTIC algorithms. Otherwise cudnnFind*Algorithm
// (benchmarks every algorithm once, at start-up). Math: fp32 -> CUDNN_FMA_MATH only (no tensor
// cores); tf32 -> CUDNN_TENSOR_OP_MATH, then each direction runs with the math type its chosen
// algorithm reported (as cuDNN asks). Conversions to fp16/bf16 are never allowed. bf16 falls back
// to tf32 (cuda_context.cu warns).
#include <stdlib.h>
#include <string.h>

#include "cuda_common.h"

// No single convolution direction may ask for more scratch than this (cuDNN's FFT algorithms can
// want gigabytes); a faster algorithm above it is skipped.
static const size_t CONV_MAX_WORKSPACE = (size_t)512 << 20;

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

// ---- plans -----------------------------------------------------------------------------------

static int same_shape(const ConvShape *a, const ConvShape *b) {
    return a->batch == b->batch && a->in_channels == b->in_channels && a->in_height == b->in_height &&
           a->in_width == b->in_width && a->out_channels == b->out_channels && a->out_height == b->out_height &&
           a->out_width == b->out_width && a->kernel == b->kernel && a->stride == b->stride && a->pad == b->pad &&
           a->transposed == b->transposed && a->has_bias == b->has_bias;
}

static const char *conv_kind(const ConvShape *s) { return s->transposed ? "ConvTranspose2d" : "Conv2d"; }

// FMA only in fp32 mode; never an algorithm that rounds the fp32 inputs down to fp16 / bf16.
// (DEFAULT is accepted in fp32 mode because the descriptor is forced back to FMA before running.)
static int math_type_allowed(Precision precision, cudnnMathType_t math) {
    if (math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return 0;
    if (precision == PRECISION_FP32) return math == CUDNN_FMA_MATH || math == CUDNN_DEFAULT_MATH;
    return 1;
}

// The first acceptable entry of a cuDNN perf list (sorted best first by cuDNN); -1 if none.
template <typename Perf>
static int choose_algo(const CudaBackend *b, const Perf *perf, int count) {
    for (int i = 0; i < count; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
        if (b->deterministic && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
        if (!math_type_allowed(b->conv_precision, perf[i].mathType)) continue;
        if (perf[i].memory > CONV_MAX_WORKSPACE) continue;
        return i;
    }
    return -1;
}

// The math type a direction runs with: its algorithm's own, except that fp32 stays FMA.
static cudnnMathType_t run_math_type(const CudaBackend *b, cudnnMathType_t chosen) {
    return b->conv_precision == PRECISION_FP32 ? CUDNN_FMA_MATH : chosen;
}

[[noreturn]] static void no_algorithm(const CudaBackend *b, const ConvShape *s, const char *direction) {
    fatal_at(__FILE__, __LINE__,
             "cuDNN offers no %s%s algorithm for %s %d->%d k%d s%d p%d on %dx%d (batch %d) within %zu MiB "
             "of workspace; try precision tf32 or deterministic off", b->deterministic ? "deterministic " : "",
             direction, conv_kind(s), s->in_channels, s->out_channels, s->kernel, s->stride, s->pad, s->in_height,
             s->in_width, s->batch, CONV_MAX_WORKSPACE >> 20);
}

static void choose_forward(CudaBackend *b, ConvPlan *p) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int returned = 0;
    if (b->deterministic)
        CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(b->cudnn, p->x_desc, p->w_desc, p->fwd_conv, p->y_desc,
                                                           CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf));
    else
        CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(b->cudnn, p->x_desc, p->w_desc, p->fwd_conv, p->y_desc,
                                                         CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf));
    int i = choose_algo(b, perf, returned);
    if (i < 0) no_algorithm(b, &p->shape, "forward");
    p->fwd_algo = perf[i].algo;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->fwd_conv, run_math_type(b, perf[i].mathType)));
    CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(b->cudnn, p->x_desc, p->w_desc, p->fwd_conv, p->y_desc,
                                                        p->fwd_algo, &p->fwd_workspace));
}

static void choose_backward_data(CudaBackend *b, ConvPlan *p) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int returned = 0;
    if (b->deterministic)
        CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(b->cudnn, p->w_desc, p->y_desc, p->bwd_data_conv,
                                                                p->x_desc, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                                                                &returned, perf));
    else
        CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(b->cudnn, p->w_desc, p->y_desc, p->bwd_data_conv,
                                                              p->x_desc, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                                                              &returned, perf));
    int i = choose_algo(b, perf, returned);
    if (i < 0) no_algorithm(b, &p->shape, "backward-data");
    p->bwd_data_algo = perf[i].algo;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->bwd_data_conv, run_math_type(b, perf[i].mathType)));
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(b->cudnn, p->w_desc, p->y_desc, p->bwd_data_conv,
                                                             p->x_desc, p->bwd_data_algo, &p->bwd_data_workspace));
}

static void choose_backward_filter(CudaBackend *b, ConvPlan *p) {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int returned = 0;
    if (b->deterministic)
        CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(b->cudnn, p->x_desc, p->y_desc, p->bwd_filter_conv,
                                                                  p->w_desc, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                                                                  &returned, perf));
    else
        CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(b->cudnn, p->x_desc, p->y_desc, p->bwd_filter_conv,
                                                                p->w_desc, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                                                                &returned, perf));
    int i = choose_algo(b, perf, returned);
    if (i < 0) no_algorithm(b, &p->shape, "backward-filter");
    p->bwd_filter_algo = perf[i].algo;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->bwd_filter_conv, run_math_type(b, perf[i].mathType)));
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(b->cudnn, p->x_desc, p->y_desc, p->bwd_filter_conv,
                                                               p->w_desc, p->bwd_filter_algo,
                                                               &p->bwd_filter_workspace));
}

size_t cuda_conv_prepare(OpsContext *ctx, ConvShape *s) {
    CudaBackend *b = cuda_backend(ctx);
    CHECK(s->batch > 0 && s->in_channels > 0 && s->out_channels > 0 && s->kernel > 0 && s->stride > 0 &&
              s->pad >= 0 && s->out_height > 0 && s->out_width > 0,
          "conv_prepare: invalid %s shape (batch %d, %d->%d, k%d s%d p%d)", conv_kind(s), s->batch,
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

    // cuDNN's x / y / filter in its own terms (see the top of the file).
    int x_c, x_h, x_w, y_c, y_h, y_w, filter_k, filter_c;
    if (s->transposed) {
        x_c = s->out_channels; x_h = s->out_height; x_w = s->out_width;
        y_c = s->in_channels;  y_h = s->in_height;  y_w = s->in_width;
        filter_k = s->in_channels; filter_c = s->out_channels;
    } else {
        x_c = s->in_channels;  x_h = s->in_height;  x_w = s->in_width;
        y_c = s->out_channels; y_h = s->out_height; y_w = s->out_width;
        filter_k = s->out_channels; filter_c = s->in_channels;
    }
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->x_desc));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->y_desc));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->w_desc));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s->batch, x_c, x_h, x_w));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->y_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s->batch, y_c, y_h, y_w));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, filter_k, filter_c,
                                           s->kernel, s->kernel));
    // Query with FMA only (fp32) or with tensor cores allowed (tf32): the query honours it.
    const cudnnMathType_t query_math = b->conv_precision == PRECISION_FP32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
    cudnnConvolutionDescriptor_t *convs[3] = {&p->fwd_conv, &p->bwd_data_conv, &p->bwd_filter_conv};
    for (int i = 0; i < 3; i++) {
        CUDNN_CHECK(cudnnCreateConvolutionDescriptor(convs[i]));
        CUDNN_CHECK(cudnnSetConvolution2dDescriptor(*convs[i], s->pad, s->pad, s->stride, s->stride, 1, 1,
                                                    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
        CUDNN_CHECK(cudnnSetConvolutionMathType(*convs[i], query_math));
    }

    // cuDNN must agree on the output size, or our shape formula and its descriptors disagree.
    int n, c, h, w;
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->fwd_conv, p->x_desc, p->w_desc, &n, &c, &h, &w));
    CHECK(n == s->batch && c == y_c && h == y_h && w == y_w,
          "conv_prepare: cuDNN computes a %dx%dx%dx%d result for %s %d->%d k%d s%d p%d on %dx%d, expected %dx%dx%dx%d",
          n, c, h, w, conv_kind(s), s->in_channels, s->out_channels, s->kernel, s->stride, s->pad, s->in_height,
          s->in_width, s->batch, y_c, y_h, y_w);

    choose_forward(b, p);
    choose_backward_data(b, p);
    choose_backward_filter(b, p);
    p->workspace_bytes = p->fwd_workspace;
    if (p->bwd_data_workspace > p->workspace_bytes) p->workspace_bytes = p->bwd_data_workspace;
    if (p->bwd_filter_workspace > p->workspace_bytes) p->workspace_bytes = p->bwd_filter_workspace;

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
          conv_kind(s), s->in_channels, s->out_channels, s->plan);
    const ConvPlan *p = &b->plans[s->plan];
    CHECK(ctx->workspace_bytes >= p->workspace_bytes,
          "%s: the workspace holds %zu bytes but this convolution needs %zu; reserve conv_prepare's result "
          "with reserve_workspace at start-up", op, ctx->workspace_bytes, p->workspace_bytes);
    return p;
}

void cuda_conv_forward(OpsContext *ctx, const ConvShape *s, const float *in, const float *weight,
                       const float *bias, float *out) {
    CudaBackend *b = cuda_backend(ctx);
    const ConvPlan *p = plan_for(ctx, s, "conv_forward");
    const float one = 1.0f, zero = 0.0f;   // beta = 0: out is overwritten and never read
    if (!s->transposed)
        CUDNN_CHECK(cudnnConvolutionForward(b->cudnn, &one, p->x_desc, in, p->w_desc, weight, p->fwd_conv, p->fwd_algo,
                                            ctx->workspace, p->fwd_workspace, &zero, p->y_desc, out));
    else
        CUDNN_CHECK(cudnnConvolutionBackwardData(b->cudnn, &one, p->w_desc, weight, p->y_desc, in, p->bwd_data_conv,
                                                 p->bwd_data_algo, ctx->workspace, p->bwd_data_workspace, &zero,
                                                 p->x_desc, out));
    if (s->has_bias) {
        CHECK(bias != NULL, "conv_forward: %s has a bias but none was passed", conv_kind(s));
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
    const float one = 1.0f, zero = 0.0f;   // beta = 0: gradients are overwritten
    if (din) {
        if (!s->transposed)
            CUDNN_CHECK(cudnnConvolutionBackwardData(b->cudnn, &one, p->w_desc, weight, p->y_desc, dout,
                                                     p->bwd_data_conv, p->bwd_data_algo, ctx->workspace,
                                                     p->bwd_data_workspace, &zero, p->x_desc, din));
        else
            CUDNN_CHECK(cudnnConvolutionForward(b->cudnn, &one, p->x_desc, dout, p->w_desc, weight, p->fwd_conv,
                                                p->fwd_algo, ctx->workspace, p->fwd_workspace, &zero, p->y_desc, din));
    }
    if (dweight) {
        // cuDNN x is the layer input for Conv2d and dout for ConvTranspose2d; dy the other one.
        const float *x = s->transposed ? dout : in;
        const float *dy = s->transposed ? in : dout;
        CUDNN_CHECK(cudnnConvolutionBackwardFilter(b->cudnn, &one, p->x_desc, x, p->y_desc, dy, p->bwd_filter_conv,
                                                   p->bwd_filter_algo, ctx->workspace, p->bwd_filter_workspace, &zero,
                                                   p->w_desc, dweight));
    }
    if (s->has_bias && dbias) {
        int hw = s->out_height * s->out_width;
        bias_grad_kernel<<<s->out_channels, CUDA_BLOCK, 0, b->stream>>>(dout, dbias, s->batch, s->out_channels, hw);
        CUDA_CHECK(cudaGetLastError());
    }
}
