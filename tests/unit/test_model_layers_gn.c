// test_model_layers_gn.c: the groupnorm arch's layer kinds (groupnorm, silu, dropout, upsample,
// pad, the attention block) in small networks on the CPU backend: conv0 -> the layer(s) -> MSE
// against a random target. Every trainable gradient (conv0's carries the layer's input gradient,
// plus the layer's own parameters) is checked against central finite differences of the loss;
// dropout also against its mask (kept fraction, same mask every forward of a step, identity in
// evaluation), and the attention's plan (its input's gradient sums the residual and the norm).
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
    int32_t step;
} Case;

// input -> conv0 (3x3, C -> C): returns conv0's output slot.
static int begin(Case *t) {
    memset(t, 0, sizeof *t);
    ops_context_init(&t->ctx, "cpu", 0, 1, PRECISION_FP32, 1);
    param_registry_init(&t->reg);
    net_init(&t->net, &t->ctx, &t->reg);
    int dims[4] = {N, C, S, S}, sdims[1] = {1};
    t->input = net_slot(&t->net, "input", SLOT_F32, 0, 4, dims);
    t->scalars = net_slot(&t->net, "scalars", SLOT_F32, 0, 1, sdims);
    return build_conv(&t->net, "conv0", t->input, conv_shape(N, C, S, S, C, 3, 1, 1, 0, 1));
}

// The loss on slot out against a target of its shape; buffers, random values, the step key.
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
    // GroupNorm affine weights near 1 so the normalized values matter
    for (int i = 0; i < t->reg.count; i++)
        if (strstr(t->reg.entries[i].key, "norm") && strstr(t->reg.entries[i].key, ".weight"))
            for (size_t j = 0; j < t->reg.entries[i].count; j++) t->params[t->reg.entries[i].offset + j] += 1.0f;
    grad_fill_normal(t->net.slots[t->input].data, t->net.slots[t->input].count, 0.0f, 1.0f, 2);
    grad_fill_normal(t->net.slots[t->target].data, t->net.slots[t->target].count, 0.0f, 1.0f, 3);
    t->step = 3;
    t->net.seed = 99;
    t->net.step = &t->step;
    t->net.first_sample = 5;
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

// Backward, then every trainable gradient against central differences.
static void check_gradients(TestCounts *c, Case *t, const char *what) {
    loss_of(t);
    net_backward(&t->net);
    size_t n = t->reg.trainable_count;
    float *analytic = xmalloc(n * sizeof(float));
    memcpy(analytic, t->grads, n * sizeof(float));
    double err = grad_fd_error(loss_of, t, t->params, n, analytic, 1, 1e-2f);
    printf("%-34s %5zu parameter gradients vs finite differences: error %.2e of max|grad|\n", what, n, err);
    EXPECT(c, err < 5e-3, "%s: gradient error %.3g", what, err);
    free(analytic);
}

static void test_groupnorm(TestCounts *c) {
    Case t;
    int x = begin(&t);
    finish(&t, build_groupnorm(&t.net, "norm", x, 2, 1e-6f));
    check_gradients(c, &t, "groupnorm (2 groups)");
    // the output of every (sample, group) has mean beta-weighted 0 when weight 1, bias 0
    float *p = t.params + param_registry_find(&t.reg, "norm.weight")->offset;
    for (int i = 0; i < 2 * C; i++) p[i] = i < C ? 1.0f : 0.0f;   // weight then bias are adjacent
    loss_of(&t);
    const float *y = t.net.slots[t.out].data;
    double mean = 0.0, sq = 0.0;
    size_t group = (size_t)(C / 2) * S * S;
    for (size_t i = 0; i < group; i++) mean += y[i], sq += (double)y[i] * y[i];
    mean /= (double)group;
    EXPECT(c, fabs(mean) < 1e-5 && fabs(sq / (double)group - 1.0) < 1e-3,
           "a group's output has mean %g and mean square %g, expected 0 and 1", mean, sq / (double)group);
    release(&t);
}

static void test_silu(TestCounts *c) {
    Case t;
    int x = begin(&t);
    finish(&t, build_silu(&t.net, "silu", x));
    check_gradients(c, &t, "silu");
    release(&t);
}

static void test_dropout(TestCounts *c) {
    Case t;
    int x = begin(&t);
    int s = build_silu(&t.net, "silu", x);
    finish(&t, build_dropout_inplace(&t.net, "dropout", s, 0.5f));
    EXPECT(c, t.net.layers[t.net.layer_count - 2].in[0] == t.out, "the dropout should write over its input");
    check_gradients(c, &t, "silu -> dropout 0.5 (in place)");
    size_t n = t.net.slots[t.out].count, zeros = 0;
    const float *y = t.net.slots[t.out].data;
    for (size_t i = 0; i < n; i++) zeros += y[i] == 0.0f;
    EXPECT(c, zeros > n / 4 && zeros < 3 * n / 4, "%zu of %zu dropped at p = 0.5", zeros, n);
    float *kept = xmalloc(n * sizeof(float));
    memcpy(kept, y, n * sizeof(float));
    t.step = 4;   // another step draws another mask
    loss_of(&t);
    EXPECT(c, memcmp(kept, y, n * sizeof(float)) != 0, "step 4 drew step 3's mask");
    t.net.training = 0;   // evaluation: the identity, so the output is silu's
    loss_of(&t);
    size_t zero_eval = 0;
    for (size_t i = 0; i < n; i++) zero_eval += y[i] == 0.0f;
    EXPECT(c, zero_eval == 0, "%zu zeros in evaluation (dropout must be off)", zero_eval);
    free(kept);
    release(&t);
}

static void test_upsample_pad(TestCounts *c) {
    Case t;
    int x = begin(&t);
    finish(&t, build_upsample2x(&t.net, "up", x));
    EXPECT(c, t.net.slots[t.out].dims[2] == 2 * S && t.net.slots[t.out].dims[3] == 2 * S, "upsample: %dx%d",
           t.net.slots[t.out].dims[2], t.net.slots[t.out].dims[3]);
    check_gradients(c, &t, "nearest x2 upsample");
    release(&t);
    x = begin(&t);
    int p = build_pad(&t.net, "pad", x, 0, 1, 0, 1);
    // diffusers' Downsample2D: pad right/bottom by 1, conv3x3 stride 2 without padding
    finish(&t, build_conv(&t.net, "down", p, conv_shape(N, C, S + 1, S + 1, C, 3, 2, 0, 0, 1)));
    EXPECT(c, t.net.slots[t.out].dims[2] == S / 2, "downsample: %d rows, expected %d", t.net.slots[t.out].dims[2],
           S / 2);
    check_gradients(c, &t, "pad (0,1,0,1) -> conv3x3 stride 2");
    release(&t);
}

static void test_attention(TestCounts *c) {
    Case t;
    int x = begin(&t);
    finish(&t, build_attention_block(&t.net, "attn", x, 2, 1e-6f));
    const ParamEntry *w = param_registry_find(&t.reg, "attn.to_q.weight");
    EXPECT(c, w && w->ndim == 2 && w->shape[0] == C && w->shape[1] == C, "to_q.weight should be nn.Linear's [C, C]");
    const Layer *norm = &t.net.layers[1];   // conv0, attn.group_norm, ...
    EXPECT(c, norm->kind == LAYER_GROUPNORM && norm->mode[0] == GRAD_ACCUM,
           "the group_norm's input gradient should accumulate onto the residual's (mode %d)", (int)norm->mode[0]);
    check_gradients(c, &t, "attention block");
    release(&t);
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
