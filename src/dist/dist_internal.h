// dist_internal.h: what dist.c (ranks, MPI collectives) and dist_nccl.c (the NCCL communicator)
// share. Not part of the interface: the rest of the program includes dist.h only.
#pragma once
#include <mpi.h>

#include "dist.h"

typedef struct DistNccl DistNccl;   // dist_nccl.c

// Everything behind Dist.impl.
typedef struct {
    MPI_Comm world;       // duplicate of MPI_COMM_WORLD, errors returned (not fatal) so the check
                          // macro can name the failing call
    MPI_Comm node;        // the ranks that share this node (MPI_Comm_split_type SHARED)
    int staged;           // MPI backend on a CUDA context: device buffers go through `stage`
    float *stage;         // host staging buffer (pinned when the build has CUDA), grown only at start-up
    size_t stage_floats;
    DistNccl *nccl;       // the NCCL communicator when backend == DIST_BACKEND_NCCL, else NULL
} DistImpl;

// "error at file:line: <call> failed: MPI: <MPI_Error_string>" through fatal_at (EXIT_ERROR).
__attribute__((noreturn)) void dist_mpi_fail(const char *call, const char *file, int line, int rc);
#define MPI_CHECK(call)                                                      \
    do {                                                                     \
        int mpi_rc_ = (call);                                                \
        if (mpi_rc_ != MPI_SUCCESS) dist_mpi_fail(#call, __FILE__, __LINE__, mpi_rc_); \
    } while (0)

// Wait for a non-blocking MPI operation, ending the job if it has not completed after
// d->timeout_s (a peer died or hangs). `name` appears in the timeout message.
void dist_mpi_wait(Dist *d, MPI_Request *req, const char *name);
// Print the timeout message for collective `name` (at d->current_step) and end the job with
// EXIT_COLLECTIVE_TIMEOUT.
__attribute__((noreturn)) void dist_timeout_abort(Dist *d, const char *name);
// The same for a collective enqueued at `step`; `note` (or NULL) is appended to the message.
__attribute__((noreturn)) void dist_timeout_abort_at(Dist *d, const char *name, int64_t step, const char *note);
// One pause of a polling loop that has waited `waited_s` so far: spin, then yield, then sleep.
void dist_poll_pause(double waited_s);

// ---- dist_nccl.c (without CUDA in the build: stubs that fail, and malloc for the staging) ----
// Log this rank's GPU (PCI bus id) and return 1 when another rank of this node uses the same GPU
// (NCCL then cannot work: it needs one GPU per rank). Collective over the node.
int dist_gpu_shared_on_node(Dist *d, OpsContext *ctx);
DistNccl *dist_nccl_create(Dist *d, OpsContext *ctx);
void dist_nccl_destroy(Dist *d, DistNccl *s);
void dist_nccl_abort(DistNccl *s);   // ncclCommAbort, once; safe to call again
// Enqueue a collective after the compute stream's work and return (see dist.h).
void dist_nccl_allreduce(Dist *d, DistNccl *s, OpsContext *ctx, float *buf, size_t n, int average);
void dist_nccl_broadcast(Dist *d, DistNccl *s, OpsContext *ctx, float *buf, size_t n, int root);
// dist_sync for NCCL: wait for the compute stream's work, collectives included, with the timeout.
void dist_nccl_sync(Dist *d, DistNccl *s, OpsContext *ctx);
// Page-locked host memory for the staging buffer (fast, truly asynchronous copies).
float *dist_pinned_alloc(size_t floats);
void dist_pinned_free(float *p);
