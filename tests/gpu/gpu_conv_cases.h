// gpu_conv_cases.h: the convolution shapes the GPU tests compare with the CPU, shared by
// test_gpu_ops.c and test_gpu_conv_precision.c.
#pragma once

typedef struct {
    const char *name;
    int cin, h, w, cout, k, stride, pad, transposed, bias;
} ConvCase;

// Every convolution of the resnet arch at CIFAR size (src/model/vqvae.c: h = 128, residual
// hidden 32, D = 64), as initializer rows.
#define RESNET_CIFAR_CONV_CASES                                            \
    {"enc conv1 3->64 k4s2p1 32x32", 3, 32, 32, 64, 4, 2, 1, 0, 1},        \
    {"enc conv2 64->128 k4s2p1 16x16", 64, 16, 16, 128, 4, 2, 1, 0, 1},    \
    {"enc conv3 128->128 k3p1 8x8", 128, 8, 8, 128, 3, 1, 1, 0, 1},        \
    {"res conv 128->32 k3p1 no bias", 128, 8, 8, 32, 3, 1, 1, 0, 0},       \
    {"res conv 32->128 1x1 no bias", 32, 8, 8, 128, 1, 1, 0, 0, 0},        \
    {"pre-vq conv 128->64 1x1", 128, 8, 8, 64, 1, 1, 0, 0, 1},             \
    {"dec conv1 64->128 k3p1", 64, 8, 8, 128, 3, 1, 1, 0, 1},              \
    {"dec convT1 128->64 k4s2p1 8->16", 128, 8, 8, 64, 4, 2, 1, 1, 1},     \
    {"dec convT2 64->3 k4s2p1 16->32", 64, 16, 16, 3, 4, 2, 1, 1, 1}
