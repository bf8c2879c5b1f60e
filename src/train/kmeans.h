// kmeans.h: k-means over encoder outputs held in shards by the ranks (quantizer.init: kmeans).
// The sample is whole global batches: vector (b, r, i) is latent i of rank r's slice of global
// batch b, and its global index is b G + r S + i (S = latents per rank per batch, G = S x world).
// That order does not depend on the world size, so neither do the k-means++ draws; the sums and
// counts of the Lloyd steps are reduced over the ranks, and every rank ends with the same
// centers (bitwise), equal across world sizes up to the order of the floating-point reductions.
#pragma once
#include <stdint.h>

#include "../dist/dist.h"

typedef struct {
    const float *z;     // host [batches * slice, d]: this rank's vectors, batch by batch
    int64_t batches;    // global batches in the sample
    int64_t slice;      // vectors of this rank per batch
    int d;
} KmeansSample;

// Device buffers the Lloyd steps use (the quantizer's own distance and statistics ops): z_dev
// holds one slice [slice, d], codes [slice], stats [k + k d], centers_dev [k, d]; the context's
// workspace must fit vq_nearest for `slice` rows.
typedef struct {
    OpsContext *ctx;
    Dist *dist;
    float *z_dev;
    int32_t *codes;
    float *stats;
    float *centers_dev;
} KmeansDevice;

typedef struct {
    double seed_inertia;    // mean squared distance to the nearest center after the seeding
    double final_inertia;   // after the Lloyd iterations
    int empty;              // clusters without a vector in the final assignment
} KmeansReport;

// k-means++ seeding (draws from the counter-based RNG keyed by seed), then `iters` Lloyd
// iterations (an empty cluster keeps its center). Collective. centers [k, d] (host) out;
// counts [k] and sums [k, d] (double) are those of the final assignment, over all ranks.
KmeansReport kmeans_fit(const KmeansDevice *dev, const KmeansSample *ks, int k, int iters, uint64_t seed,
                        float *centers, double *counts, double *sums);
