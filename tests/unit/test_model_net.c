// test_model_net.c: the layer list's backward plan (src/model/net_plan.c) on the CPU backend.
// - a graph where a gradient buffer is shared and must be copied on write: every parameter
//   gradient against central finite differences of the loss;
// - the plan's choices on a small conv/relu chain (which inputs run in place, how many buffers);
// - builder mistakes the plan refuses (in place over a value another layer still needs).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/core/rng.h"
#include "fd_fixture.h"

enum { N = 2, C = 3, S = 5 };

// The input, its target and the loss scalars; the layers come next.
static void test_net_begin(FdNet *t) {
    int dims[4] = {N, C, S, S};
    fd_net_begin(t, dims, 2);
    t->target = net_slot(&t->net, "target", SLOT_F32, 0, 4, dims);
}

static void fill_random(float *x, size_t n, uint64_t seed, float scale) {
    Rng rng = rng_stream(seed, RNG_PURPOSE_TEST, 0, 0);
    for (size_t i = 0; i < n; i++) x[i] = scale * rng_uniform_range(&rng, -1.0f, 1.0f);
}

static void test_net_end_build(FdNet *t) {
    fd_net_finalize(t);
    fill_random(t->params, t->reg.total_count, 1, 0.5f);
    fill_random(t->net.slots[t->input].data, t->net.slots[t->input].count, 2, 1.0f);
    fill_random(t->net.slots[t->target].data, t->net.slots[t->target].count, 3, 1.0f);
}

static ConvShape conv3(void) { return conv_shape(N, C, S, S, C, 3, 1, 1, 0, 1); }

// b = relu(a); c = conv1(b); r = conv2(b); c += b; r2 = conv3(r); r2 += c; loss(r2).
// Backward: c's and b's gradients share a buffer after the first add, then conv2 adds into b's
// while c's is still needed by conv1: the plan must copy b's first.
static void build_copy_on_write_graph(FdNet *t) {
    Net *net = &t->net;
    int a = build_conv(net, "conv0", t->input, conv3());
    int b = build_relu(net, "relu_b", a, 0);
    int c = build_conv(net, "conv1", b, conv3());
    int r = build_conv(net, "conv2", b, conv3());
    c = build_add_inplace(net, "c_plus_b", c, b);
    int r2 = build_conv(net, "conv3", r, conv3());
    r2 = build_add_inplace(net, "r2_plus_c", r2, c);
    build_mse_loss(net, "loss", r2, t->target, 1.0f, t->scalars, 0);
}

static int find_layer(const Net *net, const char *name) {
    for (int i = 0; i < net->layer_count; i++)
        if (strcmp(net->layers[i].name, name) == 0) return i;
    return -1;
}

static void test_copy_on_write(TestCounts *c) {
    FdNet t;
    test_net_begin(&t);
    build_copy_on_write_graph(&t);
    test_net_end_build(&t);
    const Layer *conv2 = &t.net.layers[find_layer(&t.net, "conv2")];
    EXPECT(c, conv2->mode[0] == GRAD_ACCUM && conv2->cow_from[0] != NULL,
           "conv2's input gradient should accumulate after a copy (mode %d, cow %p)", conv2->mode[0],
           (void *)conv2->cow_from[0]);
    const Layer *relu_b = &t.net.layers[find_layer(&t.net, "relu_b")];
    EXPECT(c, relu_b->mode[0] == GRAD_ALIAS, "relu_b's gradient buffer is its alone: it should run in place (mode %d)",
           relu_b->mode[0]);

    size_t n = t.reg.trainable_count;
    float *analytic = fd_net_analytic(&t);
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        float keep = t.params[i], h = 1e-3f;
        t.params[i] = keep + h;
        double up = fd_net_loss(&t);
        t.params[i] = keep - h;
        double down = fd_net_loss(&t);
        t.params[i] = keep;
        double numeric = (up - down) / (2.0 * h);
        double err = fabs(numeric - analytic[i]) / (fabs(numeric) + 1e-2);
        if (err > worst) worst = err;
    }
    printf("copy-on-write graph: %zu parameter gradients vs finite differences, worst relative error %.2e\n", n,
           worst);
    EXPECT(c, worst < 2e-2, "worst relative gradient error %.3g", worst);
    free(analytic);
    fd_net_free(&t);
}

// conv -> relu (in place) -> conv -> relu (in place) -> loss: both ReLUs run in place on their
// conv's output gradient, and two gradient buffers suffice (they alternate).
static void test_chain_plan(TestCounts *c) {
    FdNet t;
    test_net_begin(&t);
    Net *net = &t.net;
    int a = build_conv(net, "conv_a", t.input, conv3());
    a = build_relu(net, "relu_a", a, 1);
    int b = build_conv(net, "conv_b", a, conv3());
    b = build_relu(net, "relu_b", b, 1);
    build_mse_loss(net, "loss", b, t.target, 1.0f, t.scalars, 0);
    test_net_end_build(&t);
    EXPECT(c, net->layers[find_layer(net, "relu_a")].mode[0] == GRAD_ALIAS, "relu_a should run in place");
    EXPECT(c, net->layers[find_layer(net, "relu_b")].mode[0] == GRAD_ALIAS, "relu_b should run in place");
    EXPECT(c, net->layers[find_layer(net, "conv_a")].mode[0] == GRAD_NONE, "the input needs no gradient");
    EXPECT(c, net->grad_buffers == 2, "%d gradient buffers, expected 2", net->grad_buffers);
    EXPECT(c, net->scratch_bytes == 0, "no accumulation, but %zu scratch bytes", net->scratch_bytes);
    fd_net_free(&t);
}

// conv -> x; y = conv_y(x); relu(x) in place would overwrite the input conv_y's backward needs.
static void build_bad_inplace(void) {
    FdNet t;
    test_net_begin(&t);
    int x = build_conv(&t.net, "conv", t.input, conv3());
    int y = build_conv(&t.net, "conv_y", x, conv3());
    build_relu(&t.net, "relu_x_in_place", x, 1);
    build_add_inplace(&t.net, "sum", y, x);
    build_mse_loss(&t.net, "loss", y, t.target, 1.0f, t.scalars, 0);
    test_net_end_build(&t);
    fd_net_free(&t);
}

// y = relu(conv(x)) (not in place); y += x in place would overwrite the output relu's backward reads.
static void build_bad_inplace_over_output(void) {
    FdNet t;
    test_net_begin(&t);
    int x = build_conv(&t.net, "conv", t.input, conv3());
    int y = build_relu(&t.net, "relu", x, 0);
    y = build_add_inplace(&t.net, "sum", y, x);
    build_mse_loss(&t.net, "loss", y, t.target, 1.0f, t.scalars, 0);
    test_net_end_build(&t);
    fd_net_free(&t);
}

static void expect_refused(TestCounts *c, void (*build)(void), const char *what) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) _exit(3);
        build();
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT(c, WIFEXITED(status) && WEXITSTATUS(status) == EXIT_ERROR, "%s must be refused (status %d)", what, status);
}

static void test_refuses_bad_inplace(TestCounts *c) {
    expect_refused(c, build_bad_inplace, "an in-place write over a value a later layer's backward needs");
    expect_refused(c, build_bad_inplace_over_output, "an in-place write over a ReLU's output");
}

int main(void) {
    TestCounts c = {0, 0};
    test_copy_on_write(&c);
    test_chain_plan(&c);
    test_refuses_bad_inplace(&c);
    return test_finish("test_model_net", &c);
}
