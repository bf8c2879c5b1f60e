// gpu_test.h: how every tests/gpu test starts. Without a CUDA backend in the build or a visible
// GPU it prints why and the test returns TEST_SKIP_CODE (77: ctest shows SKIP, never a pass):
//   if (gpu_test_unavailable()) return TEST_SKIP_CODE;
#pragma once
#include <stdio.h>

#include "kernels/ops.h"

static inline int gpu_test_unavailable(void) {
    if (cuda_backend_compiled() && cuda_device_count() > 0) return 0;
    printf("SKIP: no GPU (CUDA backend %s, %d GPU(s) visible)\n", cuda_backend_compiled() ? "compiled" : "not compiled",
           cuda_device_count());
    return 1;
}
