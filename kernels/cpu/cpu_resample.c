// cpu_resample.c: nearest-neighbour x2 upsampling and zero padding / cropping on the CPU backend,
// plane by plane ([n, c] planes of h x w).
#include <string.h>

#include "../../src/core/common.h"
#include "../op_checks.h"
#include "cpu_internal.h"

void cpu_upsample2x_forward(OpsContext *ctx, const float *x, int n, int c, int h, int w, float *y) {
    check_planes("upsample2x_forward", n, c, h, w);
    const size_t planes = (size_t)n * (size_t)c, wo = 2 * (size_t)w;
    for (size_t p = 0; p < planes; p++) {
        const float *xp = x + p * (size_t)h * w;
        float *yp = y + p * (size_t)h * w * 4;
        for (int i = 0; i < h; i++) {
            float *row = yp + 2 * (size_t)i * wo;
            for (int j = 0; j < w; j++) row[2 * j] = row[2 * j + 1] = xp[(size_t)i * w + j];
            memcpy(row + wo, row, wo * sizeof(float));
        }
    }
}

// dx[i, j] = (((0 + dy[2i, 2j]) + dy[2i, 2j+1]) + dy[2i+1, 2j]) + dy[2i+1, 2j+1]: PyTorch's CPU
// kernel adds the output gradients into each input in output order, starting from +0.
void cpu_upsample2x_backward(OpsContext *ctx, const float *dy, int n, int c, int h, int w, float *dx) {
    check_planes("upsample2x_backward", n, c, h, w);
    const size_t planes = (size_t)n * (size_t)c, wo = 2 * (size_t)w;
    for (size_t p = 0; p < planes; p++) {
        const float *dyp = dy + p * (size_t)h * w * 4;
        float *dxp = dx + p * (size_t)h * w;
        for (int i = 0; i < h; i++) {
            const float *top = dyp + 2 * (size_t)i * wo, *bottom = top + wo;
            for (int j = 0; j < w; j++)
                dxp[(size_t)i * w + j] = (((0.0f + top[2 * j]) + top[2 * j + 1]) + bottom[2 * j]) + bottom[2 * j + 1];
        }
    }
}

void cpu_pad2d_forward(OpsContext *ctx, const float *x, int n, int c, int h, int w, int top, int bottom, int left,
                       int right, float *y) {
    check_pad("pad2d_forward", n, c, h, w, top, bottom, left, right);
    const size_t planes = (size_t)n * (size_t)c, ho = (size_t)h + top + bottom, wo = (size_t)w + left + right;
    for (size_t p = 0; p < planes; p++) {
        const float *xp = x + p * (size_t)h * w;
        float *yp = y + p * ho * wo;
        memset(yp, 0, (size_t)top * wo * sizeof(float));
        for (int i = 0; i < h; i++) {
            float *row = yp + ((size_t)top + i) * wo;
            memset(row, 0, (size_t)left * sizeof(float));
            memcpy(row + left, xp + (size_t)i * w, (size_t)w * sizeof(float));
            memset(row + left + w, 0, (size_t)right * sizeof(float));
        }
        memset(yp + ((size_t)top + h) * wo, 0, (size_t)bottom * wo * sizeof(float));
    }
}

void cpu_pad2d_backward(OpsContext *ctx, const float *dy, int n, int c, int h, int w, int top, int bottom,
                        int left, int right, float *dx) {
    check_pad("pad2d_backward", n, c, h, w, top, bottom, left, right);
    const size_t planes = (size_t)n * (size_t)c, ho = (size_t)h + top + bottom, wo = (size_t)w + left + right;
    for (size_t p = 0; p < planes; p++) {
        const float *dyp = dy + p * ho * wo;
        for (int i = 0; i < h; i++)
            memcpy(dx + (p * h + i) * (size_t)w, dyp + ((size_t)top + i) * wo + left, (size_t)w * sizeof(float));
    }
}
