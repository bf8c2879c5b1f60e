// gpu_run.h: running ops on either backend for the tests/gpu comparisons (on the CPU backend
// "device" memory is host memory, so the same code runs an op on either context): host <-> device
// copies, a bitwise comparison, and one convolution's forward and backward with its results
// downloaded. Shared by test_gpu_ops.c, test_gpu_quantizer.c, test_gpu_conv.c and
// test_gpu_conv_precision.c.
#pragma once
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "kernels/ops.h"

// Each test file uses some of these.
#pragma GCC diagnostic ignored "-Wunused-function"

static float *alloc_floats(size_t n) { return xmalloc((n ? n : 1) * sizeof(float)); }

static double max_d(double a, double b) { return a > b ? a : b; }

static void *upload(OpsContext *ctx, const void *host, size_t bytes) {
    void *d = ctx->ops->alloc(ctx, bytes);
    ctx->ops->to_device(ctx, d, host, bytes);
    return d;
}

static float *download(OpsContext *ctx, const float *d, size_t n) {
    float *h = alloc_floats(n);
    ctx->ops->to_host(ctx, h, d, n * sizeof(float));
    return h;
}

static float download_scalar(OpsContext *ctx, const float *d) {
    float v;
    ctx->ops->to_host(ctx, &v, d, sizeof v);
    return v;
}

// Bitwise equal, except that any NaN equals any NaN. The first differing index or -1.
static long first_difference(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) && isnan(b[i])) continue;
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) return (long)i;
    }
    return -1;
}

// ---- one convolution -------------------------------------------------------------------------

typedef struct {
    float *out, *din, *dweight, *dbias;   // host copies; din NULL when not asked for, dbias when no bias
} ConvResult;

static void result_free(ConvResult *r) {
    free(r->out);
    free(r->din);
    free(r->dweight);
    free(r->dbias);
    memset(r, 0, sizeof *r);
}

static int results_identical(const ConvShape *s, const ConvResult *a, const ConvResult *b) {
    return first_difference(a->out, b->out, conv_out_count(s)) < 0 &&
           (!a->din || first_difference(a->din, b->din, conv_in_count(s)) < 0) &&
           first_difference(a->dweight, b->dweight, conv_weight_count(s)) < 0 &&
           (!a->dbias || first_difference(a->dbias, b->dbias, (size_t)s->out_channels) < 0);
}

// Prepare (returning conv_prepare's workspace bytes), forward and backward on ctx (the CPU or the
// GPU: on the CPU backend "device" memory is host memory). din is computed when want_din.
static size_t run_conv(OpsContext *ctx, ConvShape s, int want_din, const float *in, const float *weight,
                       const float *bias, const float *dout, ConvResult *res) {
    size_t nin = conv_in_count(&s), nw = conv_weight_count(&s), nout = conv_out_count(&s);
    size_t nb = (size_t)s.out_channels;
    size_t ws = ctx->ops->conv_prepare(ctx, &s);
    ctx->ops->reserve_workspace(ctx, ws);
    float *d_in = upload(ctx, in, nin * sizeof(float)), *d_weight = upload(ctx, weight, nw * sizeof(float));
    float *d_bias = upload(ctx, bias, nb * sizeof(float)), *d_dout = upload(ctx, dout, nout * sizeof(float));
    float *d_out = ctx->ops->alloc(ctx, nout * sizeof(float)), *d_din = ctx->ops->alloc(ctx, nin * sizeof(float));
    float *d_dweight = ctx->ops->alloc(ctx, nw * sizeof(float)), *d_dbias = ctx->ops->alloc(ctx, nb * sizeof(float));
    ctx->ops->fill(ctx, d_out, NAN, nout);
    ctx->ops->fill(ctx, d_din, NAN, nin);
    ctx->ops->fill(ctx, d_dweight, NAN, nw);
    ctx->ops->fill(ctx, d_dbias, NAN, nb);
    ctx->ops->conv_forward(ctx, &s, d_in, d_weight, s.has_bias ? d_bias : NULL, d_out);
    ctx->ops->conv_backward(ctx, &s, d_in, d_weight, d_dout, want_din ? d_din : NULL, d_dweight,
                            s.has_bias ? d_dbias : NULL);
    res->out = download(ctx, d_out, nout);
    res->din = want_din ? download(ctx, d_din, nin) : NULL;
    res->dweight = download(ctx, d_dweight, nw);
    res->dbias = s.has_bias ? download(ctx, d_dbias, nb) : NULL;
    void *buffers[] = {d_in, d_weight, d_bias, d_dout, d_out, d_din, d_dweight, d_dbias};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) ctx->ops->release(ctx, buffers[i]);
    return ws;
}
