// grad_check.h: what the op tests share beyond test_util.h: random fills, errors against a double
// reference, and central finite differences of a loss that the test computes in double.
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"

static inline void grad_fill_normal(float *x, size_t n, float mean, float scale, uint64_t stream) {
    Rng r = rng_stream(2024, RNG_PURPOSE_TEST, stream, 7);
    for (size_t i = 0; i < n; i++) x[i] = mean + scale * rng_normal(&r);
}

static inline void grad_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t stream) {
    Rng r = rng_stream(2024, RNG_PURPOSE_TEST, stream, 8);
    for (size_t i = 0; i < n; i++) x[i] = rng_uniform_range(&r, lo, hi);
}

// max|got - want| / max(max|want|, tiny): the normwise error against a double reference.
static inline double grad_error(const float *got, const double *want, size_t n) {
    double diff = 0.0, ref = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (isnan(d)) return INFINITY;
        if (d > diff) diff = d;
        if (fabs(want[i]) > ref) ref = fabs(want[i]);
    }
    return diff / ref;
}

// sum_i w_i y_i in double: the scalar loss whose gradient dy = w the tests feed to a backward.
static inline double grad_dot(const float *y, const float *w, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)y[i] * (double)w[i];
    return s;
}

// The loss at the current inputs: the test runs the forward op on them and returns the loss.
typedef double (*GradLoss)(void *state);

// Central differences (L(x + h) - L(x - h)) / 2h at every `stride`-th entry of x (which the loss
// reads), against grad. Returns max|fd - grad| / max|grad| over the entries checked (all of grad
// counts for the scale), and leaves x as it was.
static inline double grad_fd_error(GradLoss loss, void *state, float *x, size_t n, const float *grad, size_t stride,
                                   float h) {
    double diff = 0.0, scale = 1e-30;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)grad[i]) > scale) scale = fabs((double)grad[i]);
    for (size_t i = 0; i < n; i += stride) {
        const float keep = x[i];
        x[i] = keep + h;
        const double plus = loss(state);
        x[i] = keep - h;
        const double minus = loss(state);
        x[i] = keep;
        const double fd = (plus - minus) / ((double)(keep + h) - (double)(keep - h));
        const double d = fabs(fd - (double)grad[i]);
        if (isnan(d)) return INFINITY;
        if (d > diff) diff = d;
    }
    return diff / scale;
}
