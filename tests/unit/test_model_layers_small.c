// test_model_layers_small.c: the small arch's layer kinds (sigmoid, linear, ConvTranspose2d with
// output_padding, the grouped quantizer, the VAE's reparam and KL term) in small networks on the CPU backend: conv0 -> the
// layer(s) -> MSE against a random target. Every trainable gradient is checked against central
// finite differences of the loss; the grouped quantizer's codes against a brute-force nearest
// search on PyTorch's view z.permute(0, 2, 3, 1).reshape(-1, D).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fd_fixture.h"

enum { N = 2, C = 4, S = 4 };

// input -> conv0 (3x3, C -> C): returns conv0's output slot.
static int begin(FdNet *t) {
    int dims[4] = {N, C, S, S};
    fd_net_begin(t, dims, 2);
    return build_conv(&t->net, "conv0", t->input, conv_shape(N, C, S, S, C, 3, 1, 1, 0, 1));
}

static void test_sigmoid(TestCounts *c) {
    FdNet t;
    int x = begin(&t);
    int y = build_sigmoid(&t.net, "sigmoid", x, 1);
    EXPECT(c, y == x, "the in-place sigmoid should write over its input");
    fd_net_finish_mse(&t, y);
    fd_net_check_gradients(c, &t, "sigmoid (in place)");
    const float *v = t.net.slots[y].data;
    int inside = 1;
    for (size_t i = 0; i < t.net.slots[y].count; i++) inside &= v[i] > 0.0f && v[i] < 1.0f;
    EXPECT(c, inside, "sigmoid outputs outside (0, 1)");
    fd_net_free(&t);
}

static void test_linear(TestCounts *c) {
    FdNet t;
    int x = begin(&t);
    fd_net_finish_mse(&t, build_linear(&t.net, "fc", x, 5));
    const ParamEntry *w = param_registry_find(&t.reg, "fc.weight");
    EXPECT(c, w && w->ndim == 2 && w->shape[0] == 5 && w->shape[1] == C * S * S,
           "fc.weight should be nn.Linear's [5, %d]", C * S * S);
    EXPECT(c, t.net.slots[t.out].dims[0] == N && t.net.slots[t.out].dims[1] == 5, "linear output shape");
    fd_net_check_gradients(c, &t, "linear (C S S -> 5)");
    fd_net_free(&t);
}

static void test_conv_transpose_output_padding(TestCounts *c) {
    FdNet t;
    int x = begin(&t);
    ConvShape s = conv_shape(N, C, S, S, 3, 3, 2, 1, 1, 1);
    conv_shape_set_output_padding(&s, 1);
    fd_net_finish_mse(&t, build_conv(&t.net, "up", x, s));
    EXPECT(c, t.net.slots[t.out].dims[2] == 2 * S && t.net.slots[t.out].dims[3] == 2 * S,
           "ConvTranspose2d k3 s2 p1 output_padding 1: %dx%d, expected %dx%d", t.net.slots[t.out].dims[2],
           t.net.slots[t.out].dims[3], 2 * S, 2 * S);
    fd_net_check_gradients(c, &t, "conv transpose k3 s2 p1 output_padding 1");
    fd_net_free(&t);
}

// D = 2 on a 4-channel latent: two code vectors per position, row (n, y, x, g) of the
// channels-last view holds channels g D .. g D + D - 1.
static void test_grouped_quantizer(TestCounts *c) {
    enum { D = 2, K = 5 };
    FdNet t;
    int x = begin(&t);
    int cb_shape[2] = {K, D};
    param_registry_add(&t.reg, "codebook", 1, INIT_CODEBOOK, 0, 2, cb_shape);
    int q = build_quantize(&t.net, "quantizer", x, net_param_index(&t.reg, "codebook"), K, D, 0.25f, 1, t.scalars, 1);
    int layer = t.net.layer_count - 1;
    fd_net_finish_mse(&t, q);
    const QuantizeArgs *a = &t.net.layers[layer].quant;
    EXPECT(c, a->groups == C / D && a->m == N * S * S * (C / D), "groups %d, rows %d; expected %d, %d", a->groups,
           a->m, C / D, N * S * S * (C / D));
    fd_net_loss(&t);
    const float *z = t.net.layers[layer].x[0], *cb = t.params + param_registry_find(&t.reg, "codebook")->offset;
    const int32_t *codes = t.net.slots[a->codes].data;
    int wrong = 0;
    for (int row = 0; row < a->m; row++) {
        int g = row % a->groups, pos = (row / a->groups) % (S * S), n = row / (a->groups * S * S), best = 0;
        double best_d = INFINITY;
        for (int k = 0; k < K; k++) {
            double d = 0.0;
            for (int j = 0; j < D; j++) {
                double diff = z[((size_t)n * C + (size_t)(g * D + j)) * S * S + pos] - cb[k * D + j];
                d += diff * diff;
            }
            if (d < best_d) best_d = d, best = k;
        }
        wrong += codes[row] != best;
    }
    printf("grouped quantizer: %d of %d codes differ from the brute-force nearest on the channels-last view\n", wrong,
           a->m);
    EXPECT(c, wrong == 0, "%d grouped codes differ from the brute-force nearest", wrong);
    fd_net_free(&t);
}

// ---- the Gaussian VAE's layers (layer_vae.c) ---------------------------------------------------
// conv0 -> linear mean and logvar (L = 3) -> kl_loss (weight KL_W, scalar 1) -> reparam -> linear
// (3 -> 5) -> MSE (scalar 0). The loss the gradients belong to is MSE + KL_W KLD.
enum { L = 3 };
static const float KL_W = 0.7f;

static double vae_loss(void *state) {
    FdNet *t = state;
    net_forward_range(&t->net, 0, t->net.layer_count);
    const float *s = t->net.slots[t->scalars].data;
    return (double)s[0] + KL_W * (double)s[1];
}

static int build_vae(FdNet *t, int *mean, int *logvar, int *reparam) {
    int x = begin(t);
    *mean = build_linear(&t->net, "mean", x, L);
    *logvar = build_linear(&t->net, "logvar", x, L);
    build_kl_loss(&t->net, "kl", *mean, *logvar, KL_W, t->scalars, 1);
    int z = build_reparam(&t->net, "reparam", *mean, *logvar);
    *reparam = t->net.layer_count - 1;
    t->net.seed = 77;
    t->net.step = &t->step;
    t->step = 5;
    return build_linear(&t->net, "dec", z, 5);
}

static void test_vae_layers(TestCounts *c) {
    FdNet t;
    int mean, logvar, reparam;
    fd_net_finish_mse(&t, build_vae(&t, &mean, &logvar, &reparam));
    size_t n = t.reg.trainable_count;
    vae_loss(&t);
    net_backward(&t.net);
    float *analytic = xmalloc(n * sizeof(float));
    memcpy(analytic, t.grads, n * sizeof(float));
    double err = grad_fd_error(vae_loss, &t, t.params, n, analytic, 1, 1e-2f);
    printf("%-40s %5zu parameter gradients vs finite differences: error %.2e of max|grad|\n",
           "vae: reparam + kl", n, err);
    EXPECT(c, err < 5e-3, "vae: gradient error %.3g", err);
    free(analytic);

    // the forward against the definitions, from the eps the layer kept
    vae_loss(&t);
    const float *mu = t.net.slots[mean].data, *lv = t.net.slots[logvar].data;
    const Layer *r = &t.net.layers[reparam];
    const float *eps = t.net.slots[r->sp.aux[0]].data, *z = r->y;
    double kl = 0.0, zerr = 0.0, eps_sq = 0.0;
    for (int i = 0; i < N * L; i++) {
        kl += -0.5 * (1.0 + lv[i] - (double)mu[i] * mu[i] - exp(lv[i]));
        zerr = fmax(zerr, fabs(z[i] - (mu[i] + eps[i] * exp(0.5 * lv[i]))));
        eps_sq += (double)eps[i] * eps[i];
    }
    kl /= N * L;
    double got = ((const float *)t.net.slots[t.scalars].data)[1];
    EXPECT(c, fabs(got - kl) <= 1e-5 * fmax(1.0, fabs(kl)), "vae: KLD scalar %.7g, definition %.7g", got, kl);
    EXPECT(c, zerr < 1e-5 && eps_sq > 0.0, "vae: z = mean + eps exp(logvar / 2) off by %.3g (sum eps^2 %.3g)", zerr,
           eps_sq);

    // eps is keyed on the global sample: with first_sample 1, sample 0 draws what sample 1 drew
    float eps1 = eps[L];
    t.net.first_sample = 1;
    vae_loss(&t);
    EXPECT(c, eps[0] == eps1, "vae: eps of global sample 1: %g as sample 0 of the next rank, %g before", eps[0], eps1);
    // out of training: z is the mean, eps zero
    t.net.training = 0;
    vae_loss(&t);
    EXPECT(c, memcmp(z, mu, N * L * sizeof(float)) == 0 && eps[0] == 0.0f, "vae: evaluation should decode the mean");
    fd_net_free(&t);
}

int main(void) {
    TestCounts c = {0, 0};
    test_vae_layers(&c);
    test_sigmoid(&c);
    test_linear(&c);
    test_conv_transpose_output_padding(&c);
    test_grouped_quantizer(&c);
    return test_finish("test_model_layers_small", &c);
}
