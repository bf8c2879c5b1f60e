// test_ops_conv.c: the CPU Conv2d / ConvTranspose2d (kernels/cpu/cpu_conv*.c), both engines (im2col
// + OpenBLAS and oneDNN), against a naive 7-loop reference in double, and their gradients against
// that reference's analytic gradients and against central finite differences of the
// implementation's own forward.
//
// Tolerances (data uniform in [-1, 1]; the worst errors measured are printed by the test):
// - forward, din, dweight, dbias vs the double reference: max|got - ref| / max|ref| <= 1e-5
//   (float gemms summing up to ~1500 products per output in a blocked order; measured <= 7e-7).
// - finite differences: the loss L = sum(out * R), R random, is linear in any single entry of the
//   input, weight or bias, so central differences have no truncation error at any step; a large
//   step h = 0.5 makes the float rounding of the forward small next to the difference. The loss
//   is summed in double. |fd - grad| <= 2e-5 max|grad of that tensor| (measured <= 2e-6).
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/common.h"
#include "core/rng.h"
#include "kernels/cpu/cpu_conv_internal.h"
#include "kernels/ops.h"
#include "test_util.h"

enum { FD_SAMPLES = 6 };
static const double REF_TOL = 1e-5, FD_TOL = 2e-5, FD_STEP = 0.5;

static void fill_uniform(float *x, size_t n, uint64_t a, uint32_t b) {
    Rng r = rng_stream(1234, RNG_PURPOSE_TEST, a, b);
    for (size_t i = 0; i < n; i++) x[i] = rng_uniform_range(&r, -1.0f, 1.0f);
}

static void fill_nan(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

// The naive reference, in double: every (batch, out channel, in channel, kernel row, kernel column,
// row, column) product of the convolution, visited once. Conv2d iterates over output pixels and
// reads the input pixel under the kernel; ConvTranspose2d iterates over input pixels and adds into
// the output pixel under the kernel (its definition). Forward when out is not NULL (out must be
// zeroed), backward (din, dw, dbias += ...) when dout is not NULL (they must be zeroed).
static void ref_conv(const ConvShape *s, const float *in, const float *w, const float *bias, double *out,
                     const float *dout, double *din, double *dw, double *dbias) {
    int ci_n = s->in_channels, co_n = s->out_channels, k = s->kernel, st = s->stride, p = s->pad;
    int h = s->in_height, wd = s->in_width, ho = s->out_height, wo = s->out_width;
    int rows = s->transposed ? h : ho, cols = s->transposed ? wd : wo;   // the pixels iterated over
    for (int n = 0; n < s->batch; n++)
        for (int co = 0; co < co_n; co++)
            for (int ci = 0; ci < ci_n; ci++)
                for (int ki = 0; ki < k; ki++)
                    for (int kj = 0; kj < k; kj++)
                        for (int y = 0; y < rows; y++)
                            for (int x = 0; x < cols; x++) {
                                int iy, ix, oy, ox;
                                if (s->transposed) {
                                    iy = y, ix = x, oy = y * st - p + ki, ox = x * st - p + kj;
                                } else {
                                    oy = y, ox = x, iy = y * st - p + ki, ix = x * st - p + kj;
                                }
                                if (iy < 0 || iy >= h || ix < 0 || ix >= wd || oy < 0 || oy >= ho || ox < 0 || ox >= wo)
                                    continue;
                                size_t ii = (((size_t)n * ci_n + ci) * h + iy) * wd + ix;
                                size_t oi = (((size_t)n * co_n + co) * ho + oy) * wo + ox;
                                size_t wi = s->transposed ? (((size_t)ci * co_n + co) * k + ki) * k + kj
                                                          : (((size_t)co * ci_n + ci) * k + ki) * k + kj;
                                if (out) out[oi] += (double)in[ii] * (double)w[wi];
                                if (dout) {
                                    din[ii] += (double)w[wi] * (double)dout[oi];
                                    dw[wi] += (double)in[ii] * (double)dout[oi];
                                }
                            }
    size_t hw = (size_t)ho * (size_t)wo;
    if (s->has_bias)
        for (int n = 0; n < s->batch; n++)
            for (int co = 0; co < co_n; co++)
                for (size_t i = 0; i < hw; i++) {
                    size_t oi = ((size_t)n * co_n + co) * hw + i;
                    if (out) out[oi] += bias[co];
                    if (dout) dbias[co] += dout[oi];
                }
}

static float *to_float(const double *x, size_t n) {
    float *f = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) f[i] = (float)x[i];
    return f;
}

static double max_abs(const float *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

// L = sum(out * r) in double, with out from the implementation's forward.
static double loss(OpsContext *ctx, const ConvShape *s, const float *in, const float *w, const float *bias, float *out,
                   const float *r) {
    ctx->ops->conv_forward(ctx, s, in, w, bias, out);
    double l = 0.0;
    size_t n = conv_out_count(s);
    for (size_t i = 0; i < n; i++) l += (double)out[i] * (double)r[i];
    return l;
}

// Central differences of L at FD_SAMPLES sampled entries of x (one of in, w, bias), compared with
// grad. Returns the largest error relative to max|grad|.
static double fd_check(OpsContext *ctx, const ConvShape *s, float *in, float *w, float *bias, float *x, size_t count,
                       const float *grad, float *out, const float *r, uint64_t seed) {
    Rng rng = rng_stream(99, RNG_PURPOSE_TEST, seed, 0);
    double scale = max_abs(grad, count), worst = 0.0;
    if (scale == 0.0) scale = 1.0;
    for (int t = 0; t < FD_SAMPLES; t++) {
        size_t i = rng_below(&rng, (uint32_t)count);
        float saved = x[i];
        x[i] = (float)(saved + FD_STEP);
        double lp = loss(ctx, s, in, w, bias, out, r);
        x[i] = (float)(saved - FD_STEP);
        double lm = loss(ctx, s, in, w, bias, out, r);
        x[i] = saved;
        double fd = (lp - lm) / (2.0 * FD_STEP);
        double err = fabs(fd - grad[i]) / scale;
        if (err > worst) worst = err;
    }
    return worst;
}

typedef struct {
    double fwd, din, dw, dbias, fd;   // worst errors seen, for the summary line
} Worst;

static void note(double *worst, double err) {
    if (err > *worst || isnan(err)) *worst = err;
}

// The forward and the gradients of the implementation (out, din, dw, dbias) against the double
// reference of the same inputs (r is the output's gradient).
static void compare_with_reference(TestCounts *c, const ConvShape *shape, const char *name, const float *in,
                                   const float *w, const float *bias, const float *r, const float *out,
                                   const float *din, const float *dw, const float *dbias, Worst *worst) {
    ConvShape s = *shape;
    size_t n_in = conv_in_count(&s), n_out = conv_out_count(&s), n_w = conv_weight_count(&s);
    size_t n_b = (size_t)s.out_channels;
    double *ref_out = xcalloc(n_out, sizeof(double)), *ref_din = xcalloc(n_in, sizeof(double));
    double *ref_dw = xcalloc(n_w, sizeof(double)), *ref_db = xcalloc(n_b, sizeof(double));
    ref_conv(&s, in, w, bias, ref_out, r, ref_din, ref_dw, ref_db);
    float *f_out = to_float(ref_out, n_out), *f_din = to_float(ref_din, n_in), *f_dw = to_float(ref_dw, n_w);
    float *f_db = to_float(ref_db, n_b);

    double e = test_max_rel_error(out, f_out, n_out);
    note(&worst->fwd, e);
    EXPECT(c, e <= REF_TOL, "%s: forward rel error %.3g > %.3g", name, e, REF_TOL);
    e = test_max_rel_error(din, f_din, n_in);
    note(&worst->din, e);
    EXPECT(c, e <= REF_TOL, "%s: din rel error %.3g > %.3g", name, e, REF_TOL);
    e = test_max_rel_error(dw, f_dw, n_w);
    note(&worst->dw, e);
    EXPECT(c, e <= REF_TOL, "%s: dweight rel error %.3g > %.3g", name, e, REF_TOL);
    if (s.has_bias) {
        e = test_max_rel_error(dbias, f_db, n_b);
        note(&worst->dbias, e);
        EXPECT(c, e <= REF_TOL, "%s: dbias rel error %.3g > %.3g", name, e, REF_TOL);
    }

    free(ref_out), free(ref_din), free(ref_dw), free(ref_db), free(f_out), free(f_din), free(f_dw), free(f_db);
}

static void check_shape(TestCounts *c, OpsContext *ctx, ConvShape s, const char *name, uint64_t seed, Worst *worst) {
    ConvShape prepared = s;
    prepared.plan = 1234;
    size_t ws = ctx->ops->conv_prepare(ctx, &prepared);
    if (ctx->cpu_conv == CPU_CONV_IM2COL || conv_is_dense(&s))   // dense layers are gemms in either engine
        EXPECT(c, prepared.plan == -1, "%s: im2col's conv_prepare left plan %d, want -1", name, prepared.plan);
    else
        EXPECT(c, prepared.plan >= 0 && prepared.plan != 1234, "%s: oneDNN's conv_prepare left plan %d", name,
               prepared.plan);
    s.plan = prepared.plan;
    // A workspace of exactly the bytes asked for, so that AddressSanitizer / valgrind catch any use
    // beyond it (reserve_workspace would keep a larger one from an earlier shape).
    free(ctx->workspace);
    ctx->workspace = ws ? xmalloc(ws) : NULL;
    ctx->workspace_bytes = ws;

    size_t n_in = conv_in_count(&s), n_out = conv_out_count(&s), n_w = conv_weight_count(&s);
    size_t n_b = (size_t)s.out_channels;
    float *in = xmalloc(n_in * sizeof(float)), *w = xmalloc(n_w * sizeof(float));
    float *bias = s.has_bias ? xmalloc(n_b * sizeof(float)) : NULL;
    float *r = xmalloc(n_out * sizeof(float)), *out = xmalloc(n_out * sizeof(float));
    float *out2 = xmalloc(n_out * sizeof(float));
    float *din = xmalloc(n_in * sizeof(float)), *dw = xmalloc(n_w * sizeof(float)), *dw2 = xmalloc(n_w * sizeof(float));
    float *dbias = s.has_bias ? xmalloc(n_b * sizeof(float)) : NULL;
    fill_uniform(in, n_in, seed, 0);
    fill_uniform(w, n_w, seed, 1);
    if (bias) fill_uniform(bias, n_b, seed, 2);
    fill_uniform(r, n_out, seed, 3);

    // Outputs start as NaN: anything not overwritten shows up.
    fill_nan(out, n_out);
    fill_nan(din, n_in);
    fill_nan(dw, n_w);
    if (dbias) fill_nan(dbias, n_b);
    ctx->ops->conv_forward(ctx, &s, in, w, bias, out);
    ctx->ops->conv_backward(ctx, &s, in, w, r, din, dw, dbias);

    compare_with_reference(c, &s, name, in, w, bias, r, out, din, dw, dbias, worst);

    // Deterministic: a second forward is bitwise equal. din = NULL (a first layer) gives the same
    // dweight and dbias.
    ctx->ops->conv_forward(ctx, &s, in, w, bias, out2);
    EXPECT(c, memcmp(out, out2, n_out * sizeof(float)) == 0, "%s: two forwards differ", name);
    fill_nan(dw2, n_w);
    float *db2 = s.has_bias ? xmalloc(n_b * sizeof(float)) : NULL;
    if (db2) fill_nan(db2, n_b);
    ctx->ops->conv_backward(ctx, &s, in, w, r, NULL, dw2, db2);
    EXPECT(c, memcmp(dw, dw2, n_w * sizeof(float)) == 0, "%s: dweight differs with din = NULL", name);
    if (db2) EXPECT(c, memcmp(dbias, db2, n_b * sizeof(float)) == 0, "%s: dbias differs with din = NULL", name);

    // Finite differences of the implementation's forward at sampled entries.
    double e = fd_check(ctx, &s, in, w, bias, in, n_in, din, out2, r, seed * 3 + 0);
    note(&worst->fd, e);
    EXPECT(c, e <= FD_TOL, "%s: finite-difference din error %.3g > %.3g", name, e, FD_TOL);
    e = fd_check(ctx, &s, in, w, bias, w, n_w, dw, out2, r, seed * 3 + 1);
    note(&worst->fd, e);
    EXPECT(c, e <= FD_TOL, "%s: finite-difference dweight error %.3g > %.3g", name, e, FD_TOL);
    if (s.has_bias) {
        e = fd_check(ctx, &s, in, w, bias, bias, n_b, dbias, out2, r, seed * 3 + 2);
        note(&worst->fd, e);
        EXPECT(c, e <= FD_TOL, "%s: finite-difference dbias error %.3g > %.3g", name, e, FD_TOL);
    }

    free(in), free(w), free(bias), free(r), free(out), free(out2), free(din), free(dw), free(dw2), free(dbias);
    free(db2);
}

typedef struct {
const char *name;
int batch, cin, h, w, cout, k, stride, pad, transposed, bias, output_padding;
} ConvCase;

static const ConvCase CASES[] = {
    // small shapes: both kinds, bias or not, stride 1/2, pad 0/1, kernel 1/3/4, odd and non-square
    {"conv k3 s1 p1 5x7", 3, 3, 5, 7, 4, 3, 1, 1, 0, 1, 0},
    {"conv k3 s1 p0 6x5 nobias", 1, 2, 6, 5, 3, 3, 1, 0, 0, 0, 0},
    {"conv k4 s2 p1 9x7", 3, 2, 9, 7, 5, 4, 2, 1, 0, 1, 0},
    {"conv k4 s2 p1 8x8 b1", 1, 3, 8, 8, 4, 4, 2, 1, 0, 1, 0},
    {"conv k3 s2 p0 7x9 nobias", 3, 3, 7, 9, 2, 3, 2, 0, 0, 0, 0},
    {"conv k3 s2 p1 5x5", 3, 2, 5, 5, 3, 3, 2, 1, 0, 1, 0},
    {"conv k1 s1 p0 4x6", 3, 5, 4, 6, 3, 1, 1, 0, 0, 1, 0},
    {"conv k1 s1 p0 3x3 b1 nobias", 1, 4, 3, 3, 6, 1, 1, 0, 0, 0, 0},
    {"conv k1 s2 p0 5x4", 3, 3, 5, 4, 2, 1, 2, 0, 0, 1, 0},
    {"conv k1 s1 p1 3x4", 3, 2, 3, 4, 3, 1, 1, 1, 0, 1, 0},
    {"conv k4 s1 p1 6x7", 3, 2, 6, 7, 3, 4, 1, 1, 0, 1, 0},
    // stride 1 with out <= in channels: the data gradient as a flipped-kernel convolution
    {"conv k3 s1 p0 7x5 5->3", 3, 5, 7, 5, 3, 3, 1, 0, 0, 1, 0},
    {"conv k4 s1 p1 6x5 4->4", 3, 4, 6, 5, 4, 4, 1, 1, 0, 0, 0},
    {"conv k2 s1 p1 4x5 3->2", 3, 3, 4, 5, 2, 2, 1, 1, 0, 1, 0},
    {"conv k3 s1 p2 4x4 4->2 b1", 1, 4, 4, 4, 2, 3, 1, 2, 0, 1, 0},
    {"conv k3 s1 p3 3x4 3->2", 3, 3, 3, 4, 2, 3, 1, 3, 0, 1, 0},
    {"convT k4 s2 p1 4x3", 3, 3, 4, 3, 2, 4, 2, 1, 1, 1, 0},
    {"convT k4 s2 p1 5x5 b1 nobias", 1, 2, 5, 5, 3, 4, 2, 1, 1, 0, 0},
    {"convT k3 s1 p1 5x6", 3, 4, 5, 6, 3, 3, 1, 1, 1, 1, 0},
    {"convT k3 s2 p0 3x4", 3, 2, 3, 4, 3, 3, 2, 0, 1, 1, 0},
    {"convT k3 s2 p1 4x5 nobias", 3, 3, 4, 5, 2, 3, 2, 1, 1, 0, 0},
    {"convT k1 s1 p0 4x5", 3, 4, 4, 5, 3, 1, 1, 0, 1, 1, 0},
    {"convT k1 s1 p0 3x3 b1", 1, 3, 3, 3, 5, 1, 1, 0, 1, 1, 0},
    {"convT k1 s2 p0 3x3", 3, 2, 3, 3, 3, 1, 2, 0, 1, 1, 0},
    {"convT k4 s1 p1 4x5", 3, 3, 4, 5, 2, 4, 1, 1, 1, 1, 0},
    // stride 3 (three phases per axis, pads not congruent mod the stride)
    {"conv k3 s3 p1 8x7", 3, 2, 8, 7, 3, 3, 3, 1, 0, 1, 0},
    {"conv k5 s3 p2 9x10 nobias", 3, 2, 9, 10, 3, 5, 3, 2, 0, 0, 0},
    {"convT k3 s3 p1 3x4", 3, 3, 3, 4, 2, 3, 3, 1, 1, 1, 0},
    {"convT k5 s3 p2 4x3", 3, 2, 4, 3, 3, 5, 3, 2, 1, 1, 0},
    // several chunks with a short last one (the chunk is a function of the shape)
    {"conv k3 s1 p1 8x8 batch 11", 11, 6, 8, 8, 5, 3, 1, 1, 0, 1, 0},
    {"convT k4 s2 p1 8x8 batch 11", 11, 5, 8, 8, 4, 4, 2, 1, 1, 1, 0},
    {"conv k1 s1 p0 8x8 batch 13", 13, 7, 8, 8, 6, 1, 1, 0, 0, 1, 0},
    {"conv k4 s2 p1 32x32 batch 5", 5, 3, 32, 32, 4, 4, 2, 1, 0, 1, 0},
    // the CIFAR model's layers (resnet arch, h = 128, D = 64) at a small batch
    {"cifar enc conv1 3->64 k4s2p1", 2, 3, 32, 32, 64, 4, 2, 1, 0, 1, 0},
    {"cifar enc conv2 64->128 k4s2p1", 2, 64, 16, 16, 128, 4, 2, 1, 0, 1, 0},
    {"cifar enc conv3 128->128 k3p1", 2, 128, 8, 8, 128, 3, 1, 1, 0, 1, 0},
    {"cifar res 128->32 k3p1", 3, 128, 8, 8, 32, 3, 1, 1, 0, 0, 0},
    {"cifar res 32->128 k1", 3, 32, 8, 8, 128, 1, 1, 0, 0, 0, 0},
    {"cifar pre-vq 128->64 k1", 3, 128, 8, 8, 64, 1, 1, 0, 0, 1, 0},
    {"cifar dec conv1 64->128 k3p1", 2, 64, 8, 8, 128, 3, 1, 1, 0, 1, 0},
    {"cifar dec convT1 128->64 k4s2p1", 2, 128, 8, 8, 64, 4, 2, 1, 1, 1, 0},
    {"cifar dec convT2 64->3 k4s2p1", 2, 64, 16, 16, 3, 4, 2, 1, 1, 1, 0},
    // 28x28 single-channel (MNIST) shapes: 28 -> 14 -> 7 and back
    {"mnist conv 1->16 k4s2p1 28", 3, 1, 28, 28, 16, 4, 2, 1, 0, 1, 0},
    {"mnist conv 16->32 k4s2p1 14", 3, 16, 14, 14, 32, 4, 2, 1, 0, 1, 0},
    {"mnist conv 32->32 k3p1 7", 3, 32, 7, 7, 32, 3, 1, 1, 0, 1, 0},
    {"mnist conv 32->8 k7 7->1", 3, 32, 7, 7, 8, 7, 1, 0, 0, 1, 0},
    {"mnist convT 8->32 k7 1->7", 3, 8, 1, 1, 32, 7, 1, 0, 1, 1, 0},
    {"mnist convT 32->16 k4s2p1 7", 3, 32, 7, 7, 16, 4, 2, 1, 1, 1, 0},
    {"mnist convT 16->1 k4s2p1 14", 1, 16, 14, 14, 1, 4, 2, 1, 1, 1, 0},
    // ConvTranspose2d output_padding: rows and columns only the bias reaches, or a tap at stride 3
    {"convT k3 s2 p1 op1 4x5", 3, 3, 4, 5, 2, 3, 2, 1, 1, 1, 1},
    {"convT k4 s2 p1 op1 3x3 nobias", 3, 2, 3, 3, 3, 4, 2, 1, 1, 0, 1},
    {"convT k1 s2 p0 op1 3x4", 3, 3, 3, 4, 2, 1, 2, 0, 1, 1, 1},
    {"convT k3 s3 p1 op2 3x4", 3, 2, 3, 4, 3, 3, 3, 1, 1, 1, 2},
    {"convT k5 s3 p2 op1 4x3 b1", 1, 3, 4, 3, 2, 5, 3, 2, 1, 1, 1},
    // the small MNIST model: 28 -> 14 -> 7 -> 1 and back with output_padding 1
    {"mnist2 conv 1->16 k3s2p1 28", 3, 1, 28, 28, 16, 3, 2, 1, 0, 1, 0},
    {"mnist2 conv 16->32 k3s2p1 14", 3, 16, 14, 14, 32, 3, 2, 1, 0, 1, 0},
    {"mnist2 conv 32->64 k7 7->1", 3, 32, 7, 7, 64, 7, 1, 0, 0, 1, 0},
    {"mnist2 convT 64->32 k7 1->7", 3, 64, 1, 1, 32, 7, 1, 0, 1, 1, 0},
    {"mnist2 convT 32->16 k3s2p1op1 7->14", 3, 32, 7, 7, 16, 3, 2, 1, 1, 1, 1},
    {"mnist2 convT 16->1 k3s2p1op1 14->28", 2, 16, 14, 14, 1, 3, 2, 1, 1, 1, 1},
    // dense layers (the kernel covers the image: plain gemms in either engine) over several chunks
    {"dense conv k5 5->1 batch 11", 11, 3, 5, 5, 4, 5, 1, 0, 0, 1, 0},
    {"dense convT k5 1->5 batch 11", 11, 4, 1, 1, 3, 5, 1, 0, 1, 1, 0},
    {"dense conv k1 1x1 nobias", 5, 6, 1, 1, 2, 1, 1, 0, 0, 0, 0},
    {"dense convT k3 1->3 nobias", 3, 2, 1, 1, 5, 3, 1, 0, 1, 0, 0},
};

// A too-small workspace must stop with a message, not write past it: run the forward in a child.
static void check_workspace_guard(TestCounts *c) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork failed");
    if (pid == 0) {
        OpsContext ctx;
        ops_context_init(&ctx, "cpu", 0, 1, PRECISION_FP32, 0);
        ConvShape s = conv_shape(2, 4, 6, 6, 5, 3, 1, 1, 0, 1);
        size_t ws = ctx.ops->conv_prepare(&ctx, &s);
        ctx.ops->reserve_workspace(&ctx, ws);
        ctx.workspace_bytes = ws - 4;   // pretend it is one float short
        float *in = xcalloc(conv_in_count(&s), sizeof(float)), *w = xcalloc(conv_weight_count(&s), sizeof(float));
        float *b = xcalloc(5, sizeof(float)), *out = xcalloc(conv_out_count(&s), sizeof(float));
        fprintf(stderr, "(expected error follows)\n");
        ctx.ops->conv_forward(&ctx, &s, in, w, b, out);
        _exit(0);   // not reached when the guard works
    }
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT(c, WIFEXITED(status) && WEXITSTATUS(status) == EXIT_ERROR,
           "forward with a too-small workspace did not stop with EXIT_ERROR (status %d)", status);
}

// Every case against the reference on one engine, with its own context (an engine is chosen before
// the first conv_prepare).
static void check_engine(TestCounts *c, CpuConv engine) {
    OpsContext ctx;
    ops_context_init_with_conv(&ctx, "cpu", 0, 2, PRECISION_FP32, 0, engine);
    Worst worst = {0, 0, 0, 0, 0};
    int ncases = (int)(sizeof CASES / sizeof CASES[0]);
    for (int i = 0; i < ncases; i++) {
        const ConvCase *cc = &CASES[i];
        ConvShape s = conv_shape(cc->batch, cc->cin, cc->h, cc->w, cc->cout, cc->k, cc->stride, cc->pad,
                                 cc->transposed, cc->bias);
        if (cc->output_padding) conv_shape_set_output_padding(&s, cc->output_padding);
        check_shape(c, &ctx, s, cc->name, (uint64_t)i + 1, &worst);
    }
    printf("%s: worst relative errors vs reference: forward %.2g, din %.2g, dweight %.2g, dbias %.2g; "
           "finite differences %.2g\n", cpu_conv_name(engine), worst.fwd, worst.din, worst.dw, worst.dbias, worst.fd);
    free(ctx.workspace);   // check_shape's exact-size workspace is ours, not the backend's
    ctx.workspace = NULL;
    ctx.workspace_bytes = 0;
    ops_context_destroy(&ctx);
}

int main(void) {
    TestCounts c = {0, 0};
    check_engine(&c, CPU_CONV_IM2COL);
    if (onednn_compiled()) check_engine(&c, CPU_CONV_ONEDNN);
    else printf("SKIP oneDNN engine: this build has no oneDNN (counted as skipped, not passed)\n");
    check_workspace_guard(&c);
    return test_finish("test_ops_conv", &c);
}
