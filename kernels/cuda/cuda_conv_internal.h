// cuda_conv_internal.h: what cuda_conv.cu (plans, bf16 staging, the calls) and cuda_conv_algo.cu
// (the choice of cuDNN algorithms) share.
#pragma once
#include "cuda_common.h"

// Room for the reason a bf16 plan could not be made, for the warning.
enum { CONV_WHY_BYTES = 384 };

static inline const char *cuda_conv_kind(const ConvShape *s) { return s->transposed ? "ConvTranspose2d" : "Conv2d"; }

// (Re)describe the plan's tensors for `precision`: fp32 tensors for fp32 and tf32, bf16 tensors
// for bf16; the convolutions always compute in fp32 (cuDNN's PSEUDO_BFLOAT16 configuration for
// bf16). The math type set here is the one the algorithm query honours: FMA only for fp32, tensor
// cores allowed (without down-conversion) otherwise.
void cuda_conv_describe(ConvPlan *p, Precision precision);
// All three directions for the descriptors as they are set now; NULL on success, else the
// direction that failed (why, CONV_WHY_BYTES long, says how). Only bf16 returns failures: fp32
// and tf32 query errors stop the program.
const char *cuda_conv_choose_algorithms(CudaBackend *b, ConvPlan *p, Precision precision, char *why);
// Stop: cuDNN has no acceptable algorithm for this direction of s.
[[noreturn]] void cuda_conv_no_algorithm(const ConvShape *s, Precision precision, const char *direction,
                                         const char *why);
