// cuda_api.h: what the CUDA backend offers beyond ops.h, callable from C (src/dist's NCCL code)
// and from the backend's own .cu files. Only meaningful in builds with VQ_HAVE_CUDA.
#pragma once
#include "../ops.h"

#ifdef __cplusplus
extern "C" {
#endif

// The context's cudaStream_t, as void * so that C callers need no CUDA headers. Every op of a
// CUDA context runs on this one stream; NCCL collectives on it are ordered with the ops.
// Fatal when ctx is not a CUDA context.
void *cuda_context_stream(OpsContext *ctx);

#ifdef __cplusplus
}
#endif
