// cuda_codebook.cu: dead-code restart on the GPU (ops.h vq_restart_pick / vq_restart_apply), the
// same draws and the same writes as kernels/cpu/cpu_codebook.c. One thread per code.
#include <string.h>

#include "../../src/core/philox.h"
#include "cuda_common.h"

// The draw of rng_below(rng_stream(seed, RNG_PURPOSE_RESTART, step, code), bound) (src/core/rng.c):
// the shared Philox block (src/core/philox.h) on the counter [block, code, step lo, step hi ^
// purpose << 24] with the seed as key, then Lemire's rejection as rng_below.
typedef struct {
    uint32_t counter[4], block[4], key[2];
    int used;
} DeviceRng;

static __device__ uint32_t device_rng_u32(DeviceRng *r) {
    if (r->used == 4) {
        philox4x32_10_block(r->counter, r->key, r->block);
        r->counter[0]++;
        r->used = 0;
    }
    return r->block[r->used++];
}

static __device__ uint32_t restart_draw(uint64_t seed, int32_t step, int code, uint32_t bound) {
    const uint32_t purpose = 5;   // RNG_PURPOSE_RESTART
    DeviceRng r;
    r.key[0] = (uint32_t)seed;
    r.key[1] = (uint32_t)(seed >> 32);
    uint64_t a = (uint64_t)(int64_t)step;
    r.counter[0] = 0;
    r.counter[1] = (uint32_t)code;
    r.counter[2] = (uint32_t)a;
    r.counter[3] = (uint32_t)(a >> 32) ^ (purpose << 24);
    r.used = 4;
    unsigned long long m = (unsigned long long)device_rng_u32(&r) * bound;   // Lemire, as rng_below
    uint32_t low = (uint32_t)m;
    if (low < bound) {
        uint32_t threshold = (uint32_t)(-bound) % bound;
        while (low < threshold) {
            m = (unsigned long long)device_rng_u32(&r) * bound;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

__global__ void restart_pick_kernel(const float *cluster_size, float threshold, const float *z, int m, int k, int d,
                                    int64_t first_latent, int64_t global_m, uint64_t seed, float *out,
                                    const StepState *state) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= k) return;
    float *row = out + (size_t)j * (d + 1);
    for (int i = 0; i <= d; i++) row[i] = 0.0f;
    if (!state->finite || !(cluster_size[j] < threshold)) return;
    int64_t id = (int64_t)restart_draw(seed, state->steps, j, (uint32_t)global_m);
    if (id < first_latent || id >= first_latent + m) return;
    for (int i = 0; i < d; i++) row[i] = z[(size_t)(id - first_latent) * d + i];
    row[d] = 1.0f;
}

// One thread per code writes its rows; the restart count is summed by one block afterwards, so
// no atomics are needed.
__global__ void restart_apply_kernel(float *cluster_size, float *ema_w, float *codebook, const float *picked, int k,
                                     int d, float threshold, const StepState *state) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= k || !state->finite) return;
    const float *v = picked + (size_t)j * (d + 1);
    if (v[d] == 0.0f) return;
    cluster_size[j] = threshold;
    for (int i = 0; i < d; i++) {
        codebook[(size_t)j * d + i] = v[i];
        ema_w[(size_t)j * d + i] = threshold * v[i];
    }
}

__global__ void restart_count_kernel(const float *picked, int k, int d, StepState *state) {
    if (!state->finite) return;
    int count = 0;
    for (int j = threadIdx.x; j < k; j += blockDim.x) count += picked[(size_t)j * (d + 1) + d] != 0.0f;
    count = block_reduce_sum(count);
    if (threadIdx.x == 0) state->restarts += count;
}

void cuda_vq_restart_pick(OpsContext *ctx, const float *cluster_size, float threshold, const float *z, int m, int k,
                          int d, int64_t first_latent, int64_t global_m, uint64_t seed, float *out,
                          const StepState *state) {
    restart_pick_kernel<<<cuda_grid((size_t)k, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(
        cluster_size, threshold, z, m, k, d, first_latent, global_m, seed, out, state);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_vq_restart_apply(OpsContext *ctx, float *cluster_size, float *ema_w, float *codebook, const float *picked,
                           int k, int d, float threshold, StepState *state) {
    restart_apply_kernel<<<cuda_grid((size_t)k, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(
        cluster_size, ema_w, codebook, picked, k, d, threshold, state);
    CUDA_CHECK(cudaGetLastError());
    restart_count_kernel<<<1, CUDA_BLOCK, 0, cuda_stream(ctx)>>>(picked, k, d, state);
    CUDA_CHECK(cudaGetLastError());
}
