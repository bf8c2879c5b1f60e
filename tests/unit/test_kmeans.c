// test_kmeans.c: src/train/kmeans.c on one rank with the CPU backend: on a planted mixture of
// well-separated Gaussians, k-means++ and Lloyd recover every center (one found center per planted
// one, within the noise), the mean squared distance ends near the noise variance, and the final
// counts and sums are those of the final assignment.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/core/common.h"
#include "../../src/core/rng.h"
#include "../../src/train/kmeans.h"
#include "test_util.h"

enum { K = 8, D = 4, BATCHES = 4, SLICE = 128, N = BATCHES * SLICE };
static const float NOISE = 0.05f;

int main(int argc, char **argv) {
    TestCounts c = {0, 0};
    Dist dist;
    dist_init(&dist, &argc, &argv);
    OpsContext ctx;
    ops_context_init(&ctx, "cpu", 0, 1, PRECISION_FP32, 1);
    ctx.ops->reserve_workspace(&ctx, ctx.ops->vq_workspace_bytes(&ctx, SLICE, K, D));
    float planted[K * D], z[N * D];
    Rng rng = rng_stream(3, RNG_PURPOSE_TEST, 0, 0);
    for (int j = 0; j < K; j++)   // the corners of a 4-cube scaled by 2, distinct: far apart
        for (int i = 0; i < D; i++) planted[j * D + i] = 2.0f * (float)((j >> i) & 1) + (i == 3 ? 4.0f * (j & 1) : 0);
    for (int v = 0; v < N; v++) {
        int j = (int)rng_below(&rng, K);
        for (int i = 0; i < D; i++) z[v * D + i] = planted[j * D + i] + NOISE * rng_normal(&rng);
    }
    KmeansDevice dev = {.ctx = &ctx, .dist = &dist};
    dev.z_dev = ctx.ops->alloc(&ctx, SLICE * D * sizeof(float));
    dev.codes = ctx.ops->alloc(&ctx, SLICE * sizeof(int32_t));
    dev.stats = ctx.ops->alloc(&ctx, (K + K * D) * sizeof(float));
    dev.centers_dev = ctx.ops->alloc(&ctx, K * D * sizeof(float));
    KmeansSample ks = {.z = z, .batches = BATCHES, .slice = SLICE, .d = D};
    float centers[K * D];
    double counts[K], sums[K * D];
    KmeansReport r = kmeans_fit(&dev, &ks, K, 10, 1234, centers, counts, sums);
    printf("kmeans on %d points: mean squared distance %.5f after seeding, %.5f after Lloyd (noise variance x D = "
           "%.5f), %d empty\n", N, r.seed_inertia, r.final_inertia, (double)(NOISE * NOISE * D), r.empty);

    int used[K] = {0};
    double worst = 0.0, total = 0.0;
    for (int j = 0; j < K; j++) {   // each planted center has exactly one found center near it
        int best = -1;
        double best_d = INFINITY;
        for (int f = 0; f < K; f++) {
            double dd = 0.0;
            for (int i = 0; i < D; i++) dd += pow(centers[f * D + i] - planted[j * D + i], 2);
            if (dd < best_d) best_d = dd, best = f;
        }
        used[best]++;
        worst = fmax(worst, sqrt(best_d));
    }
    for (int f = 0; f < K; f++) {
        EXPECT(&c, used[f] == 1, "found center %d is the nearest of %d planted centers", f, used[f]);
        total += counts[f];
        double mean0 = counts[f] > 0 ? sums[f * D] / counts[f] : NAN;
        EXPECT(&c, fabs(mean0 - centers[f * D]) < 1e-4, "center %d is not the mean of its final cluster", f);
    }
    printf("worst distance of a planted center to its found one: %.4f\n", worst);
    EXPECT(&c, worst < 0.05, "worst distance %.4f >= 0.05", worst);
    EXPECT(&c, total == N, "final counts sum to %.0f, expected %d", total, N);
    EXPECT(&c, r.final_inertia < 1.5 * NOISE * NOISE * D, "final mean squared distance %.5f", r.final_inertia);
    EXPECT(&c, r.empty == 0, "%d empty clusters", r.empty);
    ctx.ops->release(&ctx, dev.z_dev);
    ctx.ops->release(&ctx, dev.codes);
    ctx.ops->release(&ctx, dev.stats);
    ctx.ops->release(&ctx, dev.centers_dev);
    ops_context_destroy(&ctx);
    int rc = test_finish("test_kmeans", &c);
    dist_finalize(&dist);
    return rc;
}
