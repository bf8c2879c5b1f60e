// test_model_layers_small.c: the small arch's layer kinds (sigmoid, linear, ConvTranspose2d with
// output_padding, the grouped quantizer) in small networks on the CPU backend: conv0 -> the
// layer(s) -> MSE against a random target. Every trainable gradient is checked against central
// finite differences of the loss; the grouped quantizer's codes against a brute-force nearest
// search on PyTorch's view z.permute(0, 2, 3, 1).reshape(-1, D).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/core/common.h"
#include "../../src/model/layers.h"
#include "grad_check.h"
#include "test_util.h"

enum { N = 2, C = 4, S = 4 };

typedef struct {
    OpsContext ctx;
    ParamRegistry reg;
    Net net;
    float *params, *grads;
    int input, target, scalars, out;
} Case;

static int begin(Case *t) {
    memset(t, 0, sizeof *t);
    ops_context_init(&t->ctx, "cpu", 0, 1, PRECISION_FP32, 1);
    param_registry_init(&t->reg);
    net_init(&t->net, &t->ctx, &t->reg);
    int dims[4] = {N, C, S, S}, sdims[1] = {2};
    t->input = net_slot(&t->net, "input", SLOT_F32, 0, 4, dims);
    t->scalars = net_slot(&t->net, "scalars", SLOT_F32, 0, 1, sdims);
    return build_conv(&t->net, "conv0", t->input, conv_shape(N, C, S, S, C, 3, 1, 1, 0, 1));
}

static void finish(Case *t, int out) {
    const Slot *o = &t->net.slots[out];
    t->out = out;
    t->target = net_slot(&t->net, "target", SLOT_F32, 0, o->ndim, o->dims);
    build_mse_loss(&t->net, "loss", out, t->target, 1.0f, t->scalars, 0);
    param_registry_finalize(&t->reg);
    t->params = t->ctx.ops->alloc(&t->ctx, t->reg.total_count * sizeof(float));
    t->grads = t->ctx.ops->alloc(&t->ctx, t->reg.trainable_count * sizeof(float));
    net_finalize(&t->net, t->params, t->grads);
    grad_fill_uniform(t->params, t->reg.total_count, -0.5f, 0.5f, 1);
    grad_fill_normal(t->net.slots[t->input].data, t->net.slots[t->input].count, 0.0f, 1.0f, 2);
    grad_fill_normal(t->net.slots[t->target].data, t->net.slots[t->target].count, 0.0f, 1.0f, 3);
}

static void release(Case *t) {
    net_free(&t->net);
    t->ctx.ops->release(&t->ctx, t->params);
    t->ctx.ops->release(&t->ctx, t->grads);
    ops_context_destroy(&t->ctx);
}

static double loss_of(void *state) {
    Case *t = state;
    net_forward_range(&t->net, 0, t->net.layer_count);
    return ((float *)t->net.slots[t->scalars].data)[0];
}

static void check_gradients(TestCounts *c, Case *t, const char *what) {
    loss_of(t);
    net_backward(&t->net);
    size_t n = t->reg.trainable_count;
    float *analytic = xmalloc(n * sizeof(float));
    memcpy(analytic, t->grads, n * sizeof(float));
    double err = grad_fd_error(loss_of, t, t->params, n, analytic, 1, 1e-2f);
    printf("%-40s %5zu parameter gradients vs finite differences: error %.2e of max|grad|\n", what, n, err);
    EXPECT(c, err < 5e-3, "%s: gradient error %.3g", what, err);
    free(analytic);
}

static void test_sigmoid(TestCounts *c) {
    Case t;
    int x = begin(&t);
    int y = build_sigmoid(&t.net, "sigmoid", x, 1);
    EXPECT(c, y == x, "the in-place sigmoid should write over its input");
    finish(&t, y);
    check_gradients(c, &t, "sigmoid (in place)");
    const float *v = t.net.slots[y].data;
    int inside = 1;
    for (size_t i = 0; i < t.net.slots[y].count; i++) inside &= v[i] > 0.0f && v[i] < 1.0f;
    EXPECT(c, inside, "sigmoid outputs outside (0, 1)");
    release(&t);
}

static void test_linear(TestCounts *c) {
    Case t;
    int x = begin(&t);
    finish(&t, build_linear(&t.net, "fc", x, 5));
    const ParamEntry *w = param_registry_find(&t.reg, "fc.weight");
    EXPECT(c, w && w->ndim == 2 && w->shape[0] == 5 && w->shape[1] == C * S * S,
           "fc.weight should be nn.Linear's [5, %d]", C * S * S);
    EXPECT(c, t.net.slots[t.out].dims[0] == N && t.net.slots[t.out].dims[1] == 5, "linear output shape");
    check_gradients(c, &t, "linear (C S S -> 5)");
    release(&t);
}

static void test_conv_transpose_output_padding(TestCounts *c) {
    Case t;
    int x = begin(&t);
    ConvShape s = conv_shape(N, C, S, S, 3, 3, 2, 1, 1, 1);
    conv_shape_set_output_padding(&s, 1);
    finish(&t, build_conv(&t.net, "up", x, s));
    EXPECT(c, t.net.slots[t.out].dims[2] == 2 * S && t.net.slots[t.out].dims[3] == 2 * S,
           "ConvTranspose2d k3 s2 p1 output_padding 1: %dx%d, expected %dx%d", t.net.slots[t.out].dims[2],
           t.net.slots[t.out].dims[3], 2 * S, 2 * S);
    check_gradients(c, &t, "conv transpose k3 s2 p1 output_padding 1");
    release(&t);
}

// D = 2 on a 4-channel latent: two code vectors per position, row (n, y, x, g) of the
// channels-last view holds channels g D .. g D + D - 1.
static void test_grouped_quantizer(TestCounts *c) {
    enum { D = 2, K = 5 };
    Case t;
    int x = begin(&t);
    int cb_shape[2] = {K, D};
    param_registry_add(&t.reg, "codebook", 1, INIT_CODEBOOK, 0, 2, cb_shape);
    int q = build_quantize(&t.net, "quantizer", x, net_param_index(&t.reg, "codebook"), K, D, 0.25f, 1, t.scalars, 1);
    int layer = t.net.layer_count - 1;
    finish(&t, q);
    const QuantizeArgs *a = &t.net.layers[layer].quant;
    EXPECT(c, a->groups == C / D && a->m == N * S * S * (C / D), "groups %d, rows %d; expected %d, %d", a->groups,
           a->m, C / D, N * S * S * (C / D));
    loss_of(&t);
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
    release(&t);
}

int main(void) {
    TestCounts c = {0, 0};
    test_sigmoid(&c);
    test_linear(&c);
    test_conv_transpose_output_padding(&c);
    test_grouped_quantizer(&c);
    return test_finish("test_model_layers_small", &c);
}
