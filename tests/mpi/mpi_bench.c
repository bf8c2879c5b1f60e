// mpi_bench.c: time of one dist_allreduce (average) of N floats on a CPU context, next to a plain
// blocking MPI_Allreduce of the same buffer (the cost of the timeout polling). Not a test: run it
// by hand, e.g.
//   mpirun -np 2 build/mpi_bench 2600000 200 avg   (the CIFAR model's gradient, averaged)
//   mpirun -np 2 build/mpi_bench 33280 2000 sum    (the EMA statistics, K=512 D=64: K + K*D, summed)
// Each iteration starts after a barrier and is timed as the slowest rank's time; prints the
// median, the 10th and 90th percentiles in microseconds.
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "dist/dist.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(Dist *d, const char *what, double *t, int iters, size_t n) {
    MPI_Allreduce(MPI_IN_PLACE, t, iters, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    qsort(t, (size_t)iters, sizeof(double), cmp_double);
    if (d->rank == 0)
        printf("%-22s np=%d n=%zu: median %.1f us  p10 %.1f us  p90 %.1f us  (%d runs)\n", what, d->world, n,
               1e6 * t[iters / 2], 1e6 * t[iters / 10], 1e6 * t[iters * 9 / 10], iters);
}

int main(int argc, char **argv) {
    Dist d;
    dist_init(&d, &argc, &argv);
    if (argc != 4 || (strcmp(argv[3], "sum") != 0 && strcmp(argv[3], "avg") != 0)) {
        fprintf(stderr, "usage: mpirun -np N mpi_bench FLOATS ITERATIONS sum|avg\n");
        return EXIT_USAGE;
    }
    size_t n = (size_t)atoll(argv[1]);
    int iters = atoi(argv[2]);
    int average = strcmp(argv[3], "avg") == 0;
    if (n == 0 || iters < 10) {
        fprintf(stderr, "FLOATS must be positive and ITERATIONS at least 10\n");
        return EXIT_USAGE;
    }
    OpsContext ctx;
    ops_context_init(&ctx, "cpu", 0, 1, PRECISION_FP32, 0);
    dist_setup_comm(&d, &ctx, "auto", 60.0);
    float *buf = ctx.ops->alloc(&ctx, n * sizeof(float));
    double *t = xcalloc((size_t)iters, sizeof(double));
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i % 7);

    for (int i = 0; i < 5; i++) dist_allreduce(&d, &ctx, buf, n, average);   // warm-up (connections, caches)
    for (int i = 0; i < iters; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = wall_time_seconds();
        dist_allreduce(&d, &ctx, buf, n, average);
        t[i] = wall_time_seconds() - t0;
    }
    report(&d, average ? "dist_allreduce (avg)" : "dist_allreduce (sum)", t, iters, n);

    for (int i = 0; i < iters; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = wall_time_seconds();
        MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        t[i] = wall_time_seconds() - t0;
    }
    report(&d, "MPI_Allreduce (sum)", t, iters, n);

    free(t);
    ctx.ops->release(&ctx, buf);
    dist_finalize(&d);
    ops_context_destroy(&ctx);
    return 0;
}
