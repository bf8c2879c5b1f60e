// mpi_collectives.c: the collectives of src/dist on a CPU context (and, in builds without CUDA,
// the host-staged path for device buffers), checked on every rank against closed forms. Run by tests/scripts/test_mpi_collectives.sh with np = 1 (with and without mpirun),
// 2 and 4. Rank 0 gathers everyone's counts and prints the totals; every rank exits non-zero when
// any rank failed.
//
//   mpi_collectives                     the checks
//   mpi_collectives --setup B T         only dist_setup_comm(backend B, timeout T) on a CPU context,
//                                       for the scripts' error-message checks
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "dist/dist.h"
#include "test_util.h"

static void check_ranks(Dist *d, TestCounts *c) {
    EXPECT(c, d->world >= 1 && d->rank >= 0 && d->rank < d->world, "rank %d world %d", d->rank, d->world);
    EXPECT(c, d->world == launcher_world(), "world %d but the launcher announced %d", d->world, launcher_world());
    EXPECT(c, d->rank == launcher_rank(), "rank %d but the launcher announced %d", d->rank, launcher_rank());
    EXPECT(c, d->local_rank >= 0 && d->local_rank < d->local_world, "local rank %d of %d", d->local_rank,
           d->local_world);
    // The tests run on one machine: the node is the whole world.
    EXPECT(c, d->local_world == d->world, "local world %d, world %d", d->local_world, d->world);
    // Local ranks are 0..local_world-1, each once: their sum and sum of squares say so.
    double v[3] = {d->local_rank, (double)d->local_rank * d->local_rank, 1.0};
    dist_allreduce_host_f64(d, v, 3);
    double lw = d->local_world;
    EXPECT(c, v[0] == lw * (lw - 1) / 2 && v[1] == (lw - 1) * lw * (2 * lw - 1) / 6 && v[2] == lw,
           "local ranks do not form 0..%d: sums %g %g %g", d->local_world - 1, v[0], v[1], v[2]);
    EXPECT(c, dist_local_device(d, 0) == 0, "no GPU: device 0");
    EXPECT(c, dist_local_device(d, 1) == 0, "one GPU: device 0");
    EXPECT(c, dist_local_device(d, 2) == d->local_rank % 2, "two GPUs: got %d", dist_local_device(d, 2));
    EXPECT(c, dist_local_device(d, 8) == d->local_rank % 8, "eight GPUs: got %d", dist_local_device(d, 8));
    EXPECT(c, d->backend == DIST_BACKEND_MPI, "CPU context: backend %d", (int)d->backend);
}

// Rank-dependent values whose sums are exact in float: x_r[i] = (r + 1) a_i + b_i with small
// integers a_i and halves b_i, so sum_r x_r[i] = a_i W (W + 1) / 2 + W b_i exactly.
static float value_a(size_t i) { return (float)(i % 13); }
static float value_b(size_t i) { return (i % 2) ? 0.5f : -1.0f; }

static void check_allreduce(Dist *d, OpsContext *ctx, size_t n, int average, TestCounts *c) {
    float *buf = ctx->ops->alloc(ctx, (n + 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) buf[i] = (float)(d->rank + 1) * value_a(i) + value_b(i);
    buf[n] = 12345.0f;   // just past the end: must stay untouched
    dist_allreduce(d, ctx, buf, n, average);
    double w = d->world;
    size_t bad = 0, first_bad = 0;
    for (size_t i = 0; i < n; i++) {
        double sum = value_a(i) * w * (w + 1) / 2 + w * value_b(i);
        double want = average ? sum / w : sum;
        int ok = average ? test_close(buf[i], want, 1e-6, 0) : (double)buf[i] == want;
        if (!ok && bad++ == 0) first_bad = i;
    }
    EXPECT(c, bad == 0, "allreduce n=%zu average=%d: %zu wrong values, first at %zu: %g", n, average, bad,
           first_bad, n ? (double)buf[first_bad] : 0.0);
    EXPECT(c, buf[n] == 12345.0f, "allreduce n=%zu wrote past the end", n);
    ctx->ops->release(ctx, buf);
}

static void check_host_f64(Dist *d, TestCounts *c) {
    double w = d->world, r = d->rank;
    double v[3] = {r, r * r, 0.1};
    dist_allreduce_host_f64(d, v, 3);
    EXPECT(c, v[0] == w * (w - 1) / 2, "sum of ranks %g", v[0]);
    EXPECT(c, v[1] == (w - 1) * w * (2 * w - 1) / 6, "sum of squared ranks %g", v[1]);
    EXPECT(c, test_close(v[2], 0.1 * w, 1e-12, 0), "sum of 0.1: %.17g", v[2]);
    dist_allreduce_host_f64(d, v, 0);   // empty: a no-op, and no deadlock
}

static void check_agree(Dist *d, TestCounts *c) {
    int setter = d->world > 1 ? 1 : 0;
    EXPECT(c, dist_agree_any(d, d->rank == setter ? 7 : 0) == 1, "only rank %d sets the flag: all must see 1", setter);
    EXPECT(c, dist_agree_any(d, 0) == 0, "nobody sets the flag: all must see 0");
    EXPECT(c, dist_agree_any(d, 1) == 1, "everybody sets the flag");
    EXPECT(c, dist_agree_any(d, d->rank == d->world - 1) == 1, "the last rank sets the flag");
}

static void check_device_broadcast(Dist *d, OpsContext *ctx, size_t n, int root, TestCounts *c) {
    float *buf = ctx->ops->alloc(ctx, n * sizeof(float));
    for (size_t i = 0; i < n; i++) buf[i] = d->rank == root ? 0.5f * (float)(i % 1000) + (float)root : -1.0f;
    dist_broadcast(d, ctx, buf, n, root);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += buf[i] != 0.5f * (float)(i % 1000) + (float)root;
    EXPECT(c, bad == 0, "broadcast of %zu floats from rank %d: %zu wrong", n, root, bad);
    ctx->ops->release(ctx, buf);
}

static void check_broadcast(Dist *d, OpsContext *ctx, TestCounts *c) {
    struct { int a; double b; char s[16]; } msg, want = {42, -2.5, "from the root"};
    int root = d->world - 1;
    memset(&msg, 0, sizeof msg);
    if (d->rank == root) msg = want;
    dist_broadcast_host(d, &msg, sizeof msg, root);
    EXPECT(c, msg.a == want.a && msg.b == want.b && strcmp(msg.s, want.s) == 0, "broadcast_host from rank %d", root);

    enum { BYTES = 3 << 20 };   // several MiB: the large-message protocol
    unsigned char *big = xmalloc(BYTES);
    for (size_t i = 0; i < BYTES; i++) big[i] = d->rank == 0 ? (unsigned char)(i * 31 + 7) : 0;
    dist_broadcast_host(d, big, BYTES, 0);
    size_t bad = 0;
    for (size_t i = 0; i < BYTES; i++) bad += big[i] != (unsigned char)(i * 31 + 7);
    EXPECT(c, bad == 0, "broadcast_host of %d bytes: %zu wrong", BYTES, bad);
    free(big);

    for (int r = 0; r < d->world; r += d->world > 1 ? d->world - 1 : 1) check_device_broadcast(d, ctx, 1000, r, c);
}

#ifndef VQ_HAVE_CUDA
// The MPI backend's path for device buffers (staged through its host buffer, in pieces when
// larger than it) on a pretend device: a context that says CUDA but keeps memory on the host
// (the CPU ops). Only in builds without CUDA, where dist never calls the CUDA runtime.
static void check_staged(Dist *d, OpsContext *cpu, TestCounts *c) {
    OpsContext pretend = *cpu;
    pretend.kind = BACKEND_CUDA;
    dist_setup_comm(d, &pretend, "mpi", 30.0);
    const size_t sizes[] = {1000, (4 << 20) + 5};   // one piece; more than the 4 Mi-float stage
    for (int i = 0; i < 2; i++) {
        check_allreduce(d, &pretend, sizes[i], 0, c);
        check_allreduce(d, &pretend, sizes[i], 1, c);
        check_device_broadcast(d, &pretend, sizes[i], d->world - 1, c);
    }
    dist_setup_comm(d, cpu, "auto", 30.0);
}
#endif

int main(int argc, char **argv) {
    Dist d;
    dist_init(&d, &argc, &argv);
    OpsContext ctx;
    ops_context_init(&ctx, "cpu", 0, 1, PRECISION_FP32, 0);

    if (argc == 4 && strcmp(argv[1], "--setup") == 0) {
        dist_setup_comm(&d, &ctx, argv[2], atof(argv[3]));
        dist_finalize(&d);
        ops_context_destroy(&ctx);
        return 0;
    }
    if (argc != 1) {
        fprintf(stderr, "usage: mpi_collectives [--setup BACKEND TIMEOUT_S]\n");
        return EXIT_USAGE;
    }

    dist_setup_comm(&d, &ctx, "auto", 30.0);
    dist_reserve(&d, 1 << 20);   // no-op on the CPU, must be harmless
    TestCounts c = {0, 0};
    check_ranks(&d, &c);
    const size_t sizes[] = {0, 1, 1000, (1 << 20) + 3};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        check_allreduce(&d, &ctx, sizes[i], 0, &c);
        check_allreduce(&d, &ctx, sizes[i], 1, &c);
    }
    check_host_f64(&d, &c);
    check_agree(&d, &c);
    check_broadcast(&d, &ctx, &c);
#ifndef VQ_HAVE_CUDA
    check_staged(&d, &ctx, &c);
#endif
    d.current_step = 7;
    dist_barrier(&d);
    EXPECT(&c, d.current_step == 7, "the collectives must not touch current_step");

    // Rank 0 reports the totals of all ranks, with plain MPI so a broken dist cannot hide a failure.
    int counts[2] = {c.passed, c.failed}, total[2] = {0, 0};
    MPI_Allreduce(counts, total, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (c.failed) fprintf(stderr, "rank %d: %d passed, %d failed\n", d.rank, c.passed, c.failed);
    if (d.rank == 0) printf("mpi_collectives np=%d: %d passed, %d failed\n", d.world, total[0], total[1]);
    dist_finalize(&d);
    ops_context_destroy(&ctx);
    return total[1] == 0 && total[0] > 0 ? 0 : 1;
}
