// codebook_init.h: codebook initializations that need data and every rank's batch.
#pragma once
#include "../io/dataset.h"
#include "session.h"
#include "train_state.h"

// The 'data' init: K latent vectors of the first global batch, chosen by (seed) among all
// batch x world x h x w latents without replacement (with replacement only if there are fewer
// latents than codes). Each rank contributes the rows it holds and one all-reduce gives every
// rank the same codebook, whatever the world size. The EMA sums start as the codebook, the EMA
// cluster sizes at 1.
void codebook_init_from_data(Session *s, TrainState *st, const Dataset *train_set);

// The 'kmeans' init: encoder outputs of the next global batches (quantizer.kmeans_samples latents
// or more, whole batches; the data position does not move) clustered by kmeans.c. The codebook is
// the centers; the EMA state starts from the clusters in per-step units (a step sees one global
// batch): cluster size = count / batches, sums = center x size (an empty cluster: size 1).
void codebook_init_kmeans(Session *s, TrainState *st, const Dataset *train_set);
