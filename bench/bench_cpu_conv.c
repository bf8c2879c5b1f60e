// bench_cpu_conv.c: time the CPU convolutions (kernels/cpu/cpu_conv.c) on the layers of the CIFAR
// reference model: forward, backward and their sum per layer, median (and least) over repeats.
// Not a test. On a shared machine the least time is the steadier number.
//
// Build after the vq_kernels library (e.g. in build-conv):
//   gcc -O3 -march=x86-64-v3 -std=c11 -D_GNU_SOURCE -I. -Isrc bench/bench_cpu_conv.c
//       build-conv/libvq_kernels.a build-conv/libvq_core.a -lopenblas -lm -o /tmp/bench_cpu_conv
// (one line; from the repository root).
// Run: /tmp/bench_cpu_conv [batch=32] [threads=2] [repeats=15] [layer index, for profiling one]
// To try another chunk target, compile kernels/cpu/cpu_conv.c in as well (it takes precedence over
// the library's copy): ... bench/bench_cpu_conv.c kernels/cpu/cpu_conv.c -DCONV_TARGET_COLUMNS=256 ...
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/common.h"
#include "core/rng.h"
#include "kernels/ops.h"

enum { MAX_REPEATS = 200 };

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof(double), compare_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

// CPU time of the whole process (all BLAS threads, spinning included): with one thread, a measure of
// the work that other processes on the machine barely disturb.
static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void fill(float *x, size_t n, uint64_t a) {
    Rng r = rng_stream(7, RNG_PURPOSE_TEST, a, 0);
    for (size_t i = 0; i < n; i++) x[i] = rng_uniform_range(&r, -1.0f, 1.0f);
}

int main(int argc, char **argv) {
    int batch = argc > 1 ? atoi(argv[1]) : 32;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    int repeats = argc > 3 ? atoi(argv[3]) : 15;
    int only = argc > 4 ? atoi(argv[4]) : -1;
    if (batch < 1 || repeats < 1 || repeats > MAX_REPEATS) fatal("usage: bench_cpu_conv [batch] [threads] [repeats<=200]");
    struct {
        const char *name;
        int cin, hw, cout, k, stride, pad, transposed, bias, first;
    } layers[] = {
        {"enc conv1   3->64  k4s2p1 32->16", 3, 32, 64, 4, 2, 1, 0, 1, 1},
        {"enc conv2  64->128 k4s2p1 16->8 ", 64, 16, 128, 4, 2, 1, 0, 1, 0},
        {"enc conv3 128->128 k3p1   8x8   ", 128, 8, 128, 3, 1, 1, 0, 1, 0},
        {"res conv3 128->32  k3p1   8x8   ", 128, 8, 32, 3, 1, 1, 0, 0, 0},
        {"res conv1  32->128 k1     8x8   ", 32, 8, 128, 1, 1, 0, 0, 0, 0},
        {"pre-vq    128->64  k1     8x8   ", 128, 8, 64, 1, 1, 0, 0, 1, 0},
        {"dec conv1  64->128 k3p1   8x8   ", 64, 8, 128, 3, 1, 1, 0, 1, 0},
        {"dec convT1 128->64 k4s2p1 8->16 ", 128, 8, 64, 4, 2, 1, 1, 1, 0},
        {"dec convT2  64->3  k4s2p1 16->32", 64, 16, 3, 4, 2, 1, 1, 1, 0},
    };
    int nlayers = (int)(sizeof layers / sizeof layers[0]);
    OpsContext ctx;
    ops_context_init(&ctx, "cpu", 0, threads, PRECISION_FP32, 0);
    ConvShape shapes[16];
    size_t ws = 0;
    for (int l = 0; l < nlayers; l++) {
        shapes[l] = conv_shape(batch, layers[l].cin, layers[l].hw, layers[l].hw, layers[l].cout, layers[l].k,
                               layers[l].stride, layers[l].pad, layers[l].transposed, layers[l].bias);
        size_t b = ctx.ops->conv_prepare(&ctx, &shapes[l]);
        ws = b > ws ? b : ws;
    }
    ctx.ops->reserve_workspace(&ctx, ws);
    printf("batch %d, %d BLAS threads, median of %d, workspace %.1f MB\n", batch, threads, repeats, ws / 1048576.0);
    printf("%-34s %9s %9s %9s %9s %9s\n", "layer", "fwd ms", "bwd ms", "total ms", "min ms", "cpu ms");
    double sum_total = 0.0, sum_min = 0.0, sum_cpu = 0.0;
    for (int l = 0; l < nlayers; l++) {
        if (only >= 0 && l != only) continue;
        const ConvShape *s = &shapes[l];
        size_t n_in = conv_in_count(s), n_out = conv_out_count(s), n_w = conv_weight_count(s);
        float *in = ctx.ops->alloc(&ctx, n_in * sizeof(float)), *w = ctx.ops->alloc(&ctx, n_w * sizeof(float));
        float *bias = ctx.ops->alloc(&ctx, (size_t)s->out_channels * sizeof(float));
        float *out = ctx.ops->alloc(&ctx, n_out * sizeof(float)), *dout = ctx.ops->alloc(&ctx, n_out * sizeof(float));
        float *din = ctx.ops->alloc(&ctx, n_in * sizeof(float)), *dw = ctx.ops->alloc(&ctx, n_w * sizeof(float));
        float *db = ctx.ops->alloc(&ctx, (size_t)s->out_channels * sizeof(float));
        fill(in, n_in, 1), fill(w, n_w, 2), fill(bias, (size_t)s->out_channels, 3), fill(dout, n_out, 4);
        const float *b = s->has_bias ? bias : NULL;
        float *dbp = s->has_bias ? db : NULL, *dinp = layers[l].first ? NULL : din;
        double tf[MAX_REPEATS], tb[MAX_REPEATS], tt[MAX_REPEATS], tc[MAX_REPEATS];
        for (int r = -2; r < repeats; r++) {   // two warm-up runs
            double c0 = cpu_seconds(), t0 = wall_time_seconds();
            ctx.ops->conv_forward(&ctx, s, in, w, b, out);
            double t1 = wall_time_seconds();
            ctx.ops->conv_backward(&ctx, s, in, w, dout, dinp, dw, dbp);
            double t2 = wall_time_seconds(), c2 = cpu_seconds();
            if (r >= 0) tf[r] = (t1 - t0) * 1e3, tb[r] = (t2 - t1) * 1e3, tt[r] = (t2 - t0) * 1e3, tc[r] = (c2 - c0) * 1e3;
        }
        double mt = median(tt, repeats), least = tt[0];   // median() sorted tt
        double mc = median(tc, repeats);
        sum_total += mt, sum_min += least, sum_cpu += mc;
        printf("%-34s %9.3f %9.3f %9.3f %9.3f %9.3f\n", layers[l].name, median(tf, repeats), median(tb, repeats), mt,
               least, mc);
        ctx.ops->release(&ctx, in), ctx.ops->release(&ctx, w), ctx.ops->release(&ctx, bias);
        ctx.ops->release(&ctx, out), ctx.ops->release(&ctx, dout), ctx.ops->release(&ctx, din);
        ctx.ops->release(&ctx, dw), ctx.ops->release(&ctx, db);
    }
    printf("%-34s %29.3f %9.3f %9.3f\n", "sum (residual layers once)", sum_total, sum_min, sum_cpu);
    ops_context_destroy(&ctx);
    return 0;
}
