// cuda_data.cu: batches from the dataset resident on the GPU as uint8 (ops.h gather_images).
#include "cuda_common.h"

// One thread per output value; the byte -> float map is the CPU's, op for op (round to nearest,
// no contraction): x = v / 255, then x - 0.5, x, or (x - 0.5) / 0.5.
__global__ void gather_images_kernel(const uint8_t *pixels, const int32_t *perm, int64_t offset, size_t total,
                                     size_t image_elems, PixelRange range, float *out) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        size_t image = e / image_elems, j = e - image * image_elems;
        uint8_t v = pixels[(size_t)perm[offset + (int64_t)image] * image_elems + j];
        float x = __fdiv_rn((float)v, 255.0f);
        out[e] = range == PIXELS_UNIT ? x : range == PIXELS_SYMMETRIC ? __fdiv_rn(__fsub_rn(x, 0.5f), 0.5f)
                                                                       : __fsub_rn(x, 0.5f);
    }
}

void cuda_gather_images(OpsContext *ctx, const uint8_t *pixels, const int32_t *perm, int64_t offset, int n,
                        size_t image_elems, PixelRange range, float *out) {
    size_t total = (size_t)(n > 0 ? n : 0) * image_elems;
    if (!total) return;
    gather_images_kernel<<<cuda_grid(total, CUDA_BLOCK), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(pixels, perm, offset,
                                                                                          total, image_elems, range, out);
    CUDA_CHECK(cudaGetLastError());
}
