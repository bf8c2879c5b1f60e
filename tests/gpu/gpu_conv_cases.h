// gpu_conv_cases.h: the convolution shapes the GPU tests compare with the CPU, shared by
// test_gpu_ops.c and test_gpu_conv_precision.c.
#pragma once

#include "kernels/ops.h"

typedef struct {
    const char *name;
    int cin, h, w, cout, k, stride, pad, transposed, bias, output_padding;
} ConvCase;

// The case's shape at `batch` images, output_padding included.
static inline ConvShape conv_case_shape(int batch, const ConvCase *cc) {
    ConvShape s = conv_shape(batch, cc->cin, cc->h, cc->w, cc->cout, cc->k, cc->stride, cc->pad, cc->transposed,
                             cc->bias);
    if (cc->output_padding) conv_shape_set_output_padding(&s, cc->output_padding);
    return s;
}

// Every convolution of the resnet arch at CIFAR size (src/model/arch_resnet.c: h = 128, residual
// hidden 32, D = 64), as initializer rows.
#define RESNET_CIFAR_CONV_CASES                                                       \
    {"enc conv1 3->64 k4s2p1 32x32", 3, 32, 32, 64, 4, 2, 1, 0, 1, 0},                \
    {"enc conv2 64->128 k4s2p1 16x16", 64, 16, 16, 128, 4, 2, 1, 0, 1, 0},            \
    {"enc conv3 128->128 k3p1 8x8", 128, 8, 8, 128, 3, 1, 1, 0, 1, 0},                \
    {"res conv 128->32 k3p1 no bias", 128, 8, 8, 32, 3, 1, 1, 0, 0, 0},               \
    {"res conv 32->128 1x1 no bias", 32, 8, 8, 128, 1, 1, 0, 0, 0, 0},                \
    {"pre-vq conv 128->64 1x1", 128, 8, 8, 64, 1, 1, 0, 0, 1, 0},                     \
    {"dec conv1 64->128 k3p1", 64, 8, 8, 128, 3, 1, 1, 0, 1, 0},                      \
    {"dec convT1 128->64 k4s2p1 8->16", 128, 8, 8, 64, 4, 2, 1, 1, 1, 0},             \
    {"dec convT2 64->3 k4s2p1 16->32", 64, 16, 16, 3, 4, 2, 1, 1, 1, 0}

// The small MNIST model: 28x28 -> 14 -> 7 -> 1 (k7) and back, the stride-2 transposed layers with
// output_padding 1 (cuDNN: only the output descriptor changes).
#define SMALL_MNIST_CONV_CASES                                                        \
    {"mnist2 conv 1->16 k3s2p1 28x28", 1, 28, 28, 16, 3, 2, 1, 0, 1, 0},              \
    {"mnist2 conv 16->32 k3s2p1 14x14", 16, 14, 14, 32, 3, 2, 1, 0, 1, 0},            \
    {"mnist2 conv 32->64 k7 7->1", 32, 7, 7, 64, 7, 1, 0, 0, 1, 0},                   \
    {"mnist2 convT 64->32 k7 1->7", 64, 1, 1, 32, 7, 1, 0, 1, 1, 0},                  \
    {"mnist2 convT 32->16 k3s2p1op1 7->14", 32, 7, 7, 16, 3, 2, 1, 1, 1, 1},          \
    {"mnist2 convT 16->1 k3s2p1op1 14->28", 16, 14, 14, 1, 3, 2, 1, 1, 1, 1}
