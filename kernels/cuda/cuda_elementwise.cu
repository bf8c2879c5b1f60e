// cuda_elementwise.cu: elementwise ops, layout transposes, the MSE loss and sum of squares.
//
// Each op follows kernels/cpu/cpu_elementwise.c expression for expression (NaN and -0 handling
// included). Where the CPU rounds a*b and then adds, we write __fmul_rn / __fadd_rn, which nvcc
// never contracts into an FMA, so that the two backends agree bit for bit.
//
// Reductions are two-pass and deterministic: a fixed number of blocks (a function of n only)
// each reduce a fixed strided subset into backend->partials, then one block reduces those in a
// fixed tree and writes the device scalar. No atomics, so the bits never depend on timing. As on
// the CPU, the squares are exact in double and summed in double, then rounded to float once, so
// the two backends differ at most in that last rounding.
#include "cuda_common.h"

// ---- kernels ---------------------------------------------------------------------------------

__global__ void relu_forward_kernel(const float *x, float *y, size_t n) {
    GRID_STRIDE_LOOP(i, n) {
        float v = x[i];
        y[i] = v < 0.0f ? 0.0f : v;   // PyTorch's clamp_min: NaN passes, -0 stays -0
    }
}

__global__ void relu_backward_kernel(const float *y, const float *dy, float *dx, size_t n) {
    GRID_STRIDE_LOOP(i, n) { dx[i] = y[i] <= 0.0f ? 0.0f : dy[i]; }   // threshold_backward
}

__global__ void add_kernel(const float *a, const float *b, float *out, size_t n) {
    GRID_STRIDE_LOOP(i, n) { out[i] = a[i] + b[i]; }
}

__global__ void scale_kernel(float *x, float alpha, size_t n) {
    GRID_STRIDE_LOOP(i, n) { x[i] *= alpha; }
}

__global__ void fill_kernel(float *x, float value, size_t n) {
    GRID_STRIDE_LOOP(i, n) { x[i] = value; }
}

// out[b][c][r] = in[b][r][c] for `batch` row-major rows x cols matrices, through a shared tile
// so that both the reads and the writes are coalesced. The +1 column avoids bank conflicts.
// Block 32 x 8; every loop bound depends on blockIdx only, so the barriers are uniform.
enum { TILE = 32, TILE_ROWS = 8 };
__global__ void transpose_kernel(const float *in, float *out, int batch, int rows, int cols) {
    __shared__ float tile[TILE][TILE + 1];
    const size_t matrix = (size_t)rows * (size_t)cols;
    for (int b = blockIdx.z; b < batch; b += gridDim.z) {
        const float *src = in + (size_t)b * matrix;
        float *dst = out + (size_t)b * matrix;
        for (int r0 = blockIdx.y * TILE; r0 < rows; r0 += gridDim.y * TILE) {
            for (int c0 = blockIdx.x * TILE; c0 < cols; c0 += gridDim.x * TILE) {
                for (int j = threadIdx.y; j < TILE; j += TILE_ROWS) {
                    int r = r0 + j, c = c0 + threadIdx.x;
                    if (r < rows && c < cols) tile[j][threadIdx.x] = src[(size_t)r * cols + c];
                }
                __syncthreads();
                for (int j = threadIdx.y; j < TILE; j += TILE_ROWS) {
                    int c = c0 + j, r = r0 + threadIdx.x;
                    if (r < rows && c < cols) dst[(size_t)c * rows + r] = tile[threadIdx.x][j];
                }
                __syncthreads();
            }
        }
    }
}

// partials[block] = sum over this block's elements of (a - b)^2, or a^2 when b is NULL; the
// difference in float (as PyTorch), its square exact in double.
__global__ void squares_partials_kernel(const float *a, const float *b, size_t n, double *partials) {
    double sum = 0.0;
    GRID_STRIDE_LOOP(i, n) {
        double d = (double)(b ? a[i] - b[i] : a[i]);
        sum += d * d;
    }
    sum = block_reduce_sum(sum);
    if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

// *out = (sum of partials[0..count)) / divisor rounded to float, in one block.
__global__ void finish_sum_kernel(const double *partials, int count, double divisor, float *out) {
    double sum = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
    sum = block_reduce_sum(sum);
    if (threadIdx.x == 0) *out = (float)(sum / divisor);
}

// (norm * (pred - target)) * scale, PyTorch's mse_loss_backward order.
__global__ void mse_backward_kernel(const float *pred, const float *target, size_t n, float norm, float scale,
                                    int accumulate, float *dpred) {
    GRID_STRIDE_LOOP(i, n) {
        float g = __fmul_rn(__fmul_rn(norm, pred[i] - target[i]), scale);
        dpred[i] = accumulate ? __fadd_rn(dpred[i], g) : g;
    }
}

// ---- ops -------------------------------------------------------------------------------------

void cuda_relu_forward(OpsContext *ctx, const float *x, float *y, size_t n) {
    if (!n) return;
    relu_forward_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(x, y, n);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_relu_backward(OpsContext *ctx, const float *y, const float *dy, float *dx, size_t n) {
    if (!n) return;
    relu_backward_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(y, dy, dx, n);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_add(OpsContext *ctx, const float *a, const float *b, float *out, size_t n) {
    if (!n) return;
    add_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(a, b, out, n);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_scale(OpsContext *ctx, float *x, float alpha, size_t n) {
    if (!n) return;
    scale_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(x, alpha, n);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_fill(OpsContext *ctx, float *x, float value, size_t n) {
    if (!n) return;
    fill_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(x, value, n);
    CUDA_CHECK(cudaGetLastError());
}

static void transpose(OpsContext *ctx, const float *in, float *out, int batch, int rows, int cols) {
    if (batch <= 0 || rows <= 0 || cols <= 0) return;
    CHECK(in != out, "nchw_to_nhwc / nhwc_to_nchw cannot work in place");
    unsigned gx = (unsigned)((cols + TILE - 1) / TILE), gy = (unsigned)((rows + TILE - 1) / TILE);
    dim3 grid(gx < 1024 ? gx : 1024, gy < 1024 ? gy : 1024, batch < 65535 ? batch : 65535);
    transpose_kernel<<<grid, dim3(TILE, TILE_ROWS), 0, cuda_stream(ctx)>>>(in, out, batch, rows, cols);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_nchw_to_nhwc(OpsContext *ctx, const float *in, float *out, int n, int c, int hw) {
    transpose(ctx, in, out, n, c, hw);   // each image: [c, hw] -> [hw, c]
}

void cuda_nhwc_to_nchw(OpsContext *ctx, const float *in, float *out, int n, int c, int hw) {
    transpose(ctx, in, out, n, hw, c);   // each image: [hw, c] -> [c, hw]
}

// *out = sum((a - b)^2) / divisor (b NULL: sum(a^2) / divisor). The block count depends on n
// only, so the summation order is the same on every run and every GPU.
static void sum_squares_to(OpsContext *ctx, const float *a, const float *b, size_t n, double divisor, float *out) {
    CudaBackend *be = cuda_backend(ctx);
    size_t blocks = (n + CUDA_BLOCK - 1) / CUDA_BLOCK;
    if (blocks > CUDA_REDUCE_BLOCKS) blocks = CUDA_REDUCE_BLOCKS;
    if (blocks == 0) blocks = 1;   // n = 0: one block writes 0 (the mean is then 0/0 = NaN, as PyTorch)
    squares_partials_kernel<<<(unsigned)blocks, CUDA_BLOCK, 0, be->stream>>>(a, b, n, be->partials);
    CUDA_CHECK(cudaGetLastError());
    finish_sum_kernel<<<1, 1024, 0, be->stream>>>(be->partials, (int)blocks, divisor, out);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_mse_forward(OpsContext *ctx, const float *pred, const float *target, size_t n, float *out) {
    sum_squares_to(ctx, pred, target, n, (double)n, out);
}

void cuda_sum_squares(OpsContext *ctx, const float *x, size_t n, float *out) {
    sum_squares_to(ctx, x, NULL, n, 1.0, out);
}

void cuda_mse_backward(OpsContext *ctx, const float *pred, const float *target, size_t n, float scale,
                       int accumulate, float *dpred) {
    if (!n) return;
    const float norm = (float)(2.0 / (double)n);   // rounded to float once, as the CPU backend
    mse_backward_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(pred, target, n, norm, scale,
                                                                                     accumulate, dpred);
    CUDA_CHECK(cudaGetLastError());
}
