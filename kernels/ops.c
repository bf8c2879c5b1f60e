// ops.c: backend-independent helpers of ops.h and the choice of backend.
#include "ops.h"

#include <stdlib.h>
#include <string.h>

#include "../src/core/common.h"

ConvShape conv_shape(int batch, int in_channels, int in_height, int in_width, int out_channels,
                     int kernel, int stride, int pad, int transposed, int has_bias) {
    ConvShape s;
    memset(&s, 0, sizeof s);
    s.batch = batch;
    s.in_channels = in_channels;
    s.in_height = in_height;
    s.in_width = in_width;
    s.out_channels = out_channels;
    s.kernel = kernel;
    s.stride = stride;
    s.pad = pad;
    s.transposed = transposed;
    s.has_bias = has_bias;
    s.plan = -1;
    if (transposed) {
        s.out_height = (in_height - 1) * stride - 2 * pad + kernel;
        s.out_width = (in_width - 1) * stride - 2 * pad + kernel;
    } else {
        s.out_height = (in_height + 2 * pad - kernel) / stride + 1;
        s.out_width = (in_width + 2 * pad - kernel) / stride + 1;
    }
    CHECK(s.out_height > 0 && s.out_width > 0,
          "convolution with kernel %d stride %d pad %d does not fit a %dx%d input; "
          "use larger images or fewer downsampling layers", kernel, stride, pad, in_height, in_width);
    return s;
}

void conv_shape_set_output_padding(ConvShape *s, int output_padding) {
    CHECK(s->transposed, "output_padding %d on a Conv2d (%d->%d k%d s%d); only ConvTranspose2d has one",
          output_padding, s->in_channels, s->out_channels, s->kernel, s->stride);
    CHECK(output_padding >= 0 && output_padding < s->stride,
          "output_padding %d of ConvTranspose2d %d->%d k%d s%d must be >= 0 and smaller than the stride",
          output_padding, s->in_channels, s->out_channels, s->kernel, s->stride);
    s->out_height += output_padding - s->output_padding;
    s->out_width += output_padding - s->output_padding;
    s->output_padding = output_padding;
}

size_t conv_weight_count(const ConvShape *s) {
    return (size_t)s->out_channels * (size_t)s->in_channels * (size_t)s->kernel * (size_t)s->kernel;
}

size_t conv_in_count(const ConvShape *s) {
    return (size_t)s->batch * (size_t)s->in_channels * (size_t)s->in_height * (size_t)s->in_width;
}

size_t conv_out_count(const ConvShape *s) {
    return (size_t)s->batch * (size_t)s->out_channels * (size_t)s->out_height * (size_t)s->out_width;
}

#ifndef VQ_HAVE_CUDA
int cuda_backend_compiled(void) { return 0; }
int cuda_device_count(void) { return 0; }
void cuda_context_init(OpsContext *ctx, int device_index, Precision precision, int deterministic) {
    (void)ctx; (void)device_index; (void)precision; (void)deterministic;
    fatal("this build has no CUDA backend (nvcc was not found at configure time); "
          "use device: cpu, or rebuild with the CUDA toolkit installed");
}
void cuda_context_destroy(OpsContext *ctx) { (void)ctx; }
void cuda_context_describe(const OpsContext *ctx, OpsDescription *out) { (void)ctx; (void)out; }
#endif

void ops_context_init(OpsContext *ctx, const char *device, int device_index, int threads, Precision precision,
                      int deterministic) {
    memset(ctx, 0, sizeof *ctx);
    int want_cuda;
    if (strcmp(device, "cpu") == 0) {
        want_cuda = 0;
    } else if (strcmp(device, "cuda") == 0) {
        if (!cuda_backend_compiled())
            fatal("device 'cuda' asked for, but this build has no CUDA backend; "
                  "rebuild with nvcc on PATH or set train.device=cpu");
        if (cuda_device_count() == 0)
            fatal("device 'cuda' asked for, but no GPU is visible (CUDA_VISIBLE_DEVICES=%s); "
                  "set train.device=cpu or run on a GPU node",
                  getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "unset");
        want_cuda = 1;
    } else if (strcmp(device, "auto") == 0) {
        want_cuda = cuda_backend_compiled() && cuda_device_count() > 0;
    } else {
        fatal("unknown device '%s'; expected auto, cpu or cuda", device);
    }
    ctx->precision = precision;
    ctx->deterministic = deterministic;
    if (want_cuda) {
        ctx->kind = BACKEND_CUDA;
        ctx->device_index = device_index;
        cuda_context_init(ctx, device_index, precision, deterministic);
    } else {
        ctx->kind = BACKEND_CPU;
        cpu_context_init(ctx, threads);
    }
}

void ops_context_init_with_conv(OpsContext *ctx, const char *device, int device_index, int threads,
                                Precision precision, int deterministic, CpuConv cpu_conv) {
    ops_context_init(ctx, device, device_index, threads, precision, deterministic);
    ctx->cpu_conv = cpu_conv;
    if (ctx->kind != BACKEND_CPU || precision != PRECISION_BF16) return;
    // On the CPU only oneDNN has bf16 convolutions, and only fast ones with AVX512-BF16: refuse
    // here, before the model is built, rather than run 100x slower reference kernels.
    if (cpu_conv == CPU_CONV_IM2COL)
        fatal("train.precision=bf16 on the CPU runs oneDNN's bf16 convolutions, but train.cpu_conv is im2col%s; "
              "set train.cpu_conv=onednn, or train.precision=fp32",
              onednn_compiled() ? "" : " (this build has no oneDNN: install libdnnl-dev and rebuild)");
    if (!onednn_bf16_supported())
        fatal("train.precision=bf16 on the CPU needs AVX512-BF16, which this CPU lacks (oneDNN's ISA here: %s); "
              "set train.precision=fp32", onednn_isa_name());
}

int onednn_compiled(void) {
#ifdef VQ_HAVE_ONEDNN
    return 1;
#else
    return 0;
#endif
}

CpuConv cpu_conv_from_name(const char *name) {
    if (strcmp(name, "auto") == 0) return onednn_compiled() ? CPU_CONV_ONEDNN : CPU_CONV_IM2COL;
    if (strcmp(name, "im2col") == 0) return CPU_CONV_IM2COL;
    if (strcmp(name, "onednn") != 0)
        fatal("unknown CPU convolution engine '%s'; expected auto, onednn or im2col (train.cpu_conv)", name);
    if (!onednn_compiled())
        fatal("train.cpu_conv=onednn, but this build has no oneDNN (libdnnl-dev was missing at configure time); "
              "install it (tools/install_deps.sh) and rebuild, or use train.cpu_conv=im2col");
    return CPU_CONV_ONEDNN;
}

const char *cpu_conv_name(CpuConv conv) { return conv == CPU_CONV_IM2COL ? "im2col" : "onednn"; }

void ops_context_destroy(OpsContext *ctx) {
    if (ctx->graph && ctx->ops->graph_destroy) ctx->ops->graph_destroy(ctx);
    if (ctx->kind == BACKEND_CUDA) cuda_context_destroy(ctx);
    else cpu_context_destroy(ctx);
    memset(ctx, 0, sizeof *ctx);
}

void ops_context_describe(const OpsContext *ctx, OpsDescription *out) {
    memset(out, 0, sizeof *out);
    if (ctx->kind == BACKEND_CUDA) cuda_context_describe(ctx, out);
    else cpu_context_describe(ctx, out);
}
