// bench_cpu_conv.c: time the CPU convolutions (kernels/cpu/cpu_conv*.c) on the layers of the CIFAR
// model (configs/cifar.yaml) or of the small MNIST model (configs/mnist_small.yaml), per engine: forward, backward and their sum per layer, median and
// least over repeats, GFLOP/s and its share of the machine's fp32 peak. Not a test. On a shared
// machine the least time is the steadier number.
//
// Built with the project (build/bench_cpu_conv). Run:
//   build/bench_cpu_conv [batch=32] [threads=2] [repeats=15] [engine=both|onednn|im2col] [peak GFLOP/s=157]
//                        [model=cifar|small]
// The default peak is this machine's (docs/BENCHMARKS.md): 2 cores x 2 FMA pipes x 8 fp32 lanes x
// 2 flops x 2.45 GHz.
// GFLOP/s counts 2 k^2 C_in C_out per output pixel and direction (the taps in the padding too), for
// the forward, the weight gradient and (but for the first layer) the data gradient.
// To try another chunk target, compile kernels/cpu/cpu_conv.c in as well (it takes precedence over the
// library's copy): gcc ... bench/bench_cpu_conv.c kernels/cpu/cpu_conv.c -DCONV_TARGET_COLUMNS=512 ...
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/common.h"
#include "core/rng.h"
#include "kernels/cpu/cpu_conv_internal.h"
#include "kernels/ops.h"

enum { MAX_REPEATS = 200 };

typedef struct {
    const char *name;
    int cin, hw, cout, k, stride, pad, transposed, bias, first, count;   // count: times in the model
    int output_padding;
} Layer;

// The CIFAR model: h = 128, residual hidden 32, two residual layers in each of two stacks, D = 64.
static const Layer LAYERS[] = {
    {"enc conv1   3->64  k4s2p1 32->16", 3, 32, 64, 4, 2, 1, 0, 1, 1, 1, 0},
    {"enc conv2  64->128 k4s2p1 16->8 ", 64, 16, 128, 4, 2, 1, 0, 1, 0, 1, 0},
    {"enc conv3 128->128 k3p1   8x8   ", 128, 8, 128, 3, 1, 1, 0, 1, 0, 1, 0},
    {"res conv3 128->32  k3p1   8x8   ", 128, 8, 32, 3, 1, 1, 0, 0, 0, 4, 0},
    {"res conv1  32->128 k1     8x8   ", 32, 8, 128, 1, 1, 0, 0, 0, 0, 4, 0},
    {"pre-vq    128->64  k1     8x8   ", 128, 8, 64, 1, 1, 0, 0, 1, 0, 1, 0},
    {"dec conv1  64->128 k3p1   8x8   ", 64, 8, 128, 3, 1, 1, 0, 1, 0, 1, 0},
    {"dec convT1 128->64 k4s2p1 8->16 ", 128, 8, 64, 4, 2, 1, 1, 1, 0, 1, 0},
    {"dec convT2  64->3  k4s2p1 16->32", 64, 16, 3, 4, 2, 1, 1, 1, 0, 1, 0},
};
enum { LAYER_COUNT = sizeof LAYERS / sizeof LAYERS[0] };

// The small MNIST model (model.arch small, widths 16 32 64); hw is the layer's input side.
static const Layer SMALL_LAYERS[] = {
    {"enc conv1   1->16  k3s2p1 28->14", 1, 28, 16, 3, 2, 1, 0, 1, 1, 1, 0},
    {"enc conv2  16->32  k3s2p1 14->7 ", 16, 14, 32, 3, 2, 1, 0, 1, 0, 1, 0},
    {"enc conv3  32->64  k7     7->1  ", 32, 7, 64, 7, 1, 0, 0, 1, 0, 1, 0},
    {"dec convT1 64->32  k7     1->7  ", 64, 1, 32, 7, 1, 0, 1, 1, 0, 1, 0},
    {"dec convT2 32->16  k3s2p1op1 7->14", 32, 7, 16, 3, 2, 1, 1, 1, 0, 1, 1},
    {"dec convT3 16->1   k3s2p1op1 14->28", 16, 14, 1, 3, 2, 1, 1, 1, 0, 1, 1},
};
enum { SMALL_LAYER_COUNT = sizeof SMALL_LAYERS / sizeof SMALL_LAYERS[0] };

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof(double), compare_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static void fill(float *x, size_t n, uint64_t a) {
    Rng r = rng_stream(7, RNG_PURPOSE_TEST, a, 0);
    for (size_t i = 0; i < n; i++) x[i] = rng_uniform_range(&r, -1.0f, 1.0f);
}

// Nominal flops of one forward + backward of the layer.
static double layer_flops(const ConvShape *s, int first) {
    int grid_pixels = s->transposed ? s->in_height * s->in_width : s->out_height * s->out_width;
    double one = 2.0 * s->batch * grid_pixels * (double)s->in_channels * s->out_channels * s->kernel * s->kernel;
    return one * (first ? 2 : 3);
}

// CPU time of the whole process (all threads, spinning included): with one thread, a measure of the
// work that other processes on the machine barely disturb.
static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    double fwd, bwd, total, least, cpu, gflops;
} Timing;

static Timing time_layer(OpsContext *ctx, const ConvShape *s, const Layer *l, int repeats) {
    size_t n_in = conv_in_count(s), n_out = conv_out_count(s), n_w = conv_weight_count(s), n_b = (size_t)s->out_channels;
    float *in = ctx->ops->alloc(ctx, n_in * sizeof(float)), *w = ctx->ops->alloc(ctx, n_w * sizeof(float));
    float *bias = ctx->ops->alloc(ctx, n_b * sizeof(float)), *out = ctx->ops->alloc(ctx, n_out * sizeof(float));
    float *dout = ctx->ops->alloc(ctx, n_out * sizeof(float)), *din = ctx->ops->alloc(ctx, n_in * sizeof(float));
    float *dw = ctx->ops->alloc(ctx, n_w * sizeof(float)), *db = ctx->ops->alloc(ctx, n_b * sizeof(float));
    fill(in, n_in, 1), fill(w, n_w, 2), fill(bias, n_b, 3), fill(dout, n_out, 4);
    const float *b = s->has_bias ? bias : NULL;
    float *dbp = s->has_bias ? db : NULL, *dinp = l->first ? NULL : din;
    double tf[MAX_REPEATS], tb[MAX_REPEATS], tt[MAX_REPEATS], tc[MAX_REPEATS];
    for (int r = -2; r < repeats; r++) {   // two warm-up runs
        double c0 = cpu_seconds(), t0 = wall_time_seconds();
        ctx->ops->conv_forward(ctx, s, in, w, b, out);
        double t1 = wall_time_seconds();
        ctx->ops->conv_backward(ctx, s, in, w, dout, dinp, dw, dbp);
        double t2 = wall_time_seconds(), c2 = cpu_seconds();
        if (r >= 0) tf[r] = (t1 - t0) * 1e3, tb[r] = (t2 - t1) * 1e3, tt[r] = (t2 - t0) * 1e3, tc[r] = (c2 - c0) * 1e3;
    }
    Timing t;
    t.fwd = median(tf, repeats), t.bwd = median(tb, repeats), t.total = median(tt, repeats), t.least = tt[0];
    t.cpu = median(tc, repeats);
    t.gflops = layer_flops(s, l->first) / (t.least * 1e6);
    void *buffers[] = {in, w, bias, out, dout, din, dw, db};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) ctx->ops->release(ctx, buffers[i]);
    return t;
}

// %core: the flops per CPU-second (the median cpu ms) against one core's share of the peak. On a
// shared machine the wall clock counts the time other processes held the cores; the CPU time
// (spinning in OpenMP barriers included) does not, so at 1 thread this is the steadier efficiency.
static double core_share(const ConvShape *s, const Layer *l, double cpu_ms, double peak, int threads) {
    return 100.0 * layer_flops(s, l->first) / (cpu_ms * 1e6) / (peak / threads);
}

static void bench_engine(CpuConv engine, const Layer *layers, int count, int batch, int threads, int repeats,
                         double peak) {
    OpsContext ctx;
    ops_context_init_with_conv(&ctx, "cpu", 0, threads, PRECISION_FP32, 0, engine);
    ConvShape shapes[(int)LAYER_COUNT > (int)SMALL_LAYER_COUNT ? (int)LAYER_COUNT : (int)SMALL_LAYER_COUNT];
    size_t ws = 0;
    for (int l = 0; l < count; l++) {
        const Layer *y = &layers[l];
        shapes[l] = conv_shape(batch, y->cin, y->hw, y->hw, y->cout, y->k, y->stride, y->pad, y->transposed, y->bias);
        if (y->output_padding) conv_shape_set_output_padding(&shapes[l], y->output_padding);
        size_t b = ctx.ops->conv_prepare(&ctx, &shapes[l]);
        ws = b > ws ? b : ws;
    }
    ctx.ops->reserve_workspace(&ctx, ws);
    printf("\n%s: batch %d, %d threads, median of %d (least for GFLOP/s), workspace %.1f MB, peak %.0f GFLOP/s\n",
           cpu_conv_name(engine), batch, threads, repeats, ws / 1048576.0, peak);
    printf("%-34s %8s %8s %8s %8s %8s %7s %6s %6s %s\n", "layer", "fwd ms", "bwd ms", "total", "least", "cpu ms",
           "GFLOP/s", "%peak", "%core", engine == CPU_CONV_ONEDNN ? "reorders/call, MB; implementations" : "");
    double model_ms = 0.0, model_cpu = 0.0, model_flops = 0.0;
    for (int l = 0; l < count; l++) {
        const ConvShape *s = &shapes[l];
        long reorders0 = 0, reorders1 = 0;
        double bytes0 = 0.0, bytes1 = 0.0;
        int dnnl = engine == CPU_CONV_ONEDNN && !conv_is_dense(s);   // dense layers run as gemms in any case
        if (dnnl) onednn_reorder_counts(((CpuBackend *)ctx.backend)->onednn, s, &reorders0, &bytes0);
        Timing t = time_layer(&ctx, s, &layers[l], repeats);
        char info[512] = "";
        if (engine == CPU_CONV_ONEDNN && !dnnl) snprintf(info, sizeof info, "0, 0; dense: three OpenBLAS gemms");
        if (dnnl) {
            const OnednnState *st = ((CpuBackend *)ctx.backend)->onednn;
            onednn_reorder_counts(st, s, &reorders1, &bytes1);
            char impls[400];
            onednn_plan_info(st, s, impls, sizeof impls);
            double calls = repeats + 2;
            snprintf(info, sizeof info, "%.0f, %.2f; %s", (reorders1 - reorders0) / calls,
                     (bytes1 - bytes0) / calls / 1048576.0, impls);
        }
        model_ms += t.least * layers[l].count;
        model_cpu += t.cpu * layers[l].count;
        model_flops += layer_flops(s, layers[l].first) * layers[l].count;
        printf("%-34s %8.3f %8.3f %8.3f %8.3f %8.3f %7.1f %5.0f%% %5.0f%% %s\n", layers[l].name, t.fwd, t.bwd, t.total,
               t.least, t.cpu, t.gflops, 100.0 * t.gflops / peak, core_share(s, &layers[l], t.cpu, peak, threads), info);
    }
    double gflops = model_flops / (model_ms * 1e6), core = 100.0 * model_flops / (model_cpu * 1e6) / (peak / threads);
    printf("%-34s %26s %8.3f %8.3f %7.1f %5.0f%% %5.0f%% (every layer as often as the model has it: %.0f images/s of "
           "convolutions)\n", "model", "", model_ms, model_cpu, gflops, 100.0 * gflops / peak, core, batch / (model_ms * 1e-3));
    ops_context_destroy(&ctx);
}

int main(int argc, char **argv) {
    int batch = argc > 1 ? atoi(argv[1]) : 32;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    int repeats = argc > 3 ? atoi(argv[3]) : 15;
    const char *engine = argc > 4 ? argv[4] : "both";
    double peak = argc > 5 ? atof(argv[5]) : 156.8;
    const char *model = argc > 6 ? argv[6] : "cifar";
    int small = strcmp(model, "small") == 0;
    if (batch < 1 || threads < 1 || repeats < 1 || repeats > MAX_REPEATS || peak <= 0.0 ||
        (!small && strcmp(model, "cifar") != 0))
        fatal("usage: bench_cpu_conv [batch] [threads] [repeats<=200] [both|onednn|im2col] [peak GFLOP/s] "
              "[cifar|small]");
    const Layer *layers = small ? SMALL_LAYERS : LAYERS;
    int count = small ? SMALL_LAYER_COUNT : LAYER_COUNT;
    if (strcmp(engine, "both") == 0 || strcmp(engine, "im2col") == 0)
        bench_engine(CPU_CONV_IM2COL, layers, count, batch, threads, repeats, peak);
    if ((strcmp(engine, "both") == 0 && onednn_compiled()) || strcmp(engine, "onednn") == 0)
        bench_engine(cpu_conv_from_name("onednn"), layers, count, batch, threads, repeats, peak);
    return 0;
}
