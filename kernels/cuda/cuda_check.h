// cuda_check.h: the check macros of the CUDA libraries' calls, defined once for the backend's C++
// (kernels/cuda/*.cu) and for C (src/dist/dist_nccl.c). Each names the call, the file and line,
// and the library's own words, then ends the process through core's fatal_at (exit code
// EXIT_ERROR; under mpirun that ends the job). Include the header of the library you check
// (cuda_runtime.h comes with this one); the macros need its symbols only where they are used.
#pragma once
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "../../src/core/common.h"
#ifdef __cplusplus
}
#endif

#define CUDA_CHECK(call)                                                                          \
    do {                                                                                          \
        cudaError_t cuda_err_ = (call);                                                           \
        if (cuda_err_ != cudaSuccess)                                                             \
            fatal_at(__FILE__, __LINE__, "%s failed: %s: %s", #call, cudaGetErrorName(cuda_err_),  \
                     cudaGetErrorString(cuda_err_));                                              \
    } while (0)

// cublas_v2.h
#define CUBLAS_CHECK(call)                                                                        \
    do {                                                                                          \
        cublasStatus_t cublas_status_ = (call);                                                   \
        if (cublas_status_ != CUBLAS_STATUS_SUCCESS)                                              \
            fatal_at(__FILE__, __LINE__, "%s failed: %s: %s", #call,                              \
                     cublasGetStatusName(cublas_status_), cublasGetStatusString(cublas_status_)); \
    } while (0)

// cudnn.h (cuDNN 9: cudnnGetLastErrorString says which parameter was wrong; worth the extra line)
#define CUDNN_CHECK(call)                                                                         \
    do {                                                                                          \
        cudnnStatus_t cudnn_status_ = (call);                                                     \
        if (cudnn_status_ != CUDNN_STATUS_SUCCESS) {                                              \
            char cudnn_detail_[512];                                                              \
            cudnnGetLastErrorString(cudnn_detail_, sizeof cudnn_detail_);                         \
            fatal_at(__FILE__, __LINE__, "%s failed: %s (%s)", #call,                             \
                     cudnnGetErrorString(cudnn_status_), cudnn_detail_);                          \
        }                                                                                         \
    } while (0)

// nccl.h. ncclInProgress is not an error on a non-blocking communicator: the call goes on in the
// background (src/dist/dist_nccl.c waits for it, bounded by dist.timeout_s).
#define NCCL_CHECK(call)                                                                          \
    do {                                                                                          \
        ncclResult_t nccl_rc_ = (call);                                                           \
        if (nccl_rc_ != ncclSuccess && nccl_rc_ != ncclInProgress)                                \
            fatal_at(__FILE__, __LINE__, "%s failed: NCCL: %s", #call, ncclGetErrorString(nccl_rc_)); \
    } while (0)
