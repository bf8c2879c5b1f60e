// test_ops_attention.c: the CPU spatial attention (kernels/cpu/cpu_attention.c) and Linear
// (kernels/cpu/cpu_linear.c) against naive loops in double, forward and analytic backward, and
// their gradients against central finite differences of their own forward.
//
// Attention shapes: hw from 1 to 64 (the VQModel's mid block at 8x8), c from 1 to 32, scale
// 1/sqrt(c), and a "hot" case whose scores reach ~80 (exp would overflow without subtracting
// the max). Tolerances (normwise; the measured worst is printed): forward, probs and the analytic
// gradients vs double 1e-5, and 1e-4 in the hot case (a float score of ~80 carries an absolute
// error of ~1e-5, which exp turns into that relative error of p: conditioning, not the op);
// finite differences (h = 1e-2) 1e-3 of max|grad|.
#include <string.h>

#include "core/common.h"
#include "grad_check.h"
#include "kernels/ops.h"
#include "test_util.h"

static const double REF_TOL = 1e-5, HOT_TOL = 1e-4, FD_TOL = 1e-3;

typedef struct {
    int n, c, hw;
    float spread;   // of q and k: large makes the softmax nearly one-hot
} AttnCase;

// s, p, out and (with dout) dq, dk, dv of the definition, in double.
static void ref_attention(const AttnCase *ac, float scale, const float *q, const float *k, const float *v,
                          const float *dout, double *p, double *out, double *dq, double *dk, double *dv) {
    const int c = ac->c, hw = ac->hw;
    double *dp = xmalloc((size_t)hw * hw * 8);
    for (int b = 0; b < ac->n; b++) {
        const size_t o = (size_t)b * c * hw;
        double *pb = p + (size_t)b * hw * hw;
        for (int i = 0; i < hw; i++) {
            double m = -INFINITY, sum = 0.0;
            for (int j = 0; j < hw; j++) {
                double s = 0.0;
                for (int ch = 0; ch < c; ch++) s += (double)q[o + ch * hw + i] * k[o + ch * hw + j];
                pb[i * hw + j] = scale * s;
                m = fmax(m, scale * s);
            }
            for (int j = 0; j < hw; j++) sum += pb[i * hw + j] = exp(pb[i * hw + j] - m);
            for (int j = 0; j < hw; j++) pb[i * hw + j] /= sum;
        }
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < hw; i++) {
                double s = 0.0;
                for (int j = 0; j < hw; j++) s += pb[i * hw + j] * v[o + ch * hw + j];
                out[o + ch * hw + i] = s;
            }
        if (!dout) continue;
        for (int i = 0; i < hw; i++) {
            double dot = 0.0;
            for (int j = 0; j < hw; j++) {
                double d = 0.0;
                for (int ch = 0; ch < c; ch++) d += (double)dout[o + ch * hw + i] * v[o + ch * hw + j];
                dp[i * hw + j] = d;
                dot += d * pb[i * hw + j];
            }
            for (int j = 0; j < hw; j++) dp[i * hw + j] = pb[i * hw + j] * (dp[i * hw + j] - dot);   // ds
        }
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < hw; i++) {
                double sq = 0.0, sk = 0.0, sv = 0.0;
                for (int j = 0; j < hw; j++) {
                    sq += dp[i * hw + j] * k[o + ch * hw + j];
                    sk += dp[j * hw + i] * q[o + ch * hw + j];
                    sv += pb[j * hw + i] * dout[o + ch * hw + j];
                }
                dq[o + ch * hw + i] = scale * sq, dk[o + ch * hw + i] = scale * sk, dv[o + ch * hw + i] = sv;
            }
    }
    free(dp);
}

typedef struct {
    OpsContext *ctx;
    const AttnCase *ac;
    float scale;
    float *q, *k, *v, *w, *probs, *out;
} AttnRun;

static double attn_loss(void *state) {
    AttnRun *r = state;
    r->ctx->ops->attention_forward(r->ctx, r->q, r->k, r->v, r->ac->n, r->ac->c, r->ac->hw, r->scale, r->probs, r->out);
    return grad_dot(r->out, r->w, (size_t)r->ac->n * r->ac->c * r->ac->hw);
}

static void test_attention_case(OpsContext *ctx, TestCounts *t, const AttnCase *ac, double worst[3]) {
    const size_t plane = (size_t)ac->n * ac->c * ac->hw, square = (size_t)ac->n * ac->hw * ac->hw;
    AttnRun r = {ctx, ac, 1.0f / sqrtf((float)ac->c), xmalloc(plane * 4), xmalloc(plane * 4), xmalloc(plane * 4),
                 xmalloc(plane * 4), xmalloc(square * 4), xmalloc(plane * 4)};
    const uint64_t id = (uint64_t)ac->c * 100 + ac->hw;
    grad_fill_normal(r.q, plane, 0.0f, ac->spread, id);
    grad_fill_normal(r.k, plane, 0.0f, ac->spread, id + 1);
    grad_fill_normal(r.v, plane, 0.0f, 1.0f, id + 2);
    grad_fill_normal(r.w, plane, 0.0f, 1.0f, id + 3);
    double *p = xmalloc(square * 8), *out = xmalloc(plane * 8);
    double *dq = xmalloc(plane * 8), *dk = xmalloc(plane * 8), *dv = xmalloc(plane * 8);
    ref_attention(ac, r.scale, r.q, r.k, r.v, r.w, p, out, dq, dk, dv);
    ctx->ops->reserve_workspace(ctx, ctx->ops->attention_workspace_bytes(ctx, ac->n, ac->c, ac->hw));

    attn_loss(&r);
    const double tol = ac->spread <= 1.0f ? REF_TOL : HOT_TOL;
    double e_fwd = fmax(grad_error(r.out, out, plane), grad_error(r.probs, p, square));
    EXPECT(t, e_fwd <= tol, "attention_forward n=%d c=%d hw=%d spread %g vs double: %.3g", ac->n, ac->c, ac->hw,
           ac->spread, e_fwd);
    float *gq = xmalloc(plane * 4), *gk = xmalloc(plane * 4), *gv = xmalloc(plane * 4);
    ctx->ops->attention_backward(ctx, r.q, r.k, r.v, r.probs, r.w, ac->n, ac->c, ac->hw, r.scale, gq, gk, gv);
    double e_grad = fmax(grad_error(gq, dq, plane), fmax(grad_error(gk, dk, plane), grad_error(gv, dv, plane)));
    EXPECT(t, e_grad <= tol, "attention_backward n=%d c=%d hw=%d spread %g vs double: %.3g", ac->n, ac->c, ac->hw,
           ac->spread, e_grad);
    const size_t stride = plane > 300 ? plane / 101 : 1;
    double e_fd = grad_fd_error(attn_loss, &r, r.q, plane, gq, stride, 1e-2f);
    e_fd = fmax(e_fd, grad_fd_error(attn_loss, &r, r.k, plane, gk, stride, 1e-2f));
    e_fd = fmax(e_fd, grad_fd_error(attn_loss, &r, r.v, plane, gv, stride, 1e-2f));
    if (ac->spread <= 1.0f)   // a nearly one-hot softmax is too curved for a step of 1e-2
        EXPECT(t, e_fd <= FD_TOL, "attention gradients vs finite differences n=%d c=%d hw=%d: %.3g", ac->n, ac->c,
               ac->hw, e_fd);
    if (ac->spread <= 1.0f) {
        worst[0] = fmax(worst[0], e_fwd), worst[1] = fmax(worst[1], e_grad), worst[2] = fmax(worst[2], e_fd);
    } else {
        printf("attention, hot scores (c=%d hw=%d): forward vs double %.2g, backward %.2g\n", ac->c, ac->hw, e_fwd,
               e_grad);
    }
    void *bufs[] = {r.q, r.k, r.v, r.w, r.probs, r.out, p, out, dq, dk, dv, gq, gk, gv};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

static void test_attention(OpsContext *ctx, TestCounts *t) {
    const AttnCase cases[] = {
        {2, 4, 9, 1.0f}, {1, 8, 16, 1.0f}, {3, 5, 7, 1.0f}, {2, 1, 1, 1.0f}, {1, 32, 64, 1.0f}, {2, 16, 12, 9.0f},
    };
    double worst[3] = {0, 0, 0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_attention_case(ctx, t, &cases[i], worst);
    printf("attention: forward vs double %.2g, backward vs double %.2g, finite differences %.2g\n", worst[0],
           worst[1], worst[2]);
    // Rows of probs sum to 1 even when the scores are huge (the max is subtracted first).
    enum { C = 2, HW = 5 };
    float q[C * HW], k[C * HW], v[C * HW], probs[HW * HW], out[C * HW];
    grad_fill_normal(q, C * HW, 0.0f, 1.0f, 70);
    grad_fill_normal(k, C * HW, 0.0f, 1.0f, 71);
    grad_fill_normal(v, C * HW, 0.0f, 1.0f, 72);
    ctx->ops->attention_forward(ctx, q, k, v, 1, C, HW, 1e4f, probs, out);
    int ok = 1;
    for (int i = 0; i < HW; i++) {
        double sum = 0.0;
        for (int j = 0; j < HW; j++) sum += probs[i * HW + j], ok &= isfinite(probs[i * HW + j]);
        ok &= fabs(sum - 1.0) < 1e-6;
    }
    EXPECT(t, ok, "attention_forward with scale 1e4: rows of probs must be finite and sum to 1");
}

// ---- linear ----------------------------------------------------------------------------------

typedef struct {
    OpsContext *ctx;
    int n, in, out, bias;
    float *x, *w, *b, *y, *g;
} LinRun;

static double linear_loss(void *state) {
    LinRun *r = state;
    r->ctx->ops->linear_forward(r->ctx, r->x, r->w, r->bias ? r->b : NULL, r->n, r->in, r->out, r->y);
    return grad_dot(r->y, r->g, (size_t)r->n * r->out);
}

static void test_linear_case(OpsContext *ctx, TestCounts *t, int n, int in, int out, int bias) {
    LinRun r = {ctx, n, in, out, bias, xmalloc((size_t)n * in * 4), xmalloc((size_t)out * in * 4), xmalloc(out * 4),
                xmalloc((size_t)n * out * 4), xmalloc((size_t)n * out * 4)};
    grad_fill_normal(r.x, (size_t)n * in, 0.0f, 1.0f, 80 + in);
    grad_fill_normal(r.w, (size_t)out * in, 0.0f, 0.3f, 81 + out);
    grad_fill_normal(r.b, out, 0.0f, 1.0f, 82);
    grad_fill_normal(r.g, (size_t)n * out, 0.0f, 1.0f, 83);
    double *y = xmalloc((size_t)n * out * 8), *dx = xmalloc((size_t)n * in * 8), *dw = xmalloc((size_t)out * in * 8);
    double *db = xmalloc(out * 8);
    for (int o = 0; o < out; o++) {
        db[o] = 0.0;
        for (int s = 0; s < n; s++) {
            double acc = bias ? r.b[o] : 0.0;
            for (int i = 0; i < in; i++) acc += (double)r.x[s * in + i] * r.w[o * in + i];
            y[s * out + o] = acc;
            db[o] += r.g[s * out + o];
        }
        for (int i = 0; i < in; i++) {
            dw[o * in + i] = 0.0;
            for (int s = 0; s < n; s++) dw[o * in + i] += (double)r.g[s * out + o] * r.x[s * in + i];
        }
    }
    for (int s = 0; s < n; s++)
        for (int i = 0; i < in; i++) {
            dx[s * in + i] = 0.0;
            for (int o = 0; o < out; o++) dx[s * in + i] += (double)r.g[s * out + o] * r.w[o * in + i];
        }
    linear_loss(&r);
    double e_fwd = grad_error(r.y, y, (size_t)n * out);
    EXPECT(t, e_fwd <= REF_TOL, "linear_forward n=%d in=%d out=%d bias=%d vs double: %.3g", n, in, out, bias, e_fwd);
    float *gx = xmalloc((size_t)n * in * 4), *gw = xmalloc((size_t)out * in * 4), *gb = xmalloc(out * 4);
    ctx->ops->linear_backward(ctx, r.x, r.w, r.g, n, in, out, gx, gw, bias ? gb : NULL);
    double e = fmax(grad_error(gx, dx, (size_t)n * in), grad_error(gw, dw, (size_t)out * in));
    if (bias) e = fmax(e, grad_error(gb, db, out));
    EXPECT(t, e <= REF_TOL, "linear_backward n=%d in=%d out=%d bias=%d vs double: %.3g", n, in, out, bias, e);
    // dx NULL: the parameter gradients alone, the same values.
    float *gw2 = xmalloc((size_t)out * in * 4);
    ctx->ops->linear_backward(ctx, r.x, r.w, r.g, n, in, out, NULL, gw2, NULL);
    EXPECT(t, memcmp(gw, gw2, (size_t)out * in * 4) == 0, "linear_backward with dx = NULL changed dw");
    // Linear in every input: the central difference is exact up to rounding at any step.
    double e_fd = grad_fd_error(linear_loss, &r, r.x, (size_t)n * in, gx, 1, 0.5f);
    e_fd = fmax(e_fd, grad_fd_error(linear_loss, &r, r.w, (size_t)out * in, gw, 1, 0.5f));
    if (bias) e_fd = fmax(e_fd, grad_fd_error(linear_loss, &r, r.b, out, gb, 1, 0.5f));
    EXPECT(t, e_fd <= 1e-5, "linear gradients vs finite differences n=%d in=%d out=%d: %.3g", n, in, out, e_fd);
    printf("linear n=%d in=%d out=%d bias=%d: forward %.2g, backward %.2g, finite differences %.2g\n", n, in, out,
           bias, e_fwd, e, e_fd);
    void *bufs[] = {r.x, r.w, r.b, r.y, r.g, y, dx, dw, db, gx, gw, gb, gw2};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

static void test_linear(OpsContext *ctx, TestCounts *t) {
    test_linear_case(ctx, t, 5, 64, 16, 1);   // the VAE's latent_mean
    test_linear_case(ctx, t, 7, 16, 64, 1);   // latent_dec
    test_linear_case(ctx, t, 3, 9, 5, 0);
    test_linear_case(ctx, t, 1, 1, 1, 1);
    // n = 0: no samples, zero parameter gradients
    float w[6] = {1, 2, 3, 4, 5, 6}, dw[6], db[2] = {7, 7};
    memset(dw, 0x7f, sizeof dw);
    ctx->ops->linear_forward(ctx, NULL, w, NULL, 0, 3, 2, NULL);
    ctx->ops->linear_backward(ctx, NULL, w, NULL, 0, 3, 2, NULL, dw, db);
    int ok = db[0] == 0.0f && db[1] == 0.0f;
    for (int i = 0; i < 6; i++) ok &= dw[i] == 0.0f;
    EXPECT(t, ok, "linear_backward with n = 0 should zero dw and db");
}

int main(void) {
    TestCounts t = {0, 0};
    OpsContext ctx;
    memset(&ctx, 0, sizeof ctx);
    cpu_context_init(&ctx, 1);
    test_attention(&ctx, &t);
    test_linear(&ctx, &t);
    cpu_context_destroy(&ctx);
    return test_finish("test_ops_attention", &t);
}
