// kmeans.c: see kmeans.h.
#include "kmeans.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../core/rng.h"

typedef struct {
    int64_t batch, index;   // which global batch, which vector of the owner's slice
    int rank;
} Owner;

static Owner owner_of(int64_t id, int64_t slice, int world) {
    int64_t global = slice * world;
    Owner o = {.batch = id / global, .index = (id % global) % slice, .rank = (int)((id % global) / slice)};
    return o;
}

static double sq_dist(const float *a, const float *b, int d) {
    double s = 0.0;
    for (int i = 0; i < d; i++) {
        double t = (double)a[i] - (double)b[i];
        s += t * t;
    }
    return s;
}

// Center := global vector id, sent by the rank that holds it.
static void take_center(const KmeansDevice *dev, const KmeansSample *ks, int64_t id, float *center) {
    Owner o = owner_of(id, ks->slice, dev->dist->world);
    if (dev->dist->rank == o.rank)
        memcpy(center, ks->z + (size_t)(o.batch * ks->slice + o.index) * ks->d, (size_t)ks->d * sizeof(float));
    dist_broadcast_host(dev->dist, center, (size_t)ks->d * sizeof(float), o.rank);
}

static void update_d2(const KmeansSample *ks, const float *center, double *d2) {
    int64_t local = ks->batches * ks->slice;
    for (int64_t v = 0; v < local; v++) {
        double dist = sq_dist(ks->z + (size_t)v * ks->d, center, ks->d);
        if (dist < d2[v]) d2[v] = dist;
    }
}

// Within the owner's slice: the first vector where the running sum of d2 passes `remainder`
// (the same order as the slice's partial sum, so it exists up to rounding; else the last nonzero).
static int64_t find_in_slice(const double *d2, int64_t slice, double remainder) {
    double acc = 0.0;
    int64_t last = 0;
    for (int64_t i = 0; i < slice; i++) {
        if (d2[i] <= 0.0) continue;
        acc += d2[i];
        last = i;
        if (acc > remainder) return i;
    }
    return last;
}

// The k-means++ draw: a global vector with probability d2 / sum(d2), walking the global order
// (batch, rank, index) with the per-(batch, rank) sums that every rank holds after one reduction.
// Returns -1 when every d2 is 0 (all vectors sit on centers).
static int64_t draw_weighted(const KmeansDevice *dev, const KmeansSample *ks, const double *d2, double u,
                             double *partials) {
    int world = dev->dist->world, rank = dev->dist->rank;
    size_t cells = (size_t)ks->batches * world;
    memset(partials, 0, cells * sizeof(double));
    for (int64_t b = 0; b < ks->batches; b++) {
        double s = 0.0;
        for (int64_t i = 0; i < ks->slice; i++) s += d2[b * ks->slice + i];
        partials[b * world + rank] = s;
    }
    dist_allreduce_host_f64(dev->dist, partials, cells);   // each cell has one contributor: a gather
    double total = 0.0;
    for (size_t c = 0; c < cells; c++) total += partials[c];
    if (!(total > 0.0)) return -1;
    double target = u * total, acc = 0.0, remainder = 0.0;
    size_t cell = cells;
    for (size_t c = 0; c < cells; c++) {
        if (partials[c] <= 0.0) continue;
        cell = c;
        remainder = target - acc;
        if (acc + partials[c] > target) break;
        acc += partials[c];
    }
    int64_t b = (int64_t)(cell / world);
    int owner = (int)(cell % world);
    int64_t index = 0;
    if (rank == owner) index = find_in_slice(d2 + b * ks->slice, ks->slice, remainder);
    dist_broadcast_host(dev->dist, &index, sizeof index, owner);
    return b * ks->slice * world + (int64_t)owner * ks->slice + index;
}

// A uniform double in [0, 1) from two 32-bit draws.
static double uniform_double(Rng *rng) {
    uint64_t hi = rng_u32(rng), lo = rng_u32(rng);
    return (double)((hi << 21) ^ (lo >> 11)) * (1.0 / 9007199254740992.0);   // 53 bits
}

static void seed_centers(const KmeansDevice *dev, const KmeansSample *ks, int k, uint64_t seed, float *centers) {
    int64_t local = ks->batches * ks->slice, total = local * dev->dist->world;
    CHECK(total <= UINT32_MAX, "the k-means sample has %lld vectors; at most %u are supported", (long long)total,
          UINT32_MAX);
    double *d2 = xmalloc((size_t)local * sizeof(double));
    double *partials = xmalloc((size_t)ks->batches * dev->dist->world * sizeof(double));
    for (int64_t v = 0; v < local; v++) d2[v] = INFINITY;
    Rng rng = rng_stream(seed, RNG_PURPOSE_KMEANS, 0, 0);
    take_center(dev, ks, (int64_t)rng_below(&rng, (uint32_t)total), centers);
    for (int j = 1; j < k; j++) {
        update_d2(ks, centers + (size_t)(j - 1) * ks->d, d2);
        double u = uniform_double(&rng);
        int64_t id = draw_weighted(dev, ks, d2, u, partials);
        if (id < 0) id = (int64_t)rng_below(&rng, (uint32_t)total);   // every vector is a center already
        take_center(dev, ks, id, centers + (size_t)j * ks->d);
    }
    free(d2);
    free(partials);
}

// One assignment of every vector to its nearest center on the device (the quantizer's own
// vq_nearest and vq_code_stats), the counts and sums summed over slices and ranks in double, and
// the squared distances. Returns the mean squared distance.
static double assign(const KmeansDevice *dev, const KmeansSample *ks, int k, const float *centers, double *counts,
                     double *sums) {
    OpsContext *ctx = dev->ctx;
    int d = ks->d;
    size_t kd = (size_t)k * d;
    float *stats = xmalloc(((size_t)k + kd) * sizeof(float));
    int32_t *codes = xmalloc((size_t)ks->slice * sizeof(int32_t));
    double *acc = xcalloc((size_t)k + kd + 1, sizeof(double));   // [counts | sums | squared distances]
    ctx->ops->to_device(ctx, dev->centers_dev, centers, kd * sizeof(float));
    for (int64_t b = 0; b < ks->batches; b++) {
        const float *z = ks->z + (size_t)(b * ks->slice) * d;
        ctx->ops->to_device(ctx, dev->z_dev, z, (size_t)ks->slice * d * sizeof(float));
        ctx->ops->vq_nearest(ctx, dev->z_dev, dev->centers_dev, (int)ks->slice, k, d, dev->codes);
        ctx->ops->vq_code_stats(ctx, dev->z_dev, dev->codes, (int)ks->slice, k, d, dev->stats, dev->stats + k);
        ctx->ops->to_host(ctx, stats, dev->stats, ((size_t)k + kd) * sizeof(float));
        ctx->ops->to_host(ctx, codes, dev->codes, (size_t)ks->slice * sizeof(int32_t));
        for (size_t j = 0; j < (size_t)k + kd; j++) acc[j] += stats[j];
        for (int64_t i = 0; i < ks->slice; i++)
            acc[(size_t)k + kd] += sq_dist(z + (size_t)i * d, centers + (size_t)codes[i] * d, d);
    }
    dist_allreduce_host_f64(dev->dist, acc, (size_t)k + kd + 1);
    memcpy(counts, acc, (size_t)k * sizeof(double));
    memcpy(sums, acc + k, kd * sizeof(double));
    double mean = acc[(size_t)k + kd] / ((double)ks->batches * (double)ks->slice * dev->dist->world);
    free(stats);
    free(codes);
    free(acc);
    return mean;
}

KmeansReport kmeans_fit(const KmeansDevice *dev, const KmeansSample *ks, int k, int iters, uint64_t seed,
                        float *centers, double *counts, double *sums) {
    KmeansReport r = {0};
    int d = ks->d;
    seed_centers(dev, ks, k, seed, centers);
    r.seed_inertia = r.final_inertia = assign(dev, ks, k, centers, counts, sums);
    for (int it = 0; it < iters; it++) {
        for (int j = 0; j < k; j++) {
            if (counts[j] <= 0.0) continue;   // an empty cluster keeps its center
            for (int i = 0; i < d; i++) centers[(size_t)j * d + i] = (float)(sums[(size_t)j * d + i] / counts[j]);
        }
        r.final_inertia = assign(dev, ks, k, centers, counts, sums);
    }
    for (int j = 0; j < k; j++) r.empty += counts[j] <= 0.0;
    return r;
}
