// dist.c: ranks, the MPI communicator and the collectives of dist.h. The NCCL communicator lives
// in dist_nccl.c; device-buffer collectives are routed there when the backend is NCCL.
//
// Every collective is non-blocking underneath (MPI_Iallreduce, MPI_Ibcast, MPI_Ibarrier) and
// polled with MPI_Test, so a rank whose peer died or hangs gives up after d->timeout_s and ends
// the whole job instead of waiting forever. Open MPI usually kills the job itself when a rank
// exits; the timeout covers the cases it cannot see (a rank stuck in a loop, a hung filesystem,
// a peer that never reaches the collective).
#include "dist_internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/common.h"

enum {
    // MPI counts are int: larger buffers go through in pieces of this many elements.
    MPI_PIECE = 1 << 30,
    GATHER_TAG = 0x6761,       // dist_gather_host's point-to-point messages
    // Default size of the host staging buffer (floats): 16 MiB holds the CIFAR model's gradient.
    STAGE_DEFAULT_FLOATS = 4 << 20,
};
static const double DEFAULT_TIMEOUT_S = 300.0;   // until dist_setup_comm sets the configured one

// ---- errors, aborts and waiting -----------------------------------------------------------

static int mpi_is_live(void) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    return initialized && !finalized;
}

// A failed MPI call is an error like any other: fatal_at (exit code EXIT_ERROR), which under
// mpirun ends the whole job.
void dist_mpi_fail(const char *call, const char *file, int line, int rc) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "MPI error code %d", rc);
    fatal_at(file, line, "%s failed: MPI: %s", call, text);
}

void dist_abort(Dist *d, int code) {
    DistImpl *im = d->impl;
    if (im && im->nccl) dist_nccl_abort(im->nccl);   // frees GPUs stuck in a collective kernel
    fflush(stdout);
    fflush(stderr);
    // MPI_Abort rather than exit: the other ranks may be waiting on this one in a collective, and
    // a launcher told not to end the job when one rank exits would leave them there. A world of
    // one has nobody to tell; MPI_Abort would only add Open MPI's banner.
    int world = 1;
    if (mpi_is_live() && MPI_Comm_size(MPI_COMM_WORLD, &world) == MPI_SUCCESS && world > 1)
        MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

void dist_timeout_abort_at(Dist *d, const char *name, int64_t step, const char *note) {
    fflush(stdout);
    log_error("collective '%s' at step %lld got no answer from the other ranks within dist.timeout_s=%g s: a rank "
              "died or hangs (see its log)%s%s; aborting the job", name, (long long)step, d->timeout_s,
              note ? "; " : "", note ? note : "");
    dist_abort(d, EXIT_COLLECTIVE_TIMEOUT);
}

void dist_timeout_abort(Dist *d, const char *name) { dist_timeout_abort_at(d, name, d->current_step, NULL); }

// Spin for the first 100 us: a collective among healthy ranks usually completes by then, and
// Open MPI progresses only inside MPI calls, so testing often keeps large transfers moving. Then
// yield for 20 ms: that still answers within microseconds but lets a peer on the same core run
// when ranks outnumber cores. After that the peer is busy (rank 0 writing a checkpoint, a slow
// data load): sleep 100 us per poll so a long wait does not burn a core.
void dist_poll_pause(double waited_s) {
    if (waited_s < 100e-6) return;
    if (waited_s < 20e-3) {
        sched_yield();
        return;
    }
    struct timespec ts = {0, 100 * 1000};
    nanosleep(&ts, NULL);
}

void dist_mpi_wait(Dist *d, MPI_Request *req, const char *name) {
    double start = wall_time_seconds();
    for (;;) {
        int done = 0;
        MPI_CHECK(MPI_Test(req, &done, MPI_STATUS_IGNORE));
        if (done) return;
        double waited = wall_time_seconds() - start;
        if (waited > d->timeout_s) dist_timeout_abort(d, name);
        dist_poll_pause(waited);
    }
}

// ---- setup --------------------------------------------------------------------------------

void dist_init(Dist *d, int *argc, char ***argv) {
    memset(d, 0, sizeof *d);
    // Open MPI's non-blocking all-reduce (libnbc) takes a binomial tree (reduce to rank 0, then
    // broadcast) for in-place calls and for fewer than 4 ranks: measured 2.5x slower than the
    // blocking MPI_Allreduce on a 10 MB gradient with np=2. Algorithm 3 is reduce-scatter +
    // allgather (a ring when the count is below the largest power of two <= ranks), as fast as
    // the blocking call. Read at MPI_Init; a value already in the environment wins; other MPIs
    // ignore it.
    setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "3", 0);
    int provided = 0;
    // FUNNELED: only the main thread calls MPI, but other threads exist (OpenBLAS, CUDA).
    MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    if (provided < MPI_THREAD_FUNNELED)
        log_warn("the MPI library offers thread level %d, below MPI_THREAD_FUNNELED; "
                 "if runs crash in MPI, use an MPI built with thread support", provided);
    // Errors come back as return codes so MPI_CHECK can say which call failed where.
    MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));

    DistImpl *im = xcalloc(1, sizeof *im);
    d->impl = im;
    // Our own communicator: no clash with MPI traffic of any library on MPI_COMM_WORLD.
    MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &im->world));
    MPI_CHECK(MPI_Comm_set_errhandler(im->world, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(im->world, &d->rank));
    MPI_CHECK(MPI_Comm_size(im->world, &d->world));
    // Ranks that share memory share a node: local rank picks the GPU.
    MPI_CHECK(MPI_Comm_split_type(im->world, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &im->node));
    MPI_CHECK(MPI_Comm_set_errhandler(im->node, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(im->node, &d->local_rank));
    MPI_CHECK(MPI_Comm_size(im->node, &d->local_world));

    d->backend = DIST_BACKEND_MPI;
    d->timeout_s = DEFAULT_TIMEOUT_S;
    d->current_step = 0;

    // srun without PMI support (or a wrong --mpi plugin) starts N singletons: each would train
    // alone and all would write the same checkpoints.
    if (d->world == 1 && launcher_world() > 1)
        log_warn("the launcher announced %d tasks but MPI sees a world of 1, so every task trains alone; "
                 "with srun pass --mpi=pmix (see srun --mpi=list), or launch with mpirun",
                 launcher_world());
}

int dist_local_device(const Dist *d, int device_count) {
    if (device_count <= 0) return 0;
    return d->local_rank % device_count;
}

static const char *backend_name(DistBackend b) { return b == DIST_BACKEND_NCCL ? "nccl" : "mpi"; }

static void stage_grow(DistImpl *im, size_t floats) {
    if (floats <= im->stage_floats) return;
    if (im->stage) dist_pinned_free(im->stage);
    im->stage = dist_pinned_alloc(floats);
    im->stage_floats = floats;
}

void dist_setup_comm(Dist *d, OpsContext *ctx, const char *backend, double timeout_s) {
    DistImpl *im = d->impl;
    CHECK(im != NULL, "dist_setup_comm called before dist_init");
    dist_teardown_comm(d);   // a second setup replaces the first
    if (!(timeout_s > 0))
        fatal("dist.timeout_s=%g: expected a positive number of seconds (e.g. 300); it bounds how long a "
              "rank waits for the others in a collective", timeout_s);
    d->timeout_s = timeout_s;

    int want_nccl;
    if (strcmp(backend, "mpi") == 0) {
        want_nccl = 0;
    } else if (strcmp(backend, "nccl") == 0) {
        if (ctx->kind != BACKEND_CUDA)
            fatal("dist.backend=nccl needs the CUDA backend, but this run uses the CPU; "
                  "set dist.backend=mpi (or auto), or train.device=cuda on a GPU node");
        want_nccl = 1;
    } else if (strcmp(backend, "auto") == 0) {
        want_nccl = ctx->kind == BACKEND_CUDA && d->world > 1;
    } else {
        fatal("unknown dist.backend '%s'; expected auto, nccl or mpi", backend);
    }

    // NCCL needs one GPU per rank. The check is collective over the node, so the ranks of a
    // node reach the same answer; the all-reduce after it makes all nodes agree too.
    if (ctx->kind == BACKEND_CUDA && dist_gpu_shared_on_node(d, ctx)) {
        if (want_nccl && strcmp(backend, "nccl") == 0)
            fatal("dist.backend=nccl needs one GPU per rank, but ranks of this node share a GPU (see the "
                  "GPU lines above); launch at most one rank per GPU, or set dist.backend=mpi (host-staged, "
                  "allows sharing a GPU)");
        if (want_nccl && d->local_rank == 0)
            log_warn("dist.backend=auto: ranks of this node share a GPU, which NCCL cannot do; "
                     "using the MPI backend (host-staged, slower)");
        want_nccl = 0;
    }
    if (d->world > 1) want_nccl = dist_agree_any(d, !want_nccl) ? 0 : want_nccl;
    // Nobody to talk to: no communicator at all, unless NCCL was asked for by name. A one-rank
    // NCCL communicator runs the whole NCCL path (enqueue, events, dist_sync) on one GPU: it is
    // how that path is tested on a machine with one GPU (tests/scripts/test_gpu_nccl.sh).
    if (d->world == 1 && strcmp(backend, "nccl") != 0) want_nccl = 0;

    d->backend = want_nccl ? DIST_BACKEND_NCCL : DIST_BACKEND_MPI;
    if (want_nccl) {
        im->nccl = dist_nccl_create(d, ctx);
    } else if (ctx->kind == BACKEND_CUDA && d->world > 1) {
        im->staged = 1;
        stage_grow(im, STAGE_DEFAULT_FLOATS);
    }
    log_info("dist: %d rank(s), %d on this node, backend %s%s, collective timeout %g s", d->world,
             d->local_world, backend_name(d->backend), im->staged ? " (device buffers staged through host)" : "",
             d->timeout_s);
}

void dist_reserve(Dist *d, size_t max_floats) {
    DistImpl *im = d->impl;
    if (im && im->staged) stage_grow(im, max_floats);
}

void dist_teardown_comm(Dist *d) {
    DistImpl *im = d->impl;
    if (!im) return;
    if (im->nccl) dist_nccl_destroy(d, im->nccl);
    im->nccl = NULL;
    if (im->stage) dist_pinned_free(im->stage);
    im->stage = NULL;
    im->stage_floats = 0;
    im->staged = 0;
    d->backend = DIST_BACKEND_MPI;
}

void dist_finalize(Dist *d) {
    DistImpl *im = d->impl;
    if (!im) return;
    dist_teardown_comm(d);
    MPI_CHECK(MPI_Comm_free(&im->node));
    MPI_CHECK(MPI_Comm_free(&im->world));
    free(im);
    d->impl = NULL;
    MPI_CHECK(MPI_Finalize());
}

// ---- collectives --------------------------------------------------------------------------

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

// In-place sum of host floats over all ranks.
static void host_allreduce_f32(Dist *d, float *buf, size_t n, const char *name) {
    DistImpl *im = d->impl;
    for (size_t off = 0; off < n; off += MPI_PIECE) {
        int m = (int)min_size(n - off, MPI_PIECE);
        MPI_Request req;
        MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf + off, m, MPI_FLOAT, MPI_SUM, im->world, &req));
        dist_mpi_wait(d, &req, name);
    }
}

static void host_broadcast_bytes(Dist *d, void *buf, size_t bytes, int root, const char *name) {
    DistImpl *im = d->impl;
    CHECK(root >= 0 && root < d->world, "broadcast from rank %d in a world of %d", root, d->world);
    for (size_t off = 0; off < bytes; off += MPI_PIECE) {
        int m = (int)min_size(bytes - off, MPI_PIECE);
        MPI_Request req;
        MPI_CHECK(MPI_Ibcast((char *)buf + off, m, MPI_BYTE, root, im->world, &req));
        dist_mpi_wait(d, &req, name);
    }
}

// Divide rather than multiply by 1/world: the average is then the correctly rounded quotient,
// the same whatever the world size's reciprocal rounds to.
static void divide_by_world(float *x, size_t n, int world) {
    const float w = (float)world;
    for (size_t i = 0; i < n; i++) x[i] /= w;
}

void dist_allreduce(Dist *d, OpsContext *ctx, float *buf, size_t n, int average) {
    if (n == 0) return;
    DistImpl *im = d->impl;
    if (im->nccl) {   // enqueued only; dist_sync checks completion
        dist_nccl_allreduce(d, im->nccl, ctx, buf, n, average);
        return;
    }
    if (d->world == 1) return;
    if (ctx->kind == BACKEND_CPU) {
        host_allreduce_f32(d, buf, n, "allreduce");
        if (average) divide_by_world(buf, n, d->world);
        return;
    }
    // MPI backend, CUDA context: through the pinned host buffer, a piece at a time.
    CHECK(im->staged, "dist_allreduce on a CUDA buffer, but dist_setup_comm was given a CPU context");
    for (size_t off = 0; off < n; off += im->stage_floats) {
        size_t m = min_size(n - off, im->stage_floats);
        ctx->ops->to_host(ctx, im->stage, buf + off, m * sizeof(float));
        host_allreduce_f32(d, im->stage, m, "allreduce");
        if (average) divide_by_world(im->stage, m, d->world);
        ctx->ops->to_device(ctx, buf + off, im->stage, m * sizeof(float));
    }
    // The next use of the staging buffer must not overwrite it while a copy still reads it.
    ctx->ops->synchronize(ctx);
}

void dist_broadcast(Dist *d, OpsContext *ctx, float *buf, size_t n, int root) {
    if (n == 0) return;
    DistImpl *im = d->impl;
    if (im->nccl) {
        dist_nccl_broadcast(d, im->nccl, ctx, buf, n, root);
        return;
    }
    if (d->world == 1) return;
    if (ctx->kind == BACKEND_CPU) {
        host_broadcast_bytes(d, buf, n * sizeof(float), root, "broadcast");
        return;
    }
    CHECK(im->staged, "dist_broadcast on a CUDA buffer, but dist_setup_comm was given a CPU context");
    for (size_t off = 0; off < n; off += im->stage_floats) {
        size_t m = min_size(n - off, im->stage_floats);
        if (d->rank == root) ctx->ops->to_host(ctx, im->stage, buf + off, m * sizeof(float));
        host_broadcast_bytes(d, im->stage, m * sizeof(float), root, "broadcast");
        if (d->rank != root) {
            ctx->ops->to_device(ctx, buf + off, im->stage, m * sizeof(float));
            ctx->ops->synchronize(ctx);   // the copy reads the stage, which the next piece overwrites
        }
    }
}

void dist_sync(Dist *d, OpsContext *ctx) {
    DistImpl *im = d->impl;
    // MPI collectives (host or staged) return complete: nothing is in flight.
    if (im && im->nccl) dist_nccl_sync(d, im->nccl, ctx);
}

int dist_graph_capturable(const Dist *d) {
    const DistImpl *im = d->impl;
    if (im && im->nccl) return 1;
    return d->world == 1;   // the collectives return at once: nothing to capture
}

void dist_allreduce_host_f64(Dist *d, double *buf, size_t n) {
    if (d->world == 1 || n == 0) return;
    DistImpl *im = d->impl;
    for (size_t off = 0; off < n; off += MPI_PIECE) {
        int m = (int)min_size(n - off, MPI_PIECE);
        MPI_Request req;
        MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf + off, m, MPI_DOUBLE, MPI_SUM, im->world, &req));
        dist_mpi_wait(d, &req, "allreduce_host_f64");
    }
}

int dist_agree_any(Dist *d, int flag) {
    int v = flag != 0;
    if (d->world == 1) return v;
    DistImpl *im = d->impl;
    MPI_Request req;
    MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, im->world, &req));
    dist_mpi_wait(d, &req, "agree_any");
    return v;
}

void dist_broadcast_host(Dist *d, void *buf, size_t bytes, int root) {
    if (d->world == 1 || bytes == 0) return;
    host_broadcast_bytes(d, buf, bytes, root, "broadcast_host");
}

void dist_barrier(Dist *d) {
    if (d->world == 1) return;
    DistImpl *im = d->impl;
    MPI_Request req;
    MPI_CHECK(MPI_Ibarrier(im->world, &req));
    dist_mpi_wait(d, &req, "barrier");
}

void dist_allgather_u64(Dist *d, uint64_t value, uint64_t *all) {
    all[0] = value;
    if (d->world == 1) return;
    DistImpl *im = d->impl;
    MPI_Request req;
    MPI_CHECK(MPI_Iallgather(&value, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, im->world, &req));
    dist_mpi_wait(d, &req, "allgather");
}

void dist_gather_host(Dist *d, const void *send, void *recv, const size_t *rank_bytes) {
    if (d->rank == 0 && recv != send && rank_bytes[0]) memmove(recv, send, rank_bytes[0]);
    if (d->world == 1) return;
    DistImpl *im = d->impl;
    size_t at = d->rank == 0 ? rank_bytes[0] : 0;   // rank 0: where the next rank's bytes go
    for (int peer = 1; peer < d->world; peer++) {
        if (d->rank != 0 && d->rank != peer) continue;
        for (size_t off = 0; off < rank_bytes[peer]; off += MPI_PIECE) {
            int m = (int)min_size(rank_bytes[peer] - off, MPI_PIECE);
            MPI_Request req;
            if (d->rank == 0)
                MPI_CHECK(MPI_Irecv((char *)recv + at + off, m, MPI_BYTE, peer, GATHER_TAG, im->world, &req));
            else
                MPI_CHECK(MPI_Isend((const char *)send + off, m, MPI_BYTE, 0, GATHER_TAG, im->world, &req));
            dist_mpi_wait(d, &req, "gather_host");
        }
        at += rank_bytes[peer];
    }
}
