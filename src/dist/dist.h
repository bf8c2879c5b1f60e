// dist.h: ranks and collectives. One MPI rank per GPU (or per CPU process). Two communicator
// implementations behind one interface: MPI (host buffers; on the CUDA backend staged through the
// host, which allows several ranks on one GPU for testing) and NCCL (device buffers, a dedicated
// stream, non-blocking communicator so a dead peer is detected by a timeout). Without mpirun the
// program runs as world 1 and no collective communicates (except with dist.backend=nccl asked for
// explicitly: a one-rank NCCL communicator, so the NCCL path can be tested on one GPU).
//
// When the host waits. MPI collectives return complete. NCCL device collectives (dist_allreduce,
// dist_broadcast) are only enqueued on the GPU: the host returns at once and later work on the
// compute stream is ordered after them, so a step has no host sync and can be captured in a CUDA
// graph. Their completion is checked by dist_sync, bounded by dist.timeout_s. THE RULE: after
// device collectives, call dist_sync before any ops call that waits for the compute stream
// (to_host, synchronize, release, ops_context_destroy): those wait without a bound, so a dead
// peer would hang them forever, while dist_sync ends the job with EXIT_COLLECTIVE_TIMEOUT.
//
// No rank decides alone. The host's collective decisions (stop on a signal, stop when a
// checkpoint could not be written or read on rank 0, the backend at setup) go through
// dist_agree_any, an all-reduce of a flag over MPI (on either communicator backend). Skipping a non-finite step needs none: the NaN flag travels in the
// gradient all-reduce and every rank's device reaches the same verdict (docs/ARCHITECTURE.md).
//
// Failures. A failed MPI, NCCL or CUDA call ends the process through core's fatal_at (exit code
// EXIT_ERROR, which under mpirun ends the job); dist_abort ends the job on purpose, with a code
// (EXIT_COLLECTIVE_TIMEOUT when a peer died or hangs).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "../../kernels/ops.h"

typedef enum { DIST_BACKEND_MPI = 0, DIST_BACKEND_NCCL = 1 } DistBackend;

typedef struct {
    int rank, world;
    int local_rank, local_world;   // within this node (MPI_Comm_split_type SHARED)
    DistBackend backend;
    double timeout_s;              // collective timeout: a peer silent this long aborts the job
    int64_t current_step;          // for timeout messages ("no answer at step N")
    void *impl;                    // MPI communicators, NCCL communicator and stream
} Dist;

// MPI_Init (thread level FUNNELED) and rank discovery. Call first thing in main.
void dist_init(Dist *d, int *argc, char ***argv);
// After the ops context exists: pick the communicator ("auto": NCCL on CUDA when world > 1 and
// every rank of a node has its own GPU, MPI otherwise; "nccl" requires the CUDA backend and one
// GPU per rank). Collective; the ranks agree on the backend.
void dist_setup_comm(Dist *d, OpsContext *ctx, const char *backend, double timeout_s);
// Start-up, after dist_setup_comm: the largest device buffer dist_allreduce / dist_broadcast will
// be given, so the MPI backend on CUDA sizes its pinned host staging buffer once (it holds 4 Mi
// floats by default; a larger call goes through in pieces). No effect on the other backends.
void dist_reserve(Dist *d, size_t max_floats);
// The inverse of dist_setup_comm (collective): frees the NCCL communicator and the pinned staging
// buffer, which need the CUDA context alive, so call it before ops_context_destroy. Host
// collectives keep working afterwards (MPI). dist_finalize calls it if it was not called.
void dist_teardown_comm(Dist *d);
// Collective: the last call of every rank (MPI_Finalize), so no rank exits before the others
// are done (e.g. rank 0 writing the final checkpoint).
void dist_finalize(Dist *d);
// End every rank of the job now (ncclCommAbort, then MPI_Abort when world > 1); exits with code.
__attribute__((noreturn)) void dist_abort(Dist *d, int code);

// The NCCL version the process runs with (ncclGetVersion, e.g. 21903 for 2.19.3), 0 in a build
// without CUDA. Needs no communicator; for benchmark records.
int dist_nccl_version(void);

// The local GPU of this rank: local_rank mod visible devices.
int dist_local_device(const Dist *d, int device_count);

// In-place sum over ranks of a device buffer (the context's memory). average = 1 divides by world.
// MPI: returns with the result in buf. NCCL: enqueues the all-reduce after the work already on
// the compute stream and returns; later work on the compute stream sees the result, the host
// must dist_sync before reading it (see the rule above). Set d->current_step first: it names the
// step in timeout messages and bounds how far the host runs ahead of the GPU (see dist_sync).
void dist_allreduce(Dist *d, OpsContext *ctx, float *buf, size_t n, int average);
// In-place sum over ranks of a small host buffer of doubles (metrics).
void dist_allreduce_host_f64(Dist *d, double *buf, size_t n);
// 1 if flag is nonzero on any rank (a logical OR all-reduce of host ints, with the timeout);
// every rank gets the same answer. Collective: every rank calls it at the same point.
int dist_agree_any(Dist *d, int flag);
// all[r] = value of rank r, on every rank (all holds world entries).
void dist_allgather_u64(Dist *d, uint64_t value, uint64_t *all);
// Rank 0 receives every rank's bytes of host memory, in rank order: recv (rank 0 only; may be
// send) gets rank 0's send, then rank 1's, ...; rank_bytes[r] is what rank r sends (every rank
// passes the same list). Bounded by dist.timeout_s like the other host collectives.
void dist_gather_host(Dist *d, const void *send, void *recv, const size_t *rank_bytes);
// Broadcast bytes of host memory from root.
void dist_broadcast_host(Dist *d, void *buf, size_t bytes, int root);
// Broadcast a device buffer from root. Completes like dist_allreduce (NCCL: enqueued only).
void dist_broadcast(Dist *d, OpsContext *ctx, float *buf, size_t n, int root);
void dist_barrier(Dist *d);

// Wait until everything enqueued on the compute stream so far is done, device collectives
// included, bounded by dist.timeout_s; on timeout ncclCommAbort and end the job with
// EXIT_COLLECTIVE_TIMEOUT, naming the rank and the step of the collective that did not finish
// (an NCCL error from a peer ends it the same way). Call it at log intervals, before checkpoints,
// evaluation and parameter checks, and before teardown: before any to_host after collectives.
// Never while the compute stream is being captured into a CUDA graph (it says so and exits).
// A no-op on the MPI backend, whose collectives return complete, and without a communicator.
// Not collective: each rank calls it on its own.
// Between dist_syncs dist_allreduce keeps the host at most 2 steps (d->current_step) ahead of
// the GPU's collectives (it waits, bounded, for older ones), so a hang cannot fill the CUDA
// launch queue and block the host in a kernel launch. Replayed CUDA graphs get no such bound (the
// collectives inside are not seen here), so with graphs call dist_sync at least every 100 steps.
void dist_sync(Dist *d, OpsContext *ctx);
// 1 when dist_allreduce / dist_broadcast may be called while the compute stream is captured into
// a CUDA graph: NCCL (device-only, stream-ordered), or no communicator at all (world 1: they do
// nothing). 0 for MPI with several ranks (host-staged: copies to the host, host waits). Valid
// after dist_setup_comm. NCCL treats capturing as collective: every rank captures the same step
// and every rank replays it.
int dist_graph_capturable(const Dist *d);
