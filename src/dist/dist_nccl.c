// dist_nccl.c: the NCCL communicator (device buffers, one GPU per rank). Compiled for real only
// when the build has CUDA (VQ_HAVE_CUDA); otherwise the functions below fail with a message and
// the staging buffer is plain malloc.
//
// The communicator is non-blocking (config.blocking = 0): no NCCL call ever blocks the host, so
// a dead or hung peer shows up as a collective that does not finish, which we detect by polling
// with a timeout and answer with ncclCommAbort (a blocking communicator would hang in the call).
// Collectives run on a dedicated stream ordered after the compute stream by events, which leaves
// room to overlap bucketed gradient all-reduces with backward later.
#include "dist_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"

#ifdef VQ_HAVE_CUDA
#include <cuda_runtime.h>
#include <nccl.h>

// The compute stream (a cudaStream_t) of a CUDA ops context, defined by the CUDA backend
// (kernels/cuda/cuda_context.cu). Declared here rather than in ops.h because ops.h is the kernels
// layer's interface and only the NCCL path needs the raw stream.
extern void *cuda_context_stream(OpsContext *ctx);

struct DistNccl {
    ncclComm_t comm;            // NULL once aborted
    cudaStream_t stream;        // communication stream
    cudaEvent_t inputs_ready;   // recorded on the compute stream before a collective
    cudaEvent_t comm_done;      // recorded on the communication stream after it
};

__attribute__((noreturn)) static void lib_fail(const char *lib, const char *call, const char *file, int line,
                                               const char *text) {
    fflush(stdout);
    if (launcher_world() > 1) fprintf(stderr, "[rank %d] ", launcher_rank());
    fprintf(stderr, "error at %s:%d: %s failed: %s: %s\n", file, line, call, lib, text);
    dist_die(EXIT_ERROR);
}

#define CUDA_CHECK(call)                                                                    \
    do {                                                                                    \
        cudaError_t cuda_rc_ = (call);                                                      \
        if (cuda_rc_ != cudaSuccess)                                                        \
            lib_fail("CUDA", #call, __FILE__, __LINE__, cudaGetErrorString(cuda_rc_));      \
    } while (0)

// ncclInProgress is not an error on a non-blocking communicator: the call goes on in the
// background and nccl_settle waits for it.
#define NCCL_CHECK(call)                                                                    \
    do {                                                                                    \
        ncclResult_t nccl_rc_ = (call);                                                     \
        if (nccl_rc_ != ncclSuccess && nccl_rc_ != ncclInProgress)                          \
            lib_fail("NCCL", #call, __FILE__, __LINE__, ncclGetErrorString(nccl_rc_));      \
    } while (0)

void dist_nccl_abort(DistNccl *s) {
    if (!s || !s->comm) return;
    ncclComm_t comm = s->comm;
    s->comm = NULL;              // dist_abort calls us again: abort once
    ncclCommAbort(comm);         // result ignored: we are ending the process either way
}

// An asynchronous NCCL error (a peer's connection broke, a network failure): name it, then end
// the job. Remote and system errors mean a peer is gone: the collective-timeout exit code.
__attribute__((noreturn)) static void nccl_async_fail(Dist *d, DistNccl *s, const char *name, ncclResult_t st) {
    fflush(stdout);
    fprintf(stderr, "[rank %d] error: NCCL reported '%s' during collective '%s' at step %lld: %s\n", d->rank,
            ncclGetErrorString(st), name, (long long)d->current_step, ncclGetLastError(s->comm));
    fflush(stderr);
    dist_nccl_abort(s);
    dist_abort(d, st == ncclRemoteError || st == ncclSystemError ? EXIT_COLLECTIVE_TIMEOUT : EXIT_ERROR);
}

__attribute__((noreturn)) static void nccl_timeout(Dist *d, DistNccl *s, const char *name) {
    dist_nccl_abort(s);          // unblocks the kernels waiting for the silent peer
    dist_timeout_abort(d, name);
}

// On a non-blocking communicator a call may return before its work is enqueued; wait until the
// communicator is idle (ncclSuccess) before the next call or before recording an event after it.
static void nccl_settle(Dist *d, DistNccl *s, const char *name) {
    double start = wall_time_seconds();
    for (;;) {
        ncclResult_t st = ncclSuccess;
        NCCL_CHECK(ncclCommGetAsyncError(s->comm, &st));
        if (st == ncclSuccess) return;
        if (st != ncclInProgress) nccl_async_fail(d, s, name, st);
        double waited = wall_time_seconds() - start;
        if (waited > d->timeout_s) nccl_timeout(d, s, name);
        dist_poll_pause(waited);
    }
}

int dist_gpu_shared_on_node(Dist *d, OpsContext *ctx) {
    enum { BUS_ID_LEN = 32 };
    char bus[BUS_ID_LEN] = {0};
    CUDA_CHECK(cudaSetDevice(ctx->device_index));
    CUDA_CHECK(cudaDeviceGetPCIBusId(bus, BUS_ID_LEN, ctx->device_index));
    // Every rank says which GPU it took: the first thing to look at when ranks collide or a GPU is slow.
    printf("[rank %d] dist: GPU %d (PCI %s), local rank %d of %d\n", d->rank, ctx->device_index, bus,
           d->local_rank, d->local_world);
    fflush(stdout);
    if (d->local_world == 1) return 0;

    DistImpl *im = d->impl;
    char *all = xcalloc((size_t)d->local_world, BUS_ID_LEN);
    MPI_Request req;
    MPI_CHECK(MPI_Iallgather(bus, BUS_ID_LEN, MPI_CHAR, all, BUS_ID_LEN, MPI_CHAR, im->node, &req));
    dist_mpi_wait(d, &req, "GPU bus id exchange");
    int shared = 0;
    for (int i = 0; i < d->local_world; i++)
        if (i != d->local_rank && strncmp(all + (size_t)i * BUS_ID_LEN, bus, BUS_ID_LEN) == 0) shared = 1;
    free(all);
    // Agree over the node so every rank of it takes the same backend.
    int any = shared;
    MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, im->node, &req));
    dist_mpi_wait(d, &req, "GPU bus id exchange");
    return any;
}

DistNccl *dist_nccl_create(Dist *d, OpsContext *ctx) {
    DistNccl *s = xcalloc(1, sizeof *s);
    CUDA_CHECK(cudaSetDevice(ctx->device_index));

    // Rank 0 makes the id; everyone gets it through MPI (with the timeout, like any collective).
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (d->rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    dist_broadcast_host(d, &id, sizeof id, 0);

    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    NCCL_CHECK(ncclCommInitRankConfig(&s->comm, d->world, id, d->rank, &config));
    nccl_settle(d, s, "NCCL communicator setup");

    // Non-blocking w.r.t. the legacy default stream: only our events order it.
    CUDA_CHECK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&s->inputs_ready, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&s->comm_done, cudaEventDisableTiming));
    int version = 0;
    NCCL_CHECK(ncclGetVersion(&version));
    log_info("dist: NCCL %d.%d.%d communicator of %d ranks ready", version / 10000, version / 100 % 100,
             version % 100, d->world);
    return s;
}

void dist_nccl_destroy(Dist *d, DistNccl *s) {
    // Teardown is best effort: the run's results are written, so a failure here only warns.
    cudaError_t rc = cudaStreamSynchronize(s->stream);
    if (rc != cudaSuccess) {
        log_warn("NCCL teardown: cudaStreamSynchronize failed (%s); was the CUDA context destroyed before "
                 "dist_teardown_comm? Aborting the communicator instead", cudaGetErrorString(rc));
        dist_nccl_abort(s);
    }
    if (s->comm) {
        // Finalize flushes outstanding work with the peers (collective, so bounded by the timeout).
        NCCL_CHECK(ncclCommFinalize(s->comm));
        nccl_settle(d, s, "NCCL communicator finalize");
        NCCL_CHECK(ncclCommDestroy(s->comm));
        s->comm = NULL;
    }
    cudaEventDestroy(s->inputs_ready);
    cudaEventDestroy(s->comm_done);
    cudaStreamDestroy(s->stream);
    free(s);
}

// Order the communication stream after the work already queued on the compute stream.
static cudaStream_t fork_from_compute(DistNccl *s, OpsContext *ctx) {
    cudaStream_t compute = (cudaStream_t)cuda_context_stream(ctx);
    CUDA_CHECK(cudaEventRecord(s->inputs_ready, compute));
    CUDA_CHECK(cudaStreamWaitEvent(s->stream, s->inputs_ready, 0));
    return compute;
}

// Make later compute work wait for the collective, then wait for it on the host with the
// timeout: a collective that never completes means a peer is gone. The wait includes compute
// work queued before the collective, so dist.timeout_s must exceed a step's time.
static void join_and_wait(Dist *d, DistNccl *s, cudaStream_t compute, const char *name) {
    CUDA_CHECK(cudaEventRecord(s->comm_done, s->stream));
    CUDA_CHECK(cudaStreamWaitEvent(compute, s->comm_done, 0));
    double start = wall_time_seconds();
    for (;;) {
        cudaError_t q = cudaEventQuery(s->comm_done);
        if (q == cudaSuccess) return;
        if (q != cudaErrorNotReady) lib_fail("CUDA", "cudaEventQuery(comm_done)", __FILE__, __LINE__, cudaGetErrorString(q));
        ncclResult_t st = ncclSuccess;
        NCCL_CHECK(ncclCommGetAsyncError(s->comm, &st));
        if (st != ncclSuccess && st != ncclInProgress) nccl_async_fail(d, s, name, st);
        double waited = wall_time_seconds() - start;
        if (waited > d->timeout_s) nccl_timeout(d, s, name);
        dist_poll_pause(waited);
    }
}

void dist_nccl_allreduce(Dist *d, DistNccl *s, OpsContext *ctx, float *buf, size_t n, int average) {
    cudaStream_t compute = fork_from_compute(s, ctx);
    // ncclAvg: the division happens inside the reduction, no extra kernel.
    NCCL_CHECK(ncclAllReduce(buf, buf, n, ncclFloat, average ? ncclAvg : ncclSum, s->comm, s->stream));
    nccl_settle(d, s, "allreduce");
    join_and_wait(d, s, compute, "allreduce");
}

void dist_nccl_broadcast(Dist *d, DistNccl *s, OpsContext *ctx, float *buf, size_t n, int root) {
    CHECK(root >= 0 && root < d->world, "broadcast from rank %d in a world of %d", root, d->world);
    cudaStream_t compute = fork_from_compute(s, ctx);
    NCCL_CHECK(ncclBroadcast(buf, buf, n, ncclFloat, root, s->comm, s->stream));
    nccl_settle(d, s, "broadcast");
    join_and_wait(d, s, compute, "broadcast");
}

float *dist_pinned_alloc(size_t floats) {
    void *p = NULL;
    CUDA_CHECK(cudaMallocHost(&p, floats * sizeof(float)));
    return p;
}

void dist_pinned_free(float *p) {
    // At shutdown a failure here (the CUDA context already torn down) costs nothing: warn only.
    cudaError_t rc = cudaFreeHost(p);
    if (rc != cudaSuccess) log_warn("cudaFreeHost of the dist staging buffer failed: %s", cudaGetErrorString(rc));
}

#else  // no CUDA in this build: no CUDA context can exist, so these are never reached in a run.

int dist_gpu_shared_on_node(Dist *d, OpsContext *ctx) {
    (void)d;
    (void)ctx;
    return 0;
}

DistNccl *dist_nccl_create(Dist *d, OpsContext *ctx) {
    (void)d;
    (void)ctx;
    fatal("dist.backend=nccl: this build has no CUDA (nvcc was not found at configure time); "
          "use dist.backend=mpi, or rebuild with the CUDA toolkit and NCCL installed");
}

void dist_nccl_destroy(Dist *d, DistNccl *s) {
    (void)d;
    (void)s;
}

void dist_nccl_abort(DistNccl *s) { (void)s; }

void dist_nccl_allreduce(Dist *d, DistNccl *s, OpsContext *ctx, float *buf, size_t n, int average) {
    (void)d; (void)s; (void)ctx; (void)buf; (void)n; (void)average;
    fatal("internal error: NCCL all-reduce in a build without CUDA");
}

void dist_nccl_broadcast(Dist *d, DistNccl *s, OpsContext *ctx, float *buf, size_t n, int root) {
    (void)d; (void)s; (void)ctx; (void)buf; (void)n; (void)root;
    fatal("internal error: NCCL broadcast in a build without CUDA");
}

float *dist_pinned_alloc(size_t floats) { return xmalloc(floats * sizeof(float)); }

void dist_pinned_free(float *p) { free(p); }

#endif
