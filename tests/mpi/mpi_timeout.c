// mpi_timeout.c: a rank that dies or hangs must not leave the others waiting forever.
//
//   mpi_timeout exit    rank 1 ends abruptly (_exit(9), as after kill -9) before an all-reduce
//   mpi_timeout hang    rank 1 never reaches the all-reduce (sleeps forever)
//
// The other ranks enter the all-reduce with dist.timeout_s = 3. The job must end non-zero soon
// after (Open MPI's own failure detection or our timeout, exit code 76); the program printing
// "FAIL:" or the all-reduce returning is a failure. Run by tests/scripts/test_mpi_timeout.sh,
// which also bounds the time.
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "dist/dist.h"

int main(int argc, char **argv) {
    Dist d;
    dist_init(&d, &argc, &argv);
    if (argc != 2 || (strcmp(argv[1], "exit") != 0 && strcmp(argv[1], "hang") != 0)) {
        fprintf(stderr, "usage: mpirun -np N mpi_timeout exit|hang   (N >= 2)\n");
        return EXIT_USAGE;
    }
    if (d.world < 2) {
        fprintf(stderr, "mpi_timeout needs at least 2 ranks (mpirun -np 2)\n");
        return EXIT_USAGE;
    }
    OpsContext ctx;
    ops_context_init(&ctx, "cpu", 0, 1, PRECISION_FP32, 0);
    dist_setup_comm(&d, &ctx, "mpi", 3.0);

    // One healthy collective first: the failure must happen mid-run, not at start-up.
    float buf[1024];
    for (int i = 0; i < 1024; i++) buf[i] = (float)d.rank;
    dist_allreduce(&d, &ctx, buf, 1024, 1);
    if (dist_agree_any(&d, 0) != 0) fprintf(stderr, "FAIL: rank %d: agree_any(0) returned 1\n", d.rank);

    d.current_step = 42;
    if (d.rank == 1) {
        fflush(stdout);
        if (strcmp(argv[1], "exit") == 0) {
            fprintf(stderr, "rank 1: exiting abruptly with code 9 (as if killed)\n");
            _exit(9);
        }
        fprintf(stderr, "rank 1: hanging (never reaching the all-reduce)\n");
        for (;;) pause();
    }
    double start = wall_time_seconds();
    dist_allreduce(&d, &ctx, buf, 1024, 1);
    // Unreachable when the timeout works: rank 1 never contributes.
    fprintf(stderr, "FAIL: rank %d: all-reduce returned after %.1f s although rank 1 is gone\n", d.rank,
            wall_time_seconds() - start);
    return 3;
}
