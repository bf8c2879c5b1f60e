// sampler.h: which dataset indices each rank trains on (DESIGN §3). The epoch permutation is a
// pure function of (seed, epoch). A global batch of G = batch x world samples is taken at the
// epoch position `offset`: P[offset .. offset + G), and rank r takes its contiguous slice
// P[offset + r*batch .. + batch). The data order therefore depends only on the seed and the
// global batch, never on the world size, and a run resumed at another world size continues at
// the same position with no sample repeated or skipped. An epoch ends when fewer than G samples
// are left (the remainder is dropped, like DataLoader(drop_last=True)).
#pragma once
#include <stdint.h>

typedef struct {
    uint64_t seed;
    int64_t count;         // dataset size
    int64_t epoch;         // epoch whose permutation is in perm (-1 = none yet)
    int64_t *perm;         // count entries
} Sampler;

void sampler_init(Sampler *s, uint64_t seed, int64_t count);
void sampler_free(Sampler *s);
// Make sure perm holds the permutation of `epoch` (Fisher-Yates from Philox, keyed by epoch).
void sampler_set_epoch(Sampler *s, int64_t epoch);

// Position of the training stream: advances by the global batch each step.
typedef struct {
    int64_t epoch;
    int64_t offset;        // samples of this epoch already consumed
} SamplerPosition;

// The indices rank `rank` trains on for the global batch at *pos (batch per rank, world ranks),
// then advances *pos by batch x world, rolling over to the next epoch when the next global batch
// would not fit. If *pos cannot hold a whole global batch at entry (a resume at a larger world
// size near the end of an epoch), the epoch is finished first.
void sampler_next_batch(Sampler *s, SamplerPosition *pos, int batch, int world, int rank, int64_t *indices);
// The same step without copying: makes s->perm the permutation of the batch's epoch and returns
// where this rank's slice starts in it (indices = s->perm[start .. start + batch)).
int64_t sampler_next_slice(Sampler *s, SamplerPosition *pos, int batch, int world, int rank);
