// test_ops_adam.c: the CPU adam_update against torch 1.13's known answers (bit for bit) and against
// a naive double-precision Adam over several steps, with and without weight decay.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/rng.h"
#include "kernels/ops.h"
#include "test_util.h"

// Textbook Adam in double (torch.optim.Adam's formula, L2 weight decay folded into the gradient).
static void naive_adam(double *p, const double *g_in, double *m, double *v, size_t n, double lr, double b1,
                       double b2, double eps, double wd, long step) {
    double bc1 = 1.0 - pow(b1, (double)step), bc2 = 1.0 - pow(b2, (double)step);
    for (size_t i = 0; i < n; i++) {
        double g = g_in[i] + wd * p[i];
        m[i] = b1 * m[i] + (1.0 - b1) * g;
        v[i] = b2 * v[i] + (1.0 - b2) * g * g;
        p[i] -= lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + eps);
    }
}

// One adam_update at 1-based `step` through the device-side bookkeeping: step_commit with a finite
// gradient norm forms the step's scalars from the hyperparameters (as doubles of the floats given).
static void adam_at_step(OpsContext *ctx, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                         float b2, float eps, float wd, long step) {
    StepState state;
    memset(&state, 0, sizeof state);
    state.adam_steps = (int32_t)(step - 1);
    state.steps = (int32_t)(step - 1);
    AdamHyper hyper = {lr, b1, b2, eps, wd};
    float finite_sumsq = 1.0f;
    ctx->ops->step_commit(ctx, &state, &finite_sumsq, &hyper);
    ctx->ops->adam_update(ctx, p, g, m, v, n, &state);
}

// Largest |a - b| / (|b| + floor_i): relative error, with a floor for values that cross zero.
static double max_err(const float *a, const double *b, const double *floor, double floor_scale, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double diff = fabs((double)a[i] - b[i]);
        if (isnan(diff)) return INFINITY;
        if (diff == 0.0) continue;   // also where b and the floor are both 0
        double e = diff / (fabs(b[i]) + floor_scale * floor[i]);
        if (e > worst) worst = e;
    }
    return worst;
}

// torch 1.13, CPU, float32: Adam(lr, betas, eps, weight_decay) with each hyperparameter the double
// nearest to the float passed here (float(np.float32(x))), foreach=False, three steps of the
// gradients below. Generated once with /usr/bin/python3; pins PyTorch's order of operations.
static void test_torch_known_answer(OpsContext *ctx, TestCounts *c) {
    const float p0[8] = {0.5f, -1.25f, 3.0f, 0.0f, 1e-3f, -2e-5f, 7.5f, -0.3f};
    const float grads[3][8] = {{0.1f, -0.2f, 1e-4f, 0.0f, 5.0f, -3e-3f, 2.5e-6f, 0.7f},
                               {-0.05f, 0.3f, 2e-4f, 0.0f, -4.0f, 1e-3f, 1e-6f, 0.69f},
                               {0.2f, -0.1f, -1e-4f, 0.0f, 3.0f, 2e-3f, -3e-6f, -0.8f}};
    const float want[2][3][8] = {
        {{0x1.ec4b2cp-2f, -0x1.3e1beep+0f, 0x1.7cf274p+1f, 0x0.0p+0f, -0x1.a02830p-7f, 0x1.afdacep-7f, 0x1.decc4cp+2f, -0x1.49adf6p-2f},
         {0x1.82a99ap-6f, 0x1.a36e42p-11f, 0x1.0e1cfcp-16f, 0x0.0p+0f, 0x1.6147b4p-2f, 0x1.8a43d2p-15f, -0x1.01b2e2p-27f, 0x1.3dd980p-5f},
         {0x1.b83526p-15f, 0x1.253db8p-13f, 0x1.079d94p-34f, 0x0.0p+0f, 0x1.990de6p-5f, 0x1.e060acp-27f, 0x1.247cb4p-46f, 0x1.a4a47ap-10f}},
        {{0x1.e6a100p-2f, -0x1.3b983cp+0f, 0x1.7c2912p+1f, 0x0.0p+0f, -0x1.a01260p-7f, 0x1.08c05cp-7f, 0x1.de147ep+2f, -0x1.49425cp-2f},
         {0x1.2e3b48p-5f, -0x1.0d33a8p-5f, 0x1.4be20ep-4f, 0x0.0p+0f, 0x1.611b7cp-2f, 0x1.072d78p-12f, 0x1.9fa982p-3f, 0x1.f1bf24p-6f},
         {0x1.60d8b8p-14f, 0x1.86f776p-13f, 0x1.1912b2p-12f, 0x0.0p+0f, 0x1.991304p-5f, 0x1.88c3b4p-26f, 0x1.b8be0ap-10f, 0x1.9ca0dcp-10f}}};
    const float wds[2] = {0.0f, 0.1f};
    for (int w = 0; w < 2; w++) {
        float p[8], m[8] = {0}, v[8] = {0};
        memcpy(p, p0, sizeof p);
        for (int s = 0; s < 3; s++) adam_at_step(ctx, p, grads[s], m, v, 8, 1e-2f, 0.9f, 0.999f, 1e-8f, wds[w], s + 1);
        const float *got[3] = {p, m, v};
        const char *names[3] = {"param", "exp_avg", "exp_avg_sq"};
        for (int t = 0; t < 3; t++) {
            int same = memcmp(got[t], want[w][t], sizeof p) == 0;
            int first = 0;
            while (!same && first < 7 && got[t][first] == want[w][t][first]) first++;
            EXPECT(c, same, "wd=%g %s differs from torch 1.13 at [%d]: got %a want %a", wds[w], names[t], first,
                   got[t][first], want[w][t][first]);
        }
    }
}

// Several steps with gradients of a quadratic loss 0.5 |p - target|^2 (so each side follows its own
// parameters) times per-element scales from 1e-6 to 10, and some exact zeros (denominator = eps);
// the op's float state against the naive double state.
static void test_against_naive(OpsContext *ctx, TestCounts *c, float weight_decay, double *worst_p, double *worst_mv) {
    enum { N = 4099, STEPS = 20 };
    static float p[N], g[N], m[N], v[N], target[N];
    static double pd[N], gd[N], md[N], vd[N], scale[N], grad_size[N], grad_size_sq[N], ones[N];
    Rng rng = rng_stream(7, RNG_PURPOSE_TEST, 1, weight_decay != 0.0f);
    for (int i = 0; i < N; i++) {
        p[i] = rng_normal(&rng);
        target[i] = rng_normal(&rng);
        pd[i] = p[i];
        m[i] = v[i] = 0.0f;
        md[i] = vd[i] = 0.0;
        scale[i] = i % 97 == 0 ? 0.0 : pow(10.0, (double)(i % 8) - 6.0);
        // typical gradient size (weight decay adds ~wd |p|) and its square
        grad_size[i] = scale[i] + weight_decay;
        grad_size_sq[i] = grad_size[i] * grad_size[i];
        ones[i] = 1.0;
    }
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    for (long step = 1; step <= STEPS; step++) {
        for (int i = 0; i < N; i++) {
            float noise = 0.1f * rng_normal(&rng);
            g[i] = (float)scale[i] * ((p[i] - target[i]) + noise);
            gd[i] = (double)g[i];   // the same gradient on both sides: only the update is compared
        }
        adam_at_step(ctx, p, g, m, v, N, lr, b1, b2, eps, weight_decay, step);
        naive_adam(pd, gd, md, vd, N, lr, b1, b2, eps, weight_decay, step);
    }
    // The hyperparameters are the floats passed to the op, so the only differences are rounding.
    // Floors: the typical size of each value (params ~ 1, moments ~ grad_size and its square), since m
    // crosses zero and the parameters' own float rounding is ~6e-8 per step.
    *worst_p = max_err(p, pd, ones, 1.0, N);
    double em = max_err(m, md, grad_size, 1.0, N), ev = max_err(v, vd, grad_size_sq, 1.0, N);
    *worst_mv = em > ev ? em : ev;
    EXPECT(c, *worst_p < 1e-6, "wd=%g params differ from double Adam by %.3g (relative, floor 1)",
           weight_decay, *worst_p);
    EXPECT(c, *worst_mv < 1e-5, "wd=%g moments differ from double Adam by %.3g (exp_avg %.3g, exp_avg_sq %.3g)",
           weight_decay, *worst_mv, em, ev);
}

int main(void) {
    TestCounts c = {0, 0};
    OpsContext ctx;
    memset(&ctx, 0, sizeof ctx);
    cpu_context_init(&ctx, 1);

    test_torch_known_answer(&ctx, &c);

    double ep0, emv0, ep1, emv1;
    test_against_naive(&ctx, &c, 0.0f, &ep0, &emv0);
    test_against_naive(&ctx, &c, 0.01f, &ep1, &emv1);
    printf("naive double Adam, 20 steps: params %.2g / %.2g, moments %.2g / %.2g (no wd / wd)\n", ep0, ep1, emv0, emv1);

    {   // A late step: bias corrections near 1. One step from a given state against the naive one.
        float p[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.3f, -0.01f, 0.0f}, m[3] = {0.1f, -0.02f, 1e-3f},
              v[3] = {0.04f, 1e-4f, 1e-6f};
        double pd[3], gd[3], md[3], vd[3];
        for (int i = 0; i < 3; i++) pd[i] = p[i], gd[i] = g[i], md[i] = m[i], vd[i] = v[i];
        adam_at_step(&ctx, p, g, m, v, 3, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 100000);
        naive_adam(pd, gd, md, vd, 3, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0, 100000);
        double floors[3] = {1.0, 1.0, 1.0};
        double e = max_err(p, pd, floors, 1e-3, 3);
        EXPECT(&c, e < 1e-6, "step 100000: params differ from double Adam by %.3g", e);
    }
    {   // n = 0 touches nothing
        float x = 1.0f;
        adam_at_step(&ctx, &x, &x, &x, &x, 0, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1);
        EXPECT(&c, x == 1.0f, "n = 0 wrote to memory");
    }
    {   // A NaN gradient poisons only its own element (the trainer skips such steps itself).
        float p[2] = {1.0f, 1.0f}, g[2] = {NAN, 0.5f}, m[2] = {0}, v[2] = {0};
        adam_at_step(&ctx, p, g, m, v, 2, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1);
        EXPECT(&c, isnan(p[0]) && isnan(m[0]) && isnan(v[0]), "NaN gradient did not propagate");
        EXPECT(&c, fabsf(p[1] - (1.0f - 1e-3f)) < 1e-6f, "first Adam step should move by lr, got %.9g", p[1]);
    }

    {   // The step verdict: flag_nonfinite, then step_commit decides; a skipped step changes nothing.
        float losses[2] = {0.5f, 0.25f}, flag = 1.0f;
        ctx.ops->flag_nonfinite(&ctx, losses, 2, &flag);
        EXPECT(&c, flag == 0.0f, "finite losses should flag 0, got %g", flag);
        losses[1] = INFINITY;
        ctx.ops->flag_nonfinite(&ctx, losses, 2, &flag);
        EXPECT(&c, isnan(flag), "an infinite loss should flag NaN, got %g", flag);

        StepState state;
        memset(&state, 0, sizeof state);
        AdamHyper hyper = {1e-3, 0.9, 0.999, 1e-8, 0.0};
        float p[2] = {1.0f, 2.0f}, g[2] = {0.5f, -0.5f}, m[2] = {0}, v[2] = {0}, sumsq = 0.5f;
        ctx.ops->step_commit(&ctx, &state, &sumsq, &hyper);
        ctx.ops->adam_update(&ctx, p, g, m, v, 2, &state);
        EXPECT(&c, state.steps == 1 && state.adam_steps == 1 && state.skipped == 0 && state.finite == 1,
               "finite step: counters %d/%d/%d finite %d", state.steps, state.adam_steps, state.skipped, state.finite);
        float p1[2] = {p[0], p[1]}, m1[2] = {m[0], m[1]}, v1[2] = {v[0], v[1]};
        sumsq = NAN;
        ctx.ops->step_commit(&ctx, &state, &sumsq, &hyper);
        ctx.ops->adam_update(&ctx, p, g, m, v, 2, &state);
        EXPECT(&c, state.steps == 2 && state.adam_steps == 1 && state.skipped == 1 && state.last_skipped == 2 &&
                   state.finite == 0, "skipped step: counters %d/%d/%d last %d finite %d", state.steps,
               state.adam_steps, state.skipped, state.last_skipped, state.finite);
        EXPECT(&c, memcmp(p, p1, sizeof p) == 0 && memcmp(m, m1, sizeof m) == 0 && memcmp(v, v1, sizeof v) == 0,
               "a skipped step changed the parameters or moments");
        sumsq = 0.25f;
        ctx.ops->step_commit(&ctx, &state, &sumsq, &hyper);
        AdamScalars want = adam_scalars(&hyper, 2);
        EXPECT(&c, state.adam_steps == 2 && memcmp(&state.adam, &want, sizeof want) == 0,
               "after a skip, the next step must use Adam step 2's bias corrections");
    }

    cpu_context_destroy(&ctx);
    return test_finish("test_ops_adam", &c);
}
