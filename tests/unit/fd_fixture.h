// fd_fixture.h: a small network on the CPU backend whose parameter gradients the model tests
// (test_model_net.c, test_model_layers_*.c) check against finite differences of an MSE loss.
// Begin (input and loss-scalar slots), build the layers, finish (buffers, random values), check,
// free: the same steps in every such test, so they live here once.
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/core/common.h"
#include "../../src/model/layers.h"
#include "grad_check.h"
#include "test_util.h"

typedef struct {
    OpsContext ctx;
    ParamRegistry reg;
    Net net;
    float *params, *grads;
    int input, target, scalars, out;
    int32_t step;
} FdNet;

// A CPU context, registry and net with an [N, C, H, W] input slot and the loss's scalar slot.
static inline void fd_net_begin(FdNet *t, const int input_dims[4], int scalar_count) {
    memset(t, 0, sizeof *t);
    ops_context_init(&t->ctx, "cpu", 0, 1, PRECISION_FP32, 1);
    param_registry_init(&t->reg);
    net_init(&t->net, &t->ctx, &t->reg);
    int sdims[1] = {scalar_count};
    t->input = net_slot(&t->net, "input", SLOT_F32, 0, 4, input_dims);
    t->scalars = net_slot(&t->net, "scalars", SLOT_F32, 0, 1, sdims);
}

// After the layers (loss included): the parameter and gradient buffers, and the net's plan.
static inline void fd_net_finalize(FdNet *t) {
    param_registry_finalize(&t->reg);
    t->params = t->ctx.ops->alloc(&t->ctx, t->reg.total_count * sizeof(float));
    t->grads = t->ctx.ops->alloc(&t->ctx, t->reg.trainable_count * sizeof(float));
    net_finalize(&t->net, t->params, t->grads);
}

// The MSE loss of slot out against a target of its shape; then buffers and random parameters,
// input and target.
static inline void fd_net_finish_mse(FdNet *t, int out) {
    const Slot *o = &t->net.slots[out];
    t->out = out;
    t->target = net_slot(&t->net, "target", SLOT_F32, 0, o->ndim, o->dims);
    build_mse_loss(&t->net, "loss", out, t->target, 1.0f, t->scalars, 0);
    fd_net_finalize(t);
    grad_fill_uniform(t->params, t->reg.total_count, -0.5f, 0.5f, 1);
    grad_fill_normal(t->net.slots[t->input].data, t->net.slots[t->input].count, 0.0f, 1.0f, 2);
    grad_fill_normal(t->net.slots[t->target].data, t->net.slots[t->target].count, 0.0f, 1.0f, 3);
}

static inline void fd_net_free(FdNet *t) {
    net_free(&t->net);
    t->ctx.ops->release(&t->ctx, t->params);
    t->ctx.ops->release(&t->ctx, t->grads);
    ops_context_destroy(&t->ctx);
}

// A GradLoss: the whole forward at the current parameters, the loss scalar.
static inline double fd_net_loss(void *state) {
    FdNet *t = state;
    net_forward_range(&t->net, 0, t->net.layer_count);
    return ((float *)t->net.slots[t->scalars].data)[0];
}

// Forward and backward; a copy of the trainable gradients (the finite differences overwrite the
// buffer). The caller frees it.
static inline float *fd_net_analytic(FdNet *t) {
    fd_net_loss(t);
    net_backward(&t->net);
    float *analytic = xmalloc(t->reg.trainable_count * sizeof(float));
    memcpy(analytic, t->grads, t->reg.trainable_count * sizeof(float));
    return analytic;
}

// Every trainable gradient against central differences (step 1e-2), normwise error under 5e-3.
static inline void fd_net_check_gradients(TestCounts *c, FdNet *t, const char *what) {
    size_t n = t->reg.trainable_count;
    float *analytic = fd_net_analytic(t);
    double err = grad_fd_error(fd_net_loss, t, t->params, n, analytic, 1, 1e-2f);
    printf("%-40s %5zu parameter gradients vs finite differences: error %.2e of max|grad|\n", what, n, err);
    EXPECT(c, err < 5e-3, "%s: gradient error %.3g", what, err);
    free(analytic);
}
