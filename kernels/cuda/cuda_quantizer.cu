// cuda_quantizer.cu: the vector quantizer on the GPU, always in fp32 (whatever the convolutions
// use): nearest code (cuBLAS GEMM for the dot products, then a warp-per-row argmin), gather,
// per-code statistics, the codebook gradient and the EMA update. z is [m, d] channels-last, the
// codebook [k, d]. Every op follows kernels/cpu/cpu_quantizer.c expression for expression; no
// float atomics anywhere, so every result is run-to-run deterministic.
#include <limits.h>
#include <math.h>

#include "cuda_common.h"

// Rows of z per distance block. Fixed (a function of m only), so the GEMM shapes and hence the
// codes never depend on how large the shared workspace happens to be. 4096 x 512 floats = 8 MiB.
enum { VQ_CHUNK_ROWS = 4096, VQ_ALIGN_FLOATS = 64 };

static int vq_chunk_rows(int m) { return m < VQ_CHUNK_ROWS ? m : VQ_CHUNK_ROWS; }

// |e_j|^2 padded to 256 bytes (keeps the distance block aligned for cuBLAS), then the block.
static size_t vq_norms_floats(int k) { return ((size_t)k + VQ_ALIGN_FLOATS - 1) / VQ_ALIGN_FLOATS * VQ_ALIGN_FLOATS; }

size_t cuda_vq_workspace_bytes(OpsContext *ctx, int m, int k, int d) {
    (void)ctx; (void)d;
    if (m <= 0 || k <= 0) return 0;
    return (vq_norms_floats(k) + (size_t)vq_chunk_rows(m) * (size_t)k) * sizeof(float);
}

// ---- kernels ---------------------------------------------------------------------------------

// sum(x^2) of one d-row by one warp: the squares are exact in double and summed in double, then
// rounded to float once, like the CPU backend (the two agree except in rare last-bit cases).
static __device__ __forceinline__ float warp_row_sq_norm(const float *x, int d, int lane) {
    double s = 0.0;
    for (int t = lane; t < d; t += 32) s += (double)x[t] * (double)x[t];
    return (float)warp_reduce_sum(s);
}

// norms[j] = |e_j|^2, one warp per code.
__global__ void code_norms_kernel(const float *codebook, int k, int d, float *norms) {
    const int j = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32), lane = threadIdx.x % 32;
    if (j >= k) return;   // whole warps leave together
    float s = warp_row_sq_norm(codebook + (size_t)j * d, d, lane);
    if (lane == 0) norms[j] = s;
}

// (v, j) comes before (best_v, best_j) in torch.argmin's order: a NaN first (the lowest index
// among NaNs), then the smaller distance, then the lower index. A total order, so the butterfly
// below ends with the same winner in every lane.
static __device__ __forceinline__ bool argmin_before(float v, int j, float best_v, int best_j) {
    bool v_nan = isnan(v), best_nan = isnan(best_v);
    if (v_nan || best_nan) return v_nan && (!best_nan || j < best_j);
    return v < best_v || (v == best_v && j < best_j);
}

// codes[i] = argmin_j (|z_i|^2 + |e_j|^2) + dist[i, j], where dist = -2 z e^T (the scaling by -2 is
// exact, so this is the notebook's (|z|^2 + |e|^2) - 2 z.e). One warp per row: each lane scans
// the codes j = lane (mod 32) in increasing order, then the lanes compare by butterfly.
__global__ void argmin_kernel(const float *z, const float *norms, const float *dist, int rows, int k, int d,
                              int32_t *codes) {
    const int i = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32), lane = threadIdx.x % 32;
    if (i >= rows) return;   // whole warps leave together
    const float z_norm = warp_row_sq_norm(z + (size_t)i * d, d, lane);
    const float *row = dist + (size_t)i * k;
    float best_v = INFINITY;
    int best_j = INT_MAX;   // loses to any real entry; lane 0 always holds j = 0, so the winner is valid
    for (int j = lane; j < k; j += 32) {
        float v = (z_norm + norms[j]) + row[j];
        if (argmin_before(v, j, best_v, best_j)) best_v = v, best_j = j;
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
        float other_v = __shfl_xor_sync(0xffffffffu, best_v, offset);
        int other_j = __shfl_xor_sync(0xffffffffu, best_j, offset);
        if (argmin_before(other_v, other_j, best_v, best_j)) best_v = other_v, best_j = other_j;
    }
    if (lane == 0) codes[i] = best_j;
}

// out[i] = codebook[codes[i]]. A negative code (corrupt input: the CPU backend stops on it) gives a
// NaN row instead, which the trainer's finiteness check catches; k is not known here.
__global__ void gather_kernel(const float *codebook, const int32_t *codes, size_t total, int d, float *out) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        size_t i = e / (size_t)d, t = e % (size_t)d;
        int32_t c = codes[i];
        out[e] = c < 0 ? NAN : codebook[(size_t)c * d + t];
    }
}

// counts[j] and sums[j] for one code j per block. The block walks all m codes in chunks of
// blockDim; the rows of each chunk that chose j are compacted in row order (ballot + prefix over
// the warps), then thread t adds z[row, t] of those rows to sums[j, t] in that order. So every
// sum is taken in increasing row order from 0.0f: exactly the CPU backend's order, bit for bit,
// and without atomics. Cost: every block reads all m codes (m k int loads, from L2); fine for
// VQ-VAE sizes (m ~ 16k, k ~ 512). For much larger m, a stable radix sort of (code, row) pairs
// followed by per-segment ordered sums would do the same in O(m d).
__global__ void code_stats_kernel(const float *z, const int32_t *codes, int m, int d, float *counts, float *sums) {
    __shared__ int rows[CUDA_BLOCK];   // launched with CUDA_BLOCK threads
    __shared__ int warp_counts[32];
    const int j = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    float *s = sums ? sums + (size_t)j * d : NULL;
    // Thread t owns the dims t (mod blockDim) of sums[j] for the whole kernel: no races.
    if (s)
        for (int t = threadIdx.x; t < d; t += blockDim.x) s[t] = 0.0f;
    int count = 0;   // the same in every thread
    for (int base = 0; base < m; base += blockDim.x) {
        const int i = base + threadIdx.x;
        const bool match = i < m && codes[i] == j;
        const unsigned ballot = __ballot_sync(0xffffffffu, match);
        if (lane == 0) warp_counts[warp] = __popc(ballot);
        __syncthreads();
        int offset = 0, total = 0;
        for (int w = 0; w < warps; w++) {
            if (w < warp) offset += warp_counts[w];
            total += warp_counts[w];
        }
        if (match) rows[offset + __popc(ballot & ((1u << lane) - 1u))] = i;
        __syncthreads();
        if (s && total > 0) {
            for (int t = threadIdx.x; t < d; t += blockDim.x) {
                float acc = s[t];
                for (int q = 0; q < total; q++) acc += z[(size_t)rows[q] * d + t];
                s[t] = acc;
            }
        }
        count += total;
        __syncthreads();   // rows and warp_counts are rewritten by the next chunk
    }
    if (threadIdx.x == 0) counts[j] = (float)count;   // exact: m <= 2^24 is checked
}

// dcodebook[j, t] = scale * (counts[j] e[j, t] - sums[j, t]), rounded step by step as the CPU.
__global__ void codebook_grad_kernel(const float *codebook, const float *counts, const float *sums, size_t total,
                                     int d, float scale, float *dcodebook) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        float cnt = counts[e / (size_t)d];
        dcodebook[e] = __fmul_rn(scale, __fsub_rn(__fmul_rn(cnt, codebook[e]), sums[e]));
    }
}

// EMA cluster sizes, in one block (k is small): N = N keep + take counts; n = sum N (in double, a
// fixed tree); N = (N + eps) / (n + k eps) * n.
// `state` (may be NULL): the step's verdict; a skipped step leaves the buffers as they are.
__global__ void ema_cluster_size_kernel(float *cluster_size, const float *counts, int k, float keep, float take,
                                        float epsilon, float k_epsilon, const StepState *state) {
    if (state && !state->finite) return;
    double local = 0.0;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        float size = __fadd_rn(__fmul_rn(cluster_size[j], keep), __fmul_rn(take, counts[j]));
        cluster_size[j] = size;
        local += (double)size;
    }
    const float n = (float)block_reduce_sum(local);
    const float denom = n + k_epsilon;
    for (int j = threadIdx.x; j < k; j += blockDim.x)   // each thread rereads only what it wrote
        cluster_size[j] = __fmul_rn(__fdiv_rn(__fadd_rn(cluster_size[j], epsilon), denom), n);
}

// m = m keep + take sums; e = m / N (N the smoothed cluster sizes).
__global__ void ema_codebook_kernel(float *ema_w, float *codebook, const float *cluster_size, const float *sums,
                                    size_t total, int d, float keep, float take, const StepState *state) {
    if (state && !state->finite) return;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        float w = __fadd_rn(__fmul_rn(ema_w[e], keep), __fmul_rn(take, sums[e]));
        ema_w[e] = w;
        codebook[e] = __fdiv_rn(w, cluster_size[e / (size_t)d]);
    }
}

// ---- ops -------------------------------------------------------------------------------------

void cuda_vq_nearest(OpsContext *ctx, const float *z, const float *codebook, int m, int k, int d, int32_t *codes) {
    CudaBackend *b = cuda_backend(ctx);
    CHECK(m >= 0 && k > 0 && d > 0, "vq_nearest needs m >= 0, k > 0, d > 0; got m=%d k=%d d=%d", m, k, d);
    if (m == 0) return;
    size_t need = cuda_vq_workspace_bytes(ctx, m, k, d);
    CHECK(ctx->workspace && ctx->workspace_bytes >= need,
          "vq_nearest(m=%d, k=%d, d=%d) needs %zu bytes of workspace but the context has %zu; "
          "reserve ops->vq_workspace_bytes() for the largest m at start-up", m, k, d, need, ctx->workspace_bytes);
    float *norms = (float *)ctx->workspace;
    float *dist = norms + vq_norms_floats(k);
    const int warps_per_block = CUDA_BLOCK / 32;

    code_norms_kernel<<<(k + warps_per_block - 1) / warps_per_block, CUDA_BLOCK, 0, b->stream>>>(codebook, k, d,
                                                                                                norms);
    CUDA_CHECK(cudaGetLastError());

    const float alpha = -2.0f, beta = 0.0f;
    const int chunk = vq_chunk_rows(m);
    for (int r0 = 0; r0 < m; r0 += chunk) {
        const int rows = m - r0 < chunk ? m - r0 : chunk;
        const float *zc = z + (size_t)r0 * d;
        // Row-major dist[rows, k] = -2 zc e^T is column-major dist^T[k, rows] = -2 e zc^T; in column-major
        // terms the codebook buffer is e^T [d, k] (so op T) and zc is zc^T [d, rows] (so op N).
        // COMPUTE_32F_PEDANTIC: plain fp32 whatever the handle's math mode (TF32 would move codes).
        CUBLAS_CHECK(cublasGemmEx(b->cublas, CUBLAS_OP_T, CUBLAS_OP_N, k, rows, d, &alpha, codebook, CUDA_R_32F, d, zc,
                                  CUDA_R_32F, d, &beta, dist, CUDA_R_32F, k, CUBLAS_COMPUTE_32F_PEDANTIC,
                                  CUBLAS_GEMM_DEFAULT));
        argmin_kernel<<<(rows + warps_per_block - 1) / warps_per_block, CUDA_BLOCK, 0, b->stream>>>(
            zc, norms, dist, rows, k, d, codes + r0);
        CUDA_CHECK(cudaGetLastError());
    }
}

void cuda_vq_gather(OpsContext *ctx, const float *codebook, const int32_t *codes, int m, int d, float *out) {
    size_t total = (size_t)(m > 0 ? m : 0) * (size_t)(d > 0 ? d : 0);
    if (!total) return;
    gather_kernel<<<cuda_grid(total, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(codebook, codes, total, d, out);
    CUDA_CHECK(cudaGetLastError());
}

// Codes outside [0, k) (the CPU backend stops on them) are not counted anywhere here.
void cuda_vq_code_stats(OpsContext *ctx, const float *z, const int32_t *codes, int m, int k, int d, float *counts,
                        float *sums) {
    CHECK(m >= 0 && m <= (1 << 24), "vq_code_stats: m=%d rows; float counts are exact only up to 2^24", m);
    CHECK(k > 0 && d > 0, "vq_code_stats needs k > 0 and d > 0; got k=%d d=%d", k, d);
    code_stats_kernel<<<k, CUDA_BLOCK, 0, cuda_stream(ctx)>>>(z, codes, m, d, counts, sums);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_vq_codebook_grad(OpsContext *ctx, const float *codebook, const float *counts, const float *sums, int k,
                           int d, float scale, float *dcodebook) {
    size_t total = (size_t)(k > 0 ? k : 0) * (size_t)(d > 0 ? d : 0);
    if (!total) return;
    codebook_grad_kernel<<<cuda_grid(total, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(codebook, counts, sums,
                                                                                          total, d, scale, dcodebook);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_ema_update(OpsContext *ctx, float *cluster_size, float *ema_w, float *codebook, const float *counts,
                     const float *sums, int k, int d, float decay, float epsilon, const StepState *state) {
    CHECK(k > 0 && d > 0, "ema_update needs k > 0 and d > 0; got k=%d d=%d", k, d);
    cudaStream_t stream = cuda_stream(ctx);
    // The scalars as the CPU backend forms them: in double, rounded to float once.
    const float keep = decay;
    const float take = (float)(1.0 - (double)decay);
    const float k_epsilon = (float)((double)k * (double)epsilon);
    ema_cluster_size_kernel<<<1, 1024, 0, stream>>>(cluster_size, counts, k, keep, take, epsilon, k_epsilon,
                                                                   state);
    CUDA_CHECK(cudaGetLastError());
    size_t total = (size_t)k * (size_t)d;
    ema_codebook_kernel<<<cuda_grid(total, CUDA_BLOCK), CUDA_BLOCK, 0, stream>>>(ema_w, codebook, cluster_size, sums,
                                                                               total, d, keep, take, state);
    CUDA_CHECK(cudaGetLastError());
}
