// test_io_sampler.c: the epoch permutation (a permutation, a pure function of (seed, epoch)) and
// the sharded batch stream: np=1 with batch 2B equals np=2 with batch B, drop_last at the end of
// each epoch, and world-size changes mid-epoch with no sample repeated or skipped.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "io/sampler.h"
#include "test_util.h"

enum { COUNT = 103, MAX_RANKS = 4 };

// The ranks of a simulated job: each has its own sampler and position, as separate processes do.
typedef struct {
    Sampler sampler[MAX_RANKS];
    SamplerPosition pos[MAX_RANKS];
} Job;

static void job_init(Job *job, uint64_t seed) {
    for (int r = 0; r < MAX_RANKS; r++) {
        sampler_init(&job->sampler[r], seed, COUNT);
        job->pos[r] = (SamplerPosition){0, 0};
    }
}

static void job_free(Job *job) {
    for (int r = 0; r < MAX_RANKS; r++) sampler_free(&job->sampler[r]);
}

// A resume at another world size: every rank starts from rank 0's position (the checkpoint's).
static void job_resume(Job *job) {
    for (int r = 1; r < MAX_RANKS; r++) job->pos[r] = job->pos[0];
}

// One global step: out receives the ranks' slices in rank order (batch x world indices). Returns
// the epoch the batch came from, or -1 if the ranks' positions disagree afterwards.
static int64_t job_step(Job *job, int batch, int world, int64_t *out) {
    int64_t epoch = job->pos[0].epoch;
    for (int r = 0; r < world; r++) {
        SamplerPosition before = job->pos[r];
        sampler_next_batch(&job->sampler[r], &job->pos[r], batch, world, r, out + (size_t)r * batch);
        // The batch's epoch: the entry epoch, unless the entry rolled over (offset + G > count).
        if (r == 0) epoch = before.offset + (int64_t)batch * world > COUNT ? before.epoch + 1 : before.epoch;
    }
    for (int r = 1; r < world; r++)
        if (job->pos[r].epoch != job->pos[0].epoch || job->pos[r].offset != job->pos[0].offset) return -1;
    return epoch;
}

// Reference permutation of an epoch, from a fresh sampler.
static void permutation(uint64_t seed, int64_t epoch, int64_t *out) {
    Sampler s;
    sampler_init(&s, seed, COUNT);
    sampler_set_epoch(&s, epoch);
    memcpy(out, s.perm, sizeof(int64_t) * COUNT);
    sampler_free(&s);
}

static void test_permutation(TestCounts *c) {
    Sampler a, b;
    sampler_init(&a, 42, COUNT);
    sampler_init(&b, 42, COUNT);
    for (int64_t epoch = 0; epoch < 5; epoch++) {
        sampler_set_epoch(&a, epoch);
        int seen[COUNT] = {0}, valid = 1, fixed = 0;
        for (int i = 0; i < COUNT; i++) {
            int64_t v = a.perm[i];
            if (v < 0 || v >= COUNT || seen[v]) {
                valid = 0;
                break;
            }
            seen[v] = 1;
            fixed += v == i;
        }
        EXPECT(c, valid, "epoch %lld: perm is not a permutation of 0..%d", (long long)epoch, COUNT - 1);
        EXPECT(c, fixed < 10, "epoch %lld: %d fixed points: not shuffled", (long long)epoch, fixed);
    }
    // Same (seed, epoch) gives the same permutation, also after visiting other epochs (the cache).
    int64_t first[COUNT], again[COUNT], next[COUNT], other_seed[COUNT];
    sampler_set_epoch(&a, 3);
    memcpy(first, a.perm, sizeof first);
    sampler_set_epoch(&a, 4);
    memcpy(next, a.perm, sizeof next);
    sampler_set_epoch(&a, 3);
    memcpy(again, a.perm, sizeof again);
    sampler_set_epoch(&b, 3);
    EXPECT(c, memcmp(first, again, sizeof first) == 0, "epoch 3 changed after visiting epoch 4");
    EXPECT(c, memcmp(first, b.perm, sizeof first) == 0, "two samplers with seed 42 differ at epoch 3");
    EXPECT(c, memcmp(first, next, sizeof first) != 0, "epochs 3 and 4 have the same permutation");
    permutation(43, 3, other_seed);
    EXPECT(c, memcmp(first, other_seed, sizeof first) != 0, "seeds 42 and 43 give the same permutation");
    sampler_free(&a);
    sampler_free(&b);
}

// np=1 with batch 2B and np=2 with batch B see the same global batches, over several epochs.
static void test_world_invariance(TestCounts *c) {
    enum { B = 5, STEPS = 45 };  // 10 global batches per epoch: 4.5 epochs
    Job one, two;
    job_init(&one, 7);
    job_init(&two, 7);
    int same = 1, agree = 1;
    for (int step = 0; step < STEPS; step++) {
        int64_t a[2 * B], b[2 * B];
        int64_t ea = job_step(&one, 2 * B, 1, a), eb = job_step(&two, B, 2, b);
        agree &= eb >= 0;
        if (ea != eb || memcmp(a, b, sizeof a) != 0) {
            if (same) fprintf(stderr, "step %d: np=1 and np=2 batches differ\n", step);
            same = 0;
        }
    }
    EXPECT(c, same, "np=1 batch %d and np=2 batch %d saw different global batches", 2 * B, B);
    EXPECT(c, agree, "the two ranks' positions diverged");
    EXPECT(c, one.pos[0].epoch == two.pos[0].epoch && one.pos[0].offset == two.pos[0].offset,
           "positions differ at the end: (%lld, %lld) vs (%lld, %lld)", (long long)one.pos[0].epoch,
           (long long)one.pos[0].offset, (long long)two.pos[0].epoch, (long long)two.pos[0].offset);
    EXPECT(c, one.pos[0].epoch == 4, "after 45 steps of 10 over 103 samples: epoch %lld, expected 4",
           (long long)one.pos[0].epoch);
    job_free(&one);
    job_free(&two);
}

// Global step s of epoch e is P_e[10 s' .. 10 s' + 10) with s' = s mod 10: each epoch uses the
// first 100 samples of its permutation in order, no repeats, and drops the last 3.
static void test_drop_last(TestCounts *c) {
    enum { B = 5, WORLD = 2, G = B * WORLD, PER_EPOCH = COUNT / G, STEPS = 3 * PER_EPOCH + 2 };
    Job job;
    job_init(&job, 99);
    int exact = 1, no_repeat = 1;
    int64_t perm[COUNT];
    int seen[4][COUNT] = {{0}};
    for (int step = 0; step < STEPS; step++) {
        int64_t batch[G];
        int64_t epoch = job_step(&job, B, WORLD, batch);
        int64_t want_epoch = step / PER_EPOCH, offset = (int64_t)(step % PER_EPOCH) * G;
        permutation(99, want_epoch, perm);
        exact &= epoch == want_epoch && memcmp(batch, perm + offset, sizeof batch) == 0;
        for (int i = 0; i < G; i++) {
            no_repeat &= !seen[want_epoch][batch[i]];
            seen[want_epoch][batch[i]] = 1;
        }
        // Right after the last full batch of an epoch the position is already at the next one.
        if (step % PER_EPOCH == PER_EPOCH - 1)
            EXPECT(c, job.pos[0].epoch == want_epoch + 1 && job.pos[0].offset == 0,
                   "after the last batch of epoch %lld the position is (%lld, %lld)", (long long)want_epoch,
                   (long long)job.pos[0].epoch, (long long)job.pos[0].offset);
    }
    EXPECT(c, exact, "global batches are not P_epoch[offset .. offset + %d) in order", G);
    EXPECT(c, no_repeat, "an index repeats within an epoch");
    for (int e = 0; e < 3; e++) {
        int used = 0;
        for (int i = 0; i < COUNT; i++) used += seen[e][i];
        EXPECT(c, used == PER_EPOCH * G, "epoch %d used %d samples, expected %d (drop_last)", e, used, PER_EPOCH * G);
    }
    job_free(&job);
}

// Run `steps` global steps at (batch, world), appending epoch-0 indices to used[*n_used] and
// counting batches that came from any other epoch in *later.
static void run_steps(Job *job, int steps, int batch, int world, int64_t *used, int *n_used, int64_t *next_epoch_batch,
                      int *later) {
    for (int s = 0; s < steps; s++) {
        int64_t out[64];
        int64_t epoch = job_step(job, batch, world, out);
        if (epoch == 0) {
            memcpy(used + *n_used, out, sizeof(int64_t) * batch * world);
            *n_used += batch * world;
        } else {
            if (*later == 0 && next_epoch_batch) memcpy(next_epoch_batch, out, sizeof(int64_t) * batch * world);
            (*later)++;
        }
    }
}

// The epoch-0 samples consumed are exactly P_0[0 .. n) in order (none repeated or skipped), and
// the part left over is smaller than the last global batch.
static void expect_prefix(TestCounts *c, const char *what, const int64_t *used, int n, int last_global) {
    int64_t perm[COUNT];
    permutation(5, 0, perm);
    EXPECT(c, n > 0 && memcmp(used, perm, sizeof(int64_t) * n) == 0,
           "%s: epoch 0 is not P_0[0 .. %d) in order: a sample was repeated or skipped", what, n);
    EXPECT(c, COUNT - n < last_global, "%s: epoch 0 ended with %d of %d samples left, but a global batch of %d fits",
           what, COUNT - n, COUNT, last_global);
}

static void test_world_change(TestCounts *c) {
    int64_t perm1[COUNT];
    permutation(5, 1, perm1);
    {
        // 2 ranks x 5 for 4 steps, then 1 rank x 10 (same global batch) to the end of the epoch.
        Job job;
        job_init(&job, 5);
        int64_t used[COUNT + 64], next[64];
        int n = 0, later = 0;
        run_steps(&job, 4, 5, 2, used, &n, NULL, &later);
        job_resume(&job);
        run_steps(&job, 7, 10, 1, used, &n, next, &later);
        expect_prefix(c, "2 ranks -> 1 rank", used, n, 10);
        EXPECT(c, n == 100 && later == 1 && memcmp(next, perm1, sizeof(int64_t) * 10) == 0,
               "2 ranks -> 1 rank: %d samples in epoch 0 (expected 100), then %d batches of epoch 1 starting at P_1[0]",
               n, later);
        job_free(&job);
    }
    {
        // 1 rank x 5 for 7 steps (offset 35), then 4 ranks x 5: 35..55, 55..75, 75..95, then 8 left < 20.
        Job job;
        job_init(&job, 5);
        int64_t used[COUNT + 64], next[64];
        int n = 0, later = 0;
        run_steps(&job, 7, 5, 1, used, &n, NULL, &later);
        job_resume(&job);
        run_steps(&job, 4, 5, 4, used, &n, next, &later);
        expect_prefix(c, "1 rank -> 4 ranks", used, n, 20);
        EXPECT(c, n == 95 && later == 1 && memcmp(next, perm1, sizeof(int64_t) * 20) == 0,
               "1 rank -> 4 ranks: %d samples in epoch 0 (expected 95), then %d batches of epoch 1 from P_1[0]", n,
               later);
        job_free(&job);
    }
    {
        // 1 rank x 5 up to offset 95 (8 left), then a resume at 4 ranks x 5: a global batch of 20 no
        // longer fits, so the epoch ends there and the next batch is P_1[0 .. 20).
        Job job;
        job_init(&job, 5);
        int64_t used[COUNT + 64], next[64];
        int n = 0, later = 0;
        run_steps(&job, 19, 5, 1, used, &n, NULL, &later);
        EXPECT(c, job.pos[0].epoch == 0 && job.pos[0].offset == 95, "after 19 steps of 5: (%lld, %lld), expected (0, 95)",
               (long long)job.pos[0].epoch, (long long)job.pos[0].offset);
        job_resume(&job);
        run_steps(&job, 1, 5, 4, used, &n, next, &later);
        expect_prefix(c, "resume at 4 ranks near the end of an epoch", used, n, 20);
        EXPECT(c, n == 95 && later == 1 && memcmp(next, perm1, sizeof(int64_t) * 20) == 0,
               "resume at 4 ranks near the end: the next batch is not P_1[0 .. 20)");
        EXPECT(c, job.pos[0].epoch == 1 && job.pos[0].offset == 20, "position (%lld, %lld), expected (1, 20)",
               (long long)job.pos[0].epoch, (long long)job.pos[0].offset);
        job_free(&job);
    }
}

int main(void) {
    TestCounts c = {0, 0};
    test_permutation(&c);
    test_world_invariance(&c);
    test_drop_last(&c);
    test_world_change(&c);
    return test_finish("test_io_sampler", &c);
}
