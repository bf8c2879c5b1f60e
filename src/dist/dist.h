// dist.h: ranks and collectives. One MPI rank per GPU (or per CPU process). Two communicator
// implementations behind one interface: MPI (host buffers; on the CUDA backend staged through the
// host, which allows several ranks on one GPU for testing) and NCCL (device buffers, a dedicated
// stream, non-blocking communicator so a dead peer is detected by a timeout). Without mpirun the
// program runs as world 1 and no collective communicates.
//
// Every collective decision (stop, skip a non-finite step, save) goes through dist_agree_any, an
// all-reduce of a flag, never taken by one rank alone.
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
// End every rank of the job now (MPI_Abort / ncclCommAbort); exits with code.
__attribute__((noreturn)) void dist_abort(Dist *d, int code);

// The local GPU of this rank: local_rank mod visible devices.
int dist_local_device(const Dist *d, int device_count);

// In-place sum over ranks of a device buffer (the context's memory). average = 1 divides by world.
// Returns when the result is in buf (NCCL: the host waits for the collective, bounded by the
// timeout; later work on the compute stream is ordered after it).
void dist_allreduce(Dist *d, OpsContext *ctx, float *buf, size_t n, int average);
// In-place sum over ranks of a small host buffer of doubles (metrics).
void dist_allreduce_host_f64(Dist *d, double *buf, size_t n);
// 1 if flag is nonzero on any rank (a logical OR all-reduce); every rank gets the same answer.
int dist_agree_any(Dist *d, int flag);
// Broadcast bytes of host memory from root.
void dist_broadcast_host(Dist *d, void *buf, size_t bytes, int root);
// Broadcast a device buffer from root.
void dist_broadcast(Dist *d, OpsContext *ctx, float *buf, size_t n, int root);
void dist_barrier(Dist *d);
