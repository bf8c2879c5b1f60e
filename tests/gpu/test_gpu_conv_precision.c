// test_gpu_conv_precision.c: the CUDA convolutions in fp32, tf32 and bf16 (each with cuDNN's
// heuristic "deterministic" choice and with benchmarked algorithms) against the CPU backend's
// fp32 convolutions, forward and backward, at every convolution shape of the resnet model
// (CIFAR size, h = 128, residual hidden 32, D = 64). Exits 77 (SKIP) when the build has no CUDA
// backend or no GPU is visible.
//
// Tolerance. Every result value is a sum r = sum_{i<K} a_i b_i (a forward output, an input-gradient
// value, a weight-gradient value), K its accumulation length: at most Cin k^2 for the forward,
// Cout k^2 for the input gradient, batch x (grid pixels) for the weight gradient. Two sums of the
// same op, computed by the CPU backend on |a|, |b| and on a^2, b^2, give for every value
//   A = sum |a_i b_i|      and      Q = sqrt(sum (a_i b_i)^2).
// The GPU value may differ from the CPU value by at most the sum of
//   - rounding the operands to the precision's significand (unit roundoff u_in each: fp32 0,
//     tf32 2^-10 for 10 stored bits (2^-10, not 2^-11, in case tensor cores truncate), bf16 2^-8
//     for 7 stored bits, rounded to nearest by cuda_conv.cu): the error sum_i a_i b_i (d_ai + d_bi
//     + d_ai d_bi) has independent zero-mean terms bounded by c_i = (2 u_in + u_in^2)|a_i b_i|, so by
//     Hoeffding it exceeds LAMBDA sqrt(sum c_i^2) = LAMBDA (2 u_in + u_in^2) Q with probability at
//     most 2 exp(-LAMBDA^2 / 2) = 2.5e-14 (LAMBDA = 8); truncation would add a bias of at most
//     u_in |r|, which is added too;
//   - accumulating the K terms in fp32 on the GPU and on the CPU, in any order (the worst case,
//     gamma_K = K u / (1 - K u), times A; u = 2^-23 on the GPU in case an accumulator truncates,
//     2^-24 on the CPU), plus 2^-23 |r| for the final fp32 roundings (bias add);
//   - rounding the result to bf16 (cuDNN's y, dx and dw are bf16 in bf16 mode): u_out = 2^-8 of
//     the value (0 otherwise).
// So the operand precision enters as its mantissa bits, and the accumulation length as K (worst
// case) and through Q (~ sqrt(K) for random data). The check is |gpu - cpu| <= bound for every
// value; the worst ratio |gpu - cpu| / bound is printed for each mode (well below 1 is normal),
// with the normwise error max|gpu - cpu| / max|cpu| that test_gpu_ops uses.
// The bias gradient is the same double-precision reduction of the fp32 dout in every precision:
// within one float rounding (2^-23 |r|) plus the double sums' rounding (2 gamma_K(2^-53) A).
//
// Also:
// - bf16 rounding, exactly: identity 1x1 convolutions (Conv2d and ConvTranspose2d, 8 -> 8
//   channels, bias) must give bf16(x) + bias bit for bit, and din = bf16(dout), bf16() being
//   round-to-nearest-even (inputs include exact ties, which truncation or round-half-up would get
//   wrong). The sum of one exact product and zeros is exact in any order, so only the conversions
//   are tested.
// - bf16 plans reserve the bf16 staging copies in conv_prepare's workspace (on compute capability
//   >= 8.0 every model shape is expected to run in bf16; a layer that fell back to tf32, with a
//   warning, fails here).
// - bf16 deterministic: two runs on one context and one on a second context are bit-identical.
// Results are poisoned with NaN before each op, so an op that does not overwrite them fails.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "gpu_conv_cases.h"
#include "gpu_run.h"
#include "gpu_test.h"
#include "test_util.h"
#ifdef VQ_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#define LAMBDA 8.0
#define U_FP32 (1.0 / 16777216.0)           // 2^-24: fp32 rounding to nearest
#define U_TF32 (1.0 / 1024.0)               // 2^-10
#define U_BF16 (1.0 / 256.0)                // 2^-8
#define U_DOUBLE (1.0 / 9007199254740992.0) // 2^-53

enum { CONV_BATCH = 8 };

static const ConvCase CASES[] = {RESNET_CIFAR_CONV_CASES};
enum { CASE_COUNT = sizeof CASES / sizeof CASES[0] };

typedef struct {
    const char *name;
    Precision precision;
    int deterministic;
    double u_in, u_out;
} Mode;

static const Mode MODES[] = {
    {"fp32 deterministic", PRECISION_FP32, 1, 0.0, 0.0},
    {"fp32 benchmarked", PRECISION_FP32, 0, 0.0, 0.0},
    {"tf32 deterministic", PRECISION_TF32, 1, U_TF32, 0.0},
    {"tf32 benchmarked", PRECISION_TF32, 0, U_TF32, 0.0},
    {"bf16 deterministic", PRECISION_BF16, 1, U_BF16, U_BF16},
    {"bf16 benchmarked", PRECISION_BF16, 0, U_BF16, U_BF16},
};
enum { MODE_COUNT = sizeof MODES / sizeof MODES[0] };

// ---- helpers ---------------------------------------------------------------------------------

static void fill_uniform(float *x, size_t n, float lo, float hi, uint64_t stream) {
    Rng r = rng_stream(78, RNG_PURPOSE_TEST, stream, 0);
    for (size_t i = 0; i < n; i++) x[i] = rng_uniform_range(&r, lo, hi);
}

static float *map_floats(const float *x, size_t n, int square) {
    float *y = alloc_floats(n);
    for (size_t i = 0; i < n; i++) y[i] = square ? x[i] * x[i] : fabsf(x[i]);
    return y;
}

static double gamma_k(double k, double u) { return k * u / (1.0 - k * u); }

// Round to nearest even to bf16 (8 significant bits), kept in a float. Finite inputs only.
static float bf16_round(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    bits += 0x7fffu + ((bits >> 16) & 1u);   // a tie carries only when the kept part is odd
    bits &= 0xffff0000u;
    memcpy(&x, &bits, sizeof x);
    return x;
}

// ---- the model's shapes against the CPU ------------------------------------------------------

typedef struct {
    ConvShape shape;
    int want_din;                       // not for the first layer (3 input channels), as the model
    float *in, *weight, *bias, *dout;   // inputs
    ConvResult ref;                     // CPU, fp32
    ConvResult abs_sum;                 // A: the CPU ops on |in|, |weight|, |dout| (zero bias)
    ConvResult sq_sum;                  // Q^2: on in^2, weight^2, dout^2 (zero bias)
    double k_out, k_din, k_dweight;     // accumulation lengths
} Reference;

static void reference_init(Reference *r, OpsContext *cpu, const ConvCase *cc, uint64_t seed) {
    memset(r, 0, sizeof *r);
    ConvShape s = conv_case_shape(CONV_BATCH, cc);
    r->shape = s;
    r->want_din = cc->cin != 3;
    size_t nin = conv_in_count(&s), nw = conv_weight_count(&s), nout = conv_out_count(&s);
    // PyTorch's default init bound 1/sqrt(fan_in) for the weight and bias; activations and
    // gradients of order 1.
    int fan_in = (cc->transposed ? cc->cout : cc->cin) * cc->k * cc->k;
    float bound = 1.0f / sqrtf((float)fan_in);
    r->in = alloc_floats(nin), r->weight = alloc_floats(nw), r->dout = alloc_floats(nout);
    r->bias = alloc_floats((size_t)cc->cout);
    fill_uniform(r->in, nin, -1.0f, 1.0f, seed);
    fill_uniform(r->weight, nw, -bound, bound, seed + 1);
    fill_uniform(r->bias, (size_t)cc->cout, -bound, bound, seed + 2);
    fill_uniform(r->dout, nout, -1.0f, 1.0f, seed + 3);
    run_conv(cpu, s, r->want_din, r->in, r->weight, r->bias, r->dout, &r->ref);

    float *zero_bias = alloc_floats((size_t)cc->cout);
    memset(zero_bias, 0, (size_t)cc->cout * sizeof(float));
    for (int square = 0; square <= 1; square++) {
        float *in = map_floats(r->in, nin, square), *weight = map_floats(r->weight, nw, square);
        float *dout = map_floats(r->dout, nout, square);
        run_conv(cpu, s, r->want_din, in, weight, zero_bias, dout, square ? &r->sq_sum : &r->abs_sum);
        free(in);
        free(weight);
        free(dout);
    }
    free(zero_bias);

    r->k_out = (double)cc->cin * cc->k * cc->k;
    r->k_din = (double)cc->cout * cc->k * cc->k;
    // The weight gradient sums over the batch and the pixels of the "grid" side: the output of a
    // Conv2d, the input of a ConvTranspose2d.
    r->k_dweight = (double)CONV_BATCH * (cc->transposed ? (double)s.in_height * s.in_width
                                                        : (double)s.out_height * s.out_width);
}

static void reference_free(Reference *r) {
    free(r->in);
    free(r->weight);
    free(r->bias);
    free(r->dout);
    result_free(&r->ref);
    result_free(&r->abs_sum);
    result_free(&r->sq_sum);
}

typedef struct {
    double ratio;      // worst |gpu - cpu| / bound
    double normwise;   // worst max|gpu - cpu| / max|cpu|
} Worst;

// |got - want| <= bound for every value (see the top of the file); updates the worst figures.
static void check_tensor(TestCounts *t, Worst *worst, const Mode *mode, const char *what, const float *got,
                         const float *want, const float *abs_sum, const float *sq_sum, size_t n, double k) {
    const double acc = gamma_k(k, 2.0 * U_FP32) + gamma_k(k, U_FP32);
    double ratio = 0.0;
    size_t worst_i = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)want[i]), a = abs_sum[i], q = sqrt((double)sq_sum[i]);
        double before_out = LAMBDA * (2.0 * mode->u_in + mode->u_in * mode->u_in) * q + mode->u_in * r + acc * a +
                            2.0 * U_FP32 * r;
        double bound = before_out + mode->u_out * (r + before_out);
        double diff = fabs((double)got[i] - (double)want[i]);
        double this_ratio = isnan(diff) ? INFINITY : diff == 0.0 ? 0.0 : bound > 0.0 ? diff / bound : INFINITY;
        if (this_ratio > ratio) ratio = this_ratio, worst_i = i;
    }
    EXPECT(t, ratio <= 1.0, "%s %s: value %zu is %.9g, the CPU's %.9g: error %.3g times the bound", mode->name, what,
           worst_i, got[worst_i], want[worst_i], ratio);
    worst->ratio = max_d(worst->ratio, ratio);
    worst->normwise = max_d(worst->normwise, test_max_rel_error(got, want, n));
}

static void check_against_cpu(TestCounts *t, Worst *worst, const Mode *mode, const char *name, const Reference *r,
                              const ConvResult *got) {
    const ConvShape *s = &r->shape;
    char what[160];
    snprintf(what, sizeof what, "%s forward", name);
    check_tensor(t, worst, mode, what, got->out, r->ref.out, r->abs_sum.out, r->sq_sum.out, conv_out_count(s),
                 r->k_out);
    if (r->want_din) {
        snprintf(what, sizeof what, "%s din", name);
        check_tensor(t, worst, mode, what, got->din, r->ref.din, r->abs_sum.din, r->sq_sum.din, conv_in_count(s),
                     r->k_din);
    }
    snprintf(what, sizeof what, "%s dweight", name);
    check_tensor(t, worst, mode, what, got->dweight, r->ref.dweight, r->abs_sum.dweight, r->sq_sum.dweight,
                 conv_weight_count(s), r->k_dweight);
    if (s->has_bias) {
        // The same fp32 reduction in every precision: one float rounding apart, plus the double sums.
        double k = (double)s->batch * s->out_height * s->out_width;
        for (int c = 0; c < s->out_channels; c++) {
            double bound = 2.0 * U_FP32 * fabs((double)r->ref.dbias[c]) +
                           2.0 * gamma_k(k, U_DOUBLE) * r->abs_sum.dbias[c];
            double diff = fabs((double)got->dbias[c] - (double)r->ref.dbias[c]);
            EXPECT(t, diff <= bound, "%s %s dbias[%d]: %.9g, the CPU's %.9g", mode->name, name, c, got->dbias[c],
                   r->ref.dbias[c]);
        }
    }
}

// ---- bf16 rounding, exactly --------------------------------------------------------------------

// An identity 1x1 convolution 8 -> 8 with bias: out = bf16(x) + bias and din = bf16(dout), bit for
// bit, for Conv2d and ConvTranspose2d (whose weight [in, out, 1, 1] is the same identity).
static void test_bf16_rounding(TestCounts *t, OpsContext *gpu, int transposed) {
    enum { N = 2, C = 8, HW = 16 };
    ConvShape s = conv_shape(N, C, HW, HW, C, 1, 1, 0, transposed, 1);
    size_t n = conv_in_count(&s);
    float *x = alloc_floats(n), *dout = alloc_floats(n), *weight = alloc_floats((size_t)C * C), bias[C];
    Rng r = rng_stream(78, RNG_PURPOSE_TEST, 500 + (uint64_t)transposed, 0);
    for (size_t i = 0; i < n; i++) {
        // Values over a wide exponent range; the first 512 are exact ties between two bf16
        // neighbours, (1 + (2j + 1) 2^-8) 2^e, half of them with an odd lower neighbour.
        int e = (int)rng_below(&r, 41) - 20;
        float v = i < 512 ? (float)(1.0 + (2.0 * (double)(i % 128) + 1.0) / 256.0) : 1.0f + rng_uniform(&r);
        v = ldexpf(v, e);
        x[i] = (i & 1) ? -v : v;
        dout[i] = ldexpf(rng_uniform_range(&r, -2.0f, 2.0f), (int)rng_below(&r, 41) - 20);
        if (i < 512) dout[i] = -x[i];   // the ties for the data gradient too
    }
    for (int o = 0; o < C; o++) {
        for (int c = 0; c < C; c++) weight[o * C + c] = o == c ? 1.0f : 0.0f;
        bias[o] = 0.25f * (float)o - 1.0f;
    }
    ConvResult got;
    memset(&got, 0, sizeof got);
    run_conv(gpu, s, 1, x, weight, bias, dout, &got);
    float *want_out = alloc_floats(n), *want_din = alloc_floats(n);
    for (size_t i = 0; i < n; i++) {
        int c = (int)((i / (HW * HW)) % C);
        want_out[i] = bf16_round(x[i]) + bias[c];
        want_din[i] = bf16_round(dout[i]);
    }
    const char *kind = transposed ? "ConvTranspose2d" : "Conv2d";
    long i = first_difference(got.out, want_out, n);
    EXPECT(t, i < 0, "bf16 identity %s forward: value %ld is %.9g, bf16(x) + bias = %.9g (x = %.9g)", kind, i,
           i >= 0 ? got.out[i] : 0.0, i >= 0 ? want_out[i] : 0.0, i >= 0 ? x[i] : 0.0);
    i = first_difference(got.din, want_din, n);
    EXPECT(t, i < 0, "bf16 identity %s din: value %ld is %.9g, bf16(dout) = %.9g (dout = %.9g)", kind, i,
           i >= 0 ? got.din[i] : 0.0, i >= 0 ? want_din[i] : 0.0, i >= 0 ? dout[i] : 0.0);
    result_free(&got);
    free(x);
    free(dout);
    free(weight);
    free(want_out);
    free(want_din);
}

// ---- main --------------------------------------------------------------------------------------

static int compute_capability_major(void) {
    int major = 0;
#ifdef VQ_HAVE_CUDA
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0) != cudaSuccess) major = 0;
#endif
    return major;
}

int main(void) {
    if (gpu_test_unavailable()) return TEST_SKIP_CODE;
    TestCounts t = {0, 0};
    int skipped = 0;
    const int bf16_capable = compute_capability_major() >= 8;
    if (!bf16_capable)
        TEST_SKIP(&skipped, "the bf16-only checks (staging workspace, rounding): GPU 0 has compute capability < 8.0, "
                            "so bf16 runs in tf32");

    OpsContext cpu;
    ops_context_init(&cpu, "cpu", 0, 1, PRECISION_FP32, 1);
    Reference refs[CASE_COUNT];
    for (int c = 0; c < CASE_COUNT; c++) reference_init(&refs[c], &cpu, &CASES[c], 100 + 10 * (uint64_t)c);

    for (int m = 0; m < MODE_COUNT; m++) {
        const Mode *mode = &MODES[m];
        OpsContext gpu;
        ops_context_init(&gpu, "cuda", 0, 0, mode->precision, mode->deterministic);
        Worst worst = {0.0, 0.0};
        for (int c = 0; c < CASE_COUNT; c++) {
            const Reference *r = &refs[c];
            ConvResult got;
            memset(&got, 0, sizeof got);
            size_t ws = run_conv(&gpu, r->shape, r->want_din, r->in, r->weight, r->bias, r->dout, &got);
            check_against_cpu(&t, &worst, mode, CASES[c].name, r, &got);
            if (mode->precision == PRECISION_BF16 && bf16_capable) {
                size_t staging = 2 * (conv_in_count(&r->shape) + conv_out_count(&r->shape) +
                                      conv_weight_count(&r->shape));
                EXPECT(&t, ws >= staging,
                       "%s %s: conv_prepare returned %zu workspace bytes, less than the %zu of the bf16 copies "
                       "(did this layer fall back to tf32? see the warning above)", mode->name, CASES[c].name, ws,
                       staging);
            }
            if (mode->precision == PRECISION_BF16 && mode->deterministic) {
                ConvResult again, other;
                memset(&again, 0, sizeof again);
                memset(&other, 0, sizeof other);
                run_conv(&gpu, r->shape, r->want_din, r->in, r->weight, r->bias, r->dout, &again);
                OpsContext second;
                ops_context_init(&second, "cuda", 0, 0, mode->precision, 1);
                run_conv(&second, r->shape, r->want_din, r->in, r->weight, r->bias, r->dout, &other);
                ops_context_destroy(&second);
                EXPECT(&t, results_identical(&r->shape, &got, &again), "%s %s: two runs differ", mode->name,
                       CASES[c].name);
                EXPECT(&t, results_identical(&r->shape, &got, &other), "%s %s: two contexts differ", mode->name,
                       CASES[c].name);
                result_free(&again);
                result_free(&other);
            }
            result_free(&got);
        }
        if (mode->precision == PRECISION_BF16 && bf16_capable) {
            test_bf16_rounding(&t, &gpu, 0);
            test_bf16_rounding(&t, &gpu, 1);
        }
        printf("%-20s worst error / bound %.3g, worst normwise error %.3g\n", mode->name, worst.ratio,
               worst.normwise);
        ops_context_destroy(&gpu);
    }

    for (int c = 0; c < CASE_COUNT; c++) reference_free(&refs[c]);
    ops_context_destroy(&cpu);
    return test_finish_skipped("test_gpu_conv_precision", &t, skipped);
}
