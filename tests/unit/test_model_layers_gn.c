// test_model_layers_gn.c: the groupnorm arch's layer kinds (groupnorm, silu, dropout, upsample,
// pad, the attention block) in small networks on the CPU backend: conv0 -> the layer(s) -> MSE
// against a random target. Every trainable gradient (conv0's carries the layer's input gradient,
// plus the layer's own parameters) is checked against central finite differences of the loss;
// dropout also against its mask (kept fraction, same mask every forward of a step, identity in
// evaluation), and the attention's plan (its input's gradient sums the residual and the norm).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fd_fixture.h"

enum { N = 2, C = 4, S = 4 };

// input -> conv0 (3x3, C -> C): returns conv0's output slot.
static int begin(FdNet *t) {
    int dims[4] = {N, C, S, S};
    fd_net_begin(t, dims, 1);
    return build_conv(&t->net, "conv0", t->input, conv_shape(N, C, S, S, C, 3, 1, 1, 0, 1));
}

// The loss on slot out (fd_net_finish_mse), GroupNorm weights near 1, the step key.
static void finish(FdNet *t, int out) {
    fd_net_finish_mse(t, out);
    // GroupNorm affine weights near 1 so the normalized values matter
    for (int i = 0; i < t->reg.count; i++)
        if (strstr(t->reg.entries[i].key, "norm") && strstr(t->reg.entries[i].key, ".weight"))
            for (size_t j = 0; j < t->reg.entries[i].count; j++) t->params[t->reg.entries[i].offset + j] += 1.0f;
    t->step = 3;
    t->net.seed = 99;
    t->net.step = &t->step;
    t->net.first_sample = 5;
}

static void test_groupnorm(TestCounts *c) {
    FdNet t;
    int x = begin(&t);
    finish(&t, build_groupnorm(&t.net, "norm", x, 2, 1e-6f));
    fd_net_check_gradients(c, &t, "groupnorm (2 groups)");
    // the output of every (sample, group) has mean beta-weighted 0 when weight 1, bias 0
    float *p = t.params + param_registry_find(&t.reg, "norm.weight")->offset;
    for (int i = 0; i < 2 * C; i++) p[i] = i < C ? 1.0f : 0.0f;   // weight then bias are adjacent
    fd_net_loss(&t);
    const float *y = t.net.slots[t.out].data;
    double mean = 0.0, sq = 0.0;
    size_t group = (size_t)(C / 2) * S * S;
    for (size_t i = 0; i < group; i++) mean += y[i], sq += (double)y[i] * y[i];
    mean /= (double)group;
    EXPECT(c, fabs(mean) < 1e-5 && fabs(sq / (double)group - 1.0) < 1e-3,
           "a group's output has mean %g and mean square %g, expected 0 and 1", mean, sq / (double)group);
    fd_net_free(&t);
}

static void test_silu(TestCounts *c) {
    FdNet t;
    int x = begin(&t);
    finish(&t, build_silu(&t.net, "silu", x));
    fd_net_check_gradients(c, &t, "silu");
    fd_net_free(&t);
}

static void test_dropout(TestCounts *c) {
    FdNet t;
    int x = begin(&t);
    int s = build_silu(&t.net, "silu", x);
    finish(&t, build_dropout_inplace(&t.net, "dropout", s, 0.5f));
    EXPECT(c, t.net.layers[t.net.layer_count - 2].in[0] == t.out, "the dropout should write over its input");
    fd_net_check_gradients(c, &t, "silu -> dropout 0.5 (in place)");
    size_t n = t.net.slots[t.out].count, zeros = 0;
    const float *y = t.net.slots[t.out].data;
    for (size_t i = 0; i < n; i++) zeros += y[i] == 0.0f;
    EXPECT(c, zeros > n / 4 && zeros < 3 * n / 4, "%zu of %zu dropped at p = 0.5", zeros, n);
    float *kept = xmalloc(n * sizeof(float));
    memcpy(kept, y, n * sizeof(float));
    t.step = 4;   // another step draws another mask
    fd_net_loss(&t);
    EXPECT(c, memcmp(kept, y, n * sizeof(float)) != 0, "step 4 drew step 3's mask");
    t.net.training = 0;   // evaluation: the identity, so the output is silu's
    fd_net_loss(&t);
    size_t zero_eval = 0;
    for (size_t i = 0; i < n; i++) zero_eval += y[i] == 0.0f;
    EXPECT(c, zero_eval == 0, "%zu zeros in evaluation (dropout must be off)", zero_eval);
    free(kept);
    fd_net_free(&t);
}

static void test_upsample_pad(TestCounts *c) {
    FdNet t;
    int x = begin(&t);
    finish(&t, build_upsample2x(&t.net, "up", x));
    EXPECT(c, t.net.slots[t.out].dims[2] == 2 * S && t.net.slots[t.out].dims[3] == 2 * S, "upsample: %dx%d",
           t.net.slots[t.out].dims[2], t.net.slots[t.out].dims[3]);
    fd_net_check_gradients(c, &t, "nearest x2 upsample");
    fd_net_free(&t);
    x = begin(&t);
    int p = build_pad(&t.net, "pad", x, 0, 1, 0, 1);
    // diffusers' Downsample2D: pad right/bottom by 1, conv3x3 stride 2 without padding
    finish(&t, build_conv(&t.net, "down", p, conv_shape(N, C, S + 1, S + 1, C, 3, 2, 0, 0, 1)));
    EXPECT(c, t.net.slots[t.out].dims[2] == S / 2, "downsample: %d rows, expected %d", t.net.slots[t.out].dims[2],
           S / 2);
    fd_net_check_gradients(c, &t, "pad (0,1,0,1) -> conv3x3 stride 2");
    fd_net_free(&t);
}

static void test_attention(TestCounts *c) {
    FdNet t;
    int x = begin(&t);
    finish(&t, build_attention_block(&t.net, "attn", x, 2, 1e-6f));
    const ParamEntry *w = param_registry_find(&t.reg, "attn.to_q.weight");
    EXPECT(c, w && w->ndim == 2 && w->shape[0] == C && w->shape[1] == C, "to_q.weight should be nn.Linear's [C, C]");
    const Layer *norm = &t.net.layers[1];   // conv0, attn.group_norm, ...
    EXPECT(c, norm->kind == LAYER_GROUPNORM && norm->mode[0] == GRAD_ACCUM,
           "the group_norm's input gradient should accumulate onto the residual's (mode %d)", (int)norm->mode[0]);
    fd_net_check_gradients(c, &t, "attention block");
    fd_net_free(&t);
}

int main(void) {
    TestCounts c = {0, 0};
    test_groupnorm(&c);
    test_silu(&c);
    test_dropout(&c);
    test_upsample_pad(&c);
    test_attention(&c);
    return test_finish("test_model_layers_gn", &c);
}
