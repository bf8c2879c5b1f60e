// cuda_conv_algo.cu: the cuDNN algorithm of each direction of a convolution plan, chosen once
// per shape at conv_prepare (cuda_conv.cu has the plans, the bf16 staging and the calls).
//
// Algorithm choice. Deterministic mode: cudnnGet*Algorithm_v7 (heuristics: the same choice on
// every run) keeping only CUDNN_DETERMINISTIC algorithms. Otherwise cudnnFind*Algorithm
// (benchmarks every algorithm once, at start-up).
//
// The math types allowed follow the precision: FMA only for fp32; tensor cores, but never an
// algorithm that converts operands down, for tf32 and bf16 (see cuda_conv.cu).
#include <stdio.h>

#include "cuda_conv_internal.h"

// No single convolution direction may ask for more scratch than this (cuDNN's FFT algorithms can
// want gigabytes); a faster algorithm above it is skipped.
static const size_t CONV_MAX_WORKSPACE = (size_t)512 << 20;

static const char *precision_name(Precision precision) {
    return precision == PRECISION_FP32 ? "fp32" : precision == PRECISION_TF32 ? "tf32" : "bf16";
}

// FMA only in fp32 mode; never an algorithm that converts the operands down (to fp16 / bf16 from
// fp32, or from bf16 to fp16, which would lose bf16's range). DEFAULT is accepted in fp32 mode
// because the descriptor is forced back to FMA before running.
static int math_type_allowed(Precision precision, cudnnMathType_t math) {
    if (math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return 0;
    if (precision == PRECISION_FP32) return math == CUDNN_FMA_MATH || math == CUDNN_DEFAULT_MATH;
    return 1;
}

// The first acceptable entry at or after `from` of a cuDNN perf list (sorted best first by cuDNN);
// -1 if none.
template <typename Perf>
static int choose_algo(const CudaBackend *b, Precision precision, const Perf *perf, int count, int from) {
    for (int i = from; i < count; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
        if (b->deterministic && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
        if (!math_type_allowed(precision, perf[i].mathType)) continue;
        if (perf[i].memory > CONV_MAX_WORKSPACE) continue;
        return i;
    }
    return -1;
}

// The math type a direction runs with: its algorithm's own, except that fp32 stays FMA.
static cudnnMathType_t run_math_type(Precision precision, cudnnMathType_t chosen) {
    return precision == PRECISION_FP32 ? CUDNN_FMA_MATH : chosen;
}

// A cuDNN status from an algorithm or workspace query: 1 on success. While probing bf16 any
// failure returns 0 with the reason in why (the layer then runs in tf32: cuDNN answers a data
// type configuration it lacks with NOT_SUPPORTED or BAD_PARAM, and the descriptors are otherwise
// those of the fp32 plan); in fp32 and tf32 it stops the program, naming the call.
static int query_ok(cudnnStatus_t status, Precision precision, const char *call, char *why) {
    if (status == CUDNN_STATUS_SUCCESS) return 1;
    char detail[256];
    cudnnGetLastErrorString(detail, sizeof detail);
    if (precision == PRECISION_BF16) {
        snprintf(why, CONV_WHY_BYTES, "%s returned %s (%s)", call, cudnnGetErrorString(status), detail);
        return 0;
    }
    fatal_at(__FILE__, __LINE__, "%s failed (precision %s): %s (%s)", call, precision_name(precision),
             cudnnGetErrorString(status), detail);
}

// choose_algo found nothing: say so in why.
static int none_acceptable(const CudaBackend *b, Precision precision, const char *direction, int returned,
                           char *why) {
    snprintf(why, CONV_WHY_BYTES,
             "none of the %d %s algorithms cuDNN lists is acceptable (wanted: %ssupported, %s math, at most %zu MiB "
             "of workspace)", returned, direction, b->deterministic ? "deterministic, " : "",
             precision == PRECISION_FP32 ? "FMA" : "no down-converting", CONV_MAX_WORKSPACE >> 20);
    return 0;
}

[[noreturn]] void cuda_conv_no_algorithm(const ConvShape *s, Precision precision, const char *direction,
                                         const char *why) {
    fatal_at(__FILE__, __LINE__,
             "cuDNN has no %s %s algorithm for %s %d->%d k%d s%d p%d on %dx%d (batch %d): %s; try another "
             "train.precision, or deterministic off", precision_name(precision), direction, cuda_conv_kind(s),
             s->in_channels, s->out_channels, s->kernel, s->stride, s->pad, s->in_height, s->in_width, s->batch, why);
}

// Each choose_* picks one direction's algorithm for the plan's descriptors as they are set now,
// sets that direction's math type and workspace size, and returns 1; or returns 0 when cuDNN
// offers nothing acceptable (only bf16 may then fall back; the caller decides).
static int choose_forward(CudaBackend *b, ConvPlan *p, Precision precision, char *why) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int returned = 0;
    cudnnStatus_t status =
        b->deterministic
            ? cudnnGetConvolutionForwardAlgorithm_v7(b->cudnn, p->x_desc, p->w_desc, p->fwd_conv, p->y_desc,
                                                     CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf)
            : cudnnFindConvolutionForwardAlgorithm(b->cudnn, p->x_desc, p->w_desc, p->fwd_conv, p->y_desc,
                                                   CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf);
    const char *query =
        b->deterministic ? "cudnnGetConvolutionForwardAlgorithm_v7" : "cudnnFindConvolutionForwardAlgorithm";
    if (!query_ok(status, precision, query, why)) return 0;
    for (int i = choose_algo(b, precision, perf, returned, 0); i >= 0;
         i = choose_algo(b, precision, perf, returned, i + 1)) {
        p->fwd_algo = perf[i].algo;
        CUDNN_CHECK(cudnnSetConvolutionMathType(p->fwd_conv, run_math_type(precision, perf[i].mathType)));
        status = cudnnGetConvolutionForwardWorkspaceSize(b->cudnn, p->x_desc, p->w_desc, p->fwd_conv, p->y_desc,
                                                         p->fwd_algo, &p->fwd_workspace);
        if (!query_ok(status, precision, "cudnnGetConvolutionForwardWorkspaceSize", why)) return 0;
        if (p->fwd_workspace <= CONV_MAX_WORKSPACE) return 1;   // the real size, not the list's estimate
    }
    return none_acceptable(b, precision, "forward", returned, why);
}

static int choose_backward_data(CudaBackend *b, ConvPlan *p, Precision precision, char *why) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int returned = 0;
    cudnnStatus_t status =
        b->deterministic
            ? cudnnGetConvolutionBackwardDataAlgorithm_v7(b->cudnn, p->w_desc, p->y_desc, p->bwd_data_conv,
                                                          p->x_desc, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                                                          &returned, perf)
            : cudnnFindConvolutionBackwardDataAlgorithm(b->cudnn, p->w_desc, p->y_desc, p->bwd_data_conv, p->x_desc,
                                                        CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, perf);
    const char *query =
        b->deterministic ? "cudnnGetConvolutionBackwardDataAlgorithm_v7" : "cudnnFindConvolutionBackwardDataAlgorithm";
    if (!query_ok(status, precision, query, why)) return 0;
    for (int i = choose_algo(b, precision, perf, returned, 0); i >= 0;
         i = choose_algo(b, precision, perf, returned, i + 1)) {
        p->bwd_data_algo = perf[i].algo;
        CUDNN_CHECK(cudnnSetConvolutionMathType(p->bwd_data_conv, run_math_type(precision, perf[i].mathType)));
        status = cudnnGetConvolutionBackwardDataWorkspaceSize(b->cudnn, p->w_desc, p->y_desc, p->bwd_data_conv,
                                                              p->x_desc, p->bwd_data_algo, &p->bwd_data_workspace);
        if (!query_ok(status, precision, "cudnnGetConvolutionBackwardDataWorkspaceSize", why)) return 0;
        if (p->bwd_data_workspace <= CONV_MAX_WORKSPACE) return 1;   // the real size, not the list's estimate
    }
    return none_acceptable(b, precision, "backward-data", returned, why);
}

static int choose_backward_filter(CudaBackend *b, ConvPlan *p, Precision precision, char *why) {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int returned = 0;
    cudnnStatus_t status =
        b->deterministic
            ? cudnnGetConvolutionBackwardFilterAlgorithm_v7(b->cudnn, p->x_desc, p->y_desc, p->bwd_filter_conv,
                                                            p->w_desc, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                                                            &returned, perf)
            : cudnnFindConvolutionBackwardFilterAlgorithm(b->cudnn, p->x_desc, p->y_desc, p->bwd_filter_conv,
                                                          p->w_desc, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                                                          &returned, perf);
    const char *query = b->deterministic ? "cudnnGetConvolutionBackwardFilterAlgorithm_v7"
                                         : "cudnnFindConvolutionBackwardFilterAlgorithm";
    if (!query_ok(status, precision, query, why)) return 0;
    for (int i = choose_algo(b, precision, perf, returned, 0); i >= 0;
         i = choose_algo(b, precision, perf, returned, i + 1)) {
        p->bwd_filter_algo = perf[i].algo;
        CUDNN_CHECK(cudnnSetConvolutionMathType(p->bwd_filter_conv, run_math_type(precision, perf[i].mathType)));
        status = cudnnGetConvolutionBackwardFilterWorkspaceSize(b->cudnn, p->x_desc, p->y_desc, p->bwd_filter_conv,
                                                                p->w_desc, p->bwd_filter_algo,
                                                                &p->bwd_filter_workspace);
        if (!query_ok(status, precision, "cudnnGetConvolutionBackwardFilterWorkspaceSize", why)) return 0;
        if (p->bwd_filter_workspace <= CONV_MAX_WORKSPACE) return 1;   // the real size, not the list's estimate
    }
    return none_acceptable(b, precision, "backward-filter", returned, why);
}

const char *cuda_conv_choose_algorithms(CudaBackend *b, ConvPlan *p, Precision precision, char *why) {
    if (!choose_forward(b, p, precision, why)) return "forward";
    if (!choose_backward_data(b, p, precision, why)) return "backward-data";
    if (!choose_backward_filter(b, p, precision, why)) return "backward-filter";
    return NULL;
}

void cuda_conv_describe(ConvPlan *p, Precision precision) {
    const ConvShape *s = &p->shape;
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
    const cudnnDataType_t type = precision == PRECISION_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x_desc, CUDNN_TENSOR_NCHW, type, s->batch, x_c, x_h, x_w));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->y_desc, CUDNN_TENSOR_NCHW, type, s->batch, y_c, y_h, y_w));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w_desc, type, CUDNN_TENSOR_NCHW, filter_k, filter_c, s->kernel,
                                           s->kernel));
    const cudnnMathType_t query_math = precision == PRECISION_FP32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
    cudnnConvolutionDescriptor_t convs[3] = {p->fwd_conv, p->bwd_data_conv, p->bwd_filter_conv};
    for (int i = 0; i < 3; i++) {
        CUDNN_CHECK(cudnnSetConvolution2dDescriptor(convs[i], s->pad, s->pad, s->stride, s->stride, 1, 1,
                                                    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
        CUDNN_CHECK(cudnnSetConvolutionMathType(convs[i], query_math));
    }

    // cuDNN must agree on the output size, or our shape formula and its descriptors disagree.
    int n, c, h, w;
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->fwd_conv, p->x_desc, p->w_desc, &n, &c, &h, &w));
    CHECK(n == s->batch && c == y_c && h == y_h && w == y_w,
          "conv_prepare: cuDNN computes a %dx%dx%dx%d result for %s %d->%d k%d s%d p%d on %dx%d, expected %dx%dx%dx%d",
          n, c, h, w, cuda_conv_kind(s), s->in_channels, s->out_channels, s->kernel, s->stride, s->pad, s->in_height,
          s->in_width, s->batch, y_c, y_h, y_w);
}
