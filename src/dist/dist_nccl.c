// dist_nccl.c: the NCCL communicator (device buffers, one GPU per rank). Compiled for real only
// when the build has CUDA (VQ_HAVE_CUDA); otherwise the functions below fail with a message and
// the staging buffer is plain malloc.
//
// The communicator is non-blocking (config.blocking = 0): no NCCL call ever blocks the host, so
// a dead or hung peer shows up as a collective that does not finish, which we detect by polling
// with a timeout and answer with ncclCommAbort (a blocking communicator would hang in the call).
//
// A collective is only enqueued: it runs on a dedicated stream, ordered after the compute stream
// by one event and before later compute work by another, and the host returns at once. So a
// training step has no host sync and can be captured in a CUDA graph (the fork/join through
// events is the pattern stream capture follows across streams), and a separate stream leaves
// room to overlap bucketed gradient all-reduces with backward later. Completion is checked in
// dist_sync, and here, bounded, for collectives more than STEPS_AHEAD steps old: see retire().
#include "dist_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"

#ifdef VQ_HAVE_CUDA
#include <nccl.h>

#include "../../kernels/cuda/cuda_api.h"     // cuda_context_stream: the compute stream
#include "../../kernels/cuda/cuda_check.h"   // CUDA_CHECK, NCCL_CHECK (fatal_at)

enum {
    // Completion events of the collectives enqueued outside a graph capture and not yet seen
    // done. More than two steps' worth (2 collectives a step with the EMA quantizer).
    NCCL_RING = 16,
    // A collective enqueued at step S first waits (bounded) for those of step S - STEPS_AHEAD and
    // older. The GPU still has a step of work queued while the host waits, so it never idles for
    // it; and a hang is caught here within dist.timeout_s, before the host could fill the CUDA
    // launch queue and block inside a kernel launch, where no timeout reaches it.
    STEPS_AHEAD = 2,
};

struct DistNccl {
    ncclComm_t comm;             // NULL once aborted
    cudaStream_t stream;         // communication stream
    cudaEvent_t inputs_ready;    // recorded on the compute stream before a collective
    cudaEvent_t captured_done;   // the join event of a collective inside a graph capture
    cudaEvent_t synced;          // dist_sync's marker on the compute stream; teardown's on ours
    // The pending collectives, oldest first: ring[head], ..., ring[(head + count - 1) % NCCL_RING].
    cudaEvent_t ring[NCCL_RING];           // recorded on our stream after the collective
    int64_t ring_step[NCCL_RING];          // d->current_step when it was enqueued
    const char *ring_name[NCCL_RING];      // "allreduce", "broadcast"
    int head, count;
};

// cudaEventQuery: 1 when the work before the event is done, 0 while it is not. Any other answer
// is an error of earlier work (a failed kernel): report it where we polled, with the caller's line.
#define EVENT_DONE(event) event_done((event), #event, __FILE__, __LINE__)
static int event_done(cudaEvent_t e, const char *what, const char *file, int line) {
    cudaError_t q = cudaEventQuery(e);
    if (q == cudaSuccess) return 1;
    if (q == cudaErrorNotReady) return 0;
    fatal_at(file, line, "cudaEventQuery(%s) failed: %s: %s", what, cudaGetErrorName(q), cudaGetErrorString(q));
}

void dist_nccl_abort(DistNccl *s) {
    if (!s || !s->comm) return;
    ncclComm_t comm = s->comm;
    s->comm = NULL;              // dist_abort calls us again: abort once
    ncclCommAbort(comm);         // result ignored: we are ending the process either way
}

// An asynchronous NCCL error (a peer's connection broke, a network failure): name it, then end
// the job. Remote and system errors mean a peer is gone: the collective-timeout exit code.
__attribute__((noreturn)) static void nccl_async_fail(Dist *d, DistNccl *s, const char *name, int64_t step,
                                                      ncclResult_t st) {
    fflush(stdout);
    log_error("NCCL reported '%s' during collective '%s' at step %lld: %s", ncclGetErrorString(st), name,
              (long long)step, ncclGetLastError(s->comm));
    dist_nccl_abort(s);
    dist_abort(d, st == ncclRemoteError || st == ncclSystemError ? EXIT_COLLECTIVE_TIMEOUT : EXIT_ERROR);
}

__attribute__((noreturn)) static void nccl_timeout(Dist *d, DistNccl *s, const char *name, int64_t step,
                                                   const char *note) {
    dist_nccl_abort(s);          // unblocks the kernels waiting for the silent peer
    dist_timeout_abort_at(d, name, step, note);
}

// The communicator's state: ncclSuccess or ncclInProgress go on; an error ends the job.
static ncclResult_t nccl_state(Dist *d, DistNccl *s, const char *name, int64_t step) {
    ncclResult_t st = ncclSuccess;
    NCCL_CHECK(ncclCommGetAsyncError(s->comm, &st));
    if (st != ncclSuccess && st != ncclInProgress) nccl_async_fail(d, s, name, step, st);
    return st;
}

// On a non-blocking communicator a call may return ncclInProgress before its work is enqueued;
// until the state is ncclSuccess no other NCCL call may be made and nothing may be added to our
// stream (NCCL's rule), so wait for it, bounded: enqueueing needs the peers' connections.
static void nccl_settle(Dist *d, DistNccl *s, const char *name) {
    double start = wall_time_seconds();
    while (nccl_state(d, s, name, d->current_step) != ncclSuccess) {
        double waited = wall_time_seconds() - start;
        if (waited > d->timeout_s) nccl_timeout(d, s, name, d->current_step, NULL);
        dist_poll_pause(waited);
    }
}

// Wait for event e, bounded by the timeout, watching the communicator for errors. On timeout the
// message names collective `name` of step `step`.
static void wait_event(Dist *d, DistNccl *s, cudaEvent_t e, const char *name, int64_t step, const char *note) {
    double start = wall_time_seconds();
    for (;;) {
        nccl_state(d, s, name, step);
        if (EVENT_DONE(e)) return;
        double waited = wall_time_seconds() - start;
        if (waited > d->timeout_s) nccl_timeout(d, s, name, step, note);
        dist_poll_pause(waited);
    }
}

static int stream_capturing(cudaStream_t stream) {
    enum cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
    return status != cudaStreamCaptureStatusNone;   // an invalidated capture counts as one
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
    CUDA_CHECK(cudaEventCreateWithFlags(&s->captured_done, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&s->synced, cudaEventDisableTiming));
    for (int i = 0; i < NCCL_RING; i++) CUDA_CHECK(cudaEventCreateWithFlags(&s->ring[i], cudaEventDisableTiming));
    int version = dist_nccl_version();
    log_info("dist: NCCL %d.%d.%d communicator of %d ranks ready", version / 10000, version / 100 % 100,
             version % 100, d->world);
    return s;
}

int dist_nccl_version(void) {
    int version = 0;
    NCCL_CHECK(ncclGetVersion(&version));
    return version;
}

void dist_nccl_destroy(Dist *d, DistNccl *s) {
    if (s->comm) {
        // Everything on our stream first, bounded: a plain synchronize would hang on a dead peer.
        // Teardown is otherwise best effort: the run's results are written, so a CUDA failure
        // here (the context already gone) only warns.
        cudaError_t rc = cudaEventRecord(s->synced, s->stream);
        if (rc == cudaSuccess) {
            wait_event(d, s, s->synced, "NCCL teardown", d->current_step, NULL);
        } else {
            log_warn("NCCL teardown: cudaEventRecord failed (%s); was the CUDA context destroyed before "
                     "dist_teardown_comm? Aborting the communicator instead", cudaGetErrorString(rc));
            dist_nccl_abort(s);
        }
    }
    if (s->comm) {
        // Finalize flushes outstanding work with the peers (collective, so bounded by the timeout).
        NCCL_CHECK(ncclCommFinalize(s->comm));
        nccl_settle(d, s, "NCCL communicator finalize");
        NCCL_CHECK(ncclCommDestroy(s->comm));
        s->comm = NULL;
    }
    for (int i = 0; i < NCCL_RING; i++) cudaEventDestroy(s->ring[i]);
    cudaEventDestroy(s->inputs_ready);
    cudaEventDestroy(s->captured_done);
    cudaEventDestroy(s->synced);
    cudaStreamDestroy(s->stream);
    free(s);
}

// Forget the pending collectives that have completed, and wait (bounded) for those the host may
// not run further ahead of: enqueued STEPS_AHEAD or more steps before d->current_step, or the
// oldest when the ring is full (many collectives within one step, e.g. at start-up).
static void retire(Dist *d, DistNccl *s) {
    while (s->count > 0) {
        int i = s->head;
        int must_wait = s->count == NCCL_RING || s->ring_step[i] <= d->current_step - STEPS_AHEAD;
        if (must_wait) wait_event(d, s, s->ring[i], s->ring_name[i], s->ring_step[i], NULL);
        else if (!EVENT_DONE(s->ring[i])) break;   // younger ones cannot be done before it
        s->head = (i + 1) % NCCL_RING;
        s->count--;
    }
}

typedef struct {
    cudaStream_t compute;
    int capturing;   // the compute stream is being captured into a CUDA graph
} Fork;

// Order our stream after the work already queued on the compute stream.
static Fork fork_from_compute(Dist *d, DistNccl *s, OpsContext *ctx) {
    Fork f;
    f.compute = (cudaStream_t)cuda_context_stream(ctx);
    f.capturing = stream_capturing(f.compute);
    // Inside a capture nothing runs, so there is nothing to wait for; the ring's events belong
    // to work outside the capture and are left alone.
    if (!f.capturing) retire(d, s);
    CUDA_CHECK(cudaEventRecord(s->inputs_ready, f.compute));
    CUDA_CHECK(cudaStreamWaitEvent(s->stream, s->inputs_ready, 0));
    return f;
}

// After the NCCL call: wait until it is enqueued, then make later compute work wait for it, and
// (outside a capture) remember its event so retire() and dist_sync can check it.
static void join_to_compute(Dist *d, DistNccl *s, Fork f, const char *name) {
    nccl_settle(d, s, name);
    cudaEvent_t done = s->captured_done;
    int slot = (s->head + s->count) % NCCL_RING;   // retire() left at least one free
    if (!f.capturing) done = s->ring[slot];
    CUDA_CHECK(cudaEventRecord(done, s->stream));
    CUDA_CHECK(cudaStreamWaitEvent(f.compute, done, 0));
    if (!f.capturing) {
        s->ring_step[slot] = d->current_step;
        s->ring_name[slot] = name;
        s->count++;
    }
}

void dist_nccl_allreduce(Dist *d, DistNccl *s, OpsContext *ctx, float *buf, size_t n, int average) {
    Fork f = fork_from_compute(d, s, ctx);
    // ncclAvg: the division happens inside the reduction, no extra kernel.
    NCCL_CHECK(ncclAllReduce(buf, buf, n, ncclFloat, average ? ncclAvg : ncclSum, s->comm, s->stream));
    join_to_compute(d, s, f, "allreduce");
}

void dist_nccl_broadcast(Dist *d, DistNccl *s, OpsContext *ctx, float *buf, size_t n, int root) {
    CHECK(root >= 0 && root < d->world, "broadcast from rank %d in a world of %d", root, d->world);
    Fork f = fork_from_compute(d, s, ctx);
    NCCL_CHECK(ncclBroadcast(buf, buf, n, ncclFloat, root, s->comm, s->stream));
    join_to_compute(d, s, f, "broadcast");
}

void dist_nccl_sync(Dist *d, DistNccl *s, OpsContext *ctx) {
    cudaStream_t compute = (cudaStream_t)cuda_context_stream(ctx);
    if (stream_capturing(compute))
        fatal("dist_sync was called while the compute stream is being captured into a CUDA graph; it waits "
              "for the GPU, which a capture cannot: call it after cudaStreamEndCapture, between graph launches");
    // The compute stream waits for every collective enqueued so far (the join events, or inside
    // a replayed graph its own edges), so one event on it covers them all and the compute around
    // them. The wait is the same as the one a synchronize would do, but bounded.
    CUDA_CHECK(cudaEventRecord(s->synced, compute));
    double start = wall_time_seconds();
    for (;;) {
        nccl_state(d, s, "dist_sync", d->current_step);
        if (EVENT_DONE(s->synced)) break;
        double waited = wall_time_seconds() - start;
        if (waited > d->timeout_s) {
            // Name the oldest collective that has not finished, if one enqueued directly has not.
            for (int k = 0; k < s->count; k++) {
                int i = (s->head + k) % NCCL_RING;
                if (!EVENT_DONE(s->ring[i]))
                    nccl_timeout(d, s, s->ring_name[i], s->ring_step[i], "found waiting in dist_sync");
            }
            nccl_timeout(d, s, "dist_sync", d->current_step,
                         "every collective enqueued directly has completed, so a collective in a replayed CUDA "
                         "graph, or a kernel on this GPU, is stuck");
        }
        dist_poll_pause(waited);
    }
    s->head = 0;   // all done
    s->count = 0;
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

int dist_nccl_version(void) { return 0; }

void dist_nccl_allreduce(Dist *d, DistNccl *s, OpsContext *ctx, float *buf, size_t n, int average) {
    (void)d; (void)s; (void)ctx; (void)buf; (void)n; (void)average;
    fatal("internal error: NCCL all-reduce in a build without CUDA");
}

void dist_nccl_broadcast(Dist *d, DistNccl *s, OpsContext *ctx, float *buf, size_t n, int root) {
    (void)d; (void)s; (void)ctx; (void)buf; (void)n; (void)root;
    fatal("internal error: NCCL broadcast in a build without CUDA");
}

void dist_nccl_sync(Dist *d, DistNccl *s, OpsContext *ctx) {
    (void)d; (void)s; (void)ctx;
    fatal("internal error: NCCL sync in a build without CUDA");
}

float *dist_pinned_alloc(size_t floats) { return xmalloc(floats * sizeof(float)); }

void dist_pinned_free(float *p) { free(p); }

#endif
