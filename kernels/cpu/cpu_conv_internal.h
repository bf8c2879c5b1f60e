// cpu_conv_internal.h: what cpu_conv.c (the driver) and its two engines share.
//
// Every convolution call runs as one OpenMP parallel region of ctx->threads threads over a fixed
// split of the batch into chunks (ConvChunks, a pure function of the shape). Each chunk is worked
// by one thread with single-threaded kernels (OpenBLAS at 1 thread, oneDNN primitives made for 1
// thread), so no result depends on which thread ran it or on how many there are; a chunk's weight
// gradient goes to its own partial buffer, and the partials are summed in chunk order. Results
// are therefore bit-identical for any thread count (and from run to run).
//
// The engines (cpu_conv_im2col.c, cpu_conv_onednn.c) see one chunk at a time; both work in terms
// of the Conv2d C that maps the "image" side to the "grid" side (see cpu_conv_im2col.c):
// Conv2d: image = input, grid = output; ConvTranspose2d: image = output, grid = input, and the
// layer is C's adjoint.
#pragma once
#include <stddef.h>

#include "cpu_internal.h"

typedef struct {
    int chunk;   // images per chunk (the last may have fewer)
    int count;   // chunks
    int last;    // images in the last chunk
} ConvChunks;

ConvChunks cpu_conv_chunks(const ConvShape *s);
static inline int conv_chunk_images(const ConvChunks *ch, int c) { return c == ch->count - 1 ? ch->last : ch->chunk; }

// A dense layer: the kernel covers the whole (unpadded) image, so the grid is 1x1 and the layer is
// a matrix product of the tensors as they are (Conv2d 7x7 -> 1x1 of the small model, and its
// ConvTranspose2d). The driver sends it to the im2col engine's gemms whatever ctx->cpu_conv says:
// oneDNN's direct kernels reach a third of the gemm's speed on it (bench_cpu_conv small).
static inline int conv_is_dense(const ConvShape *s) {
    int ih = s->transposed ? s->out_height : s->in_height, iw = s->transposed ? s->out_width : s->in_width;
    return s->pad == 0 && s->stride == 1 && ih == s->kernel && iw == s->kernel;
}

// What an engine needs of the workspace for one shape, the driver lays it out as
//   [shared | partial x chunks (when chunks > 1) | thread x threads]
typedef struct {
    size_t shared_bytes;    // written once per call before the chunks run (prepared weights), read by all
    size_t partial_floats;  // one chunk's weight gradient in the engine's layout
    size_t thread_bytes;    // one thread's scratch for one chunk
} ConvSpace;

// Aim for at least this many grid pixels per chunk (chunk * grid_hw) and at least
// CONV_CHUNK_MULTIPLE chunks (when the batch allows), so that 1, 2 or 4 threads share the chunks
// evenly. Measured with bench/bench_cpu_conv.c on the CIFAR layers (docs/BENCHMARKS.md).
#ifndef CONV_TARGET_COLUMNS
#define CONV_TARGET_COLUMNS 1024
#endif
#ifndef CONV_CHUNK_MULTIPLE
#define CONV_CHUNK_MULTIPLE 4
#endif

// ---- im2col + OpenBLAS (cpu_conv_im2col.c): no plan, everything follows from the shape ----------
ConvSpace im2col_space(const ConvShape *s, const ConvChunks *ch);
// Before a backward: anything every chunk reads (the flipped weight of ConvPlan), into shared.
void im2col_prepare_backward(const ConvShape *s, const float *weight, void *shared);
// out[nb] = layer(in[nb]) + bias for one chunk of nb images.
void im2col_forward_chunk(const ConvShape *s, int nb, const float *in, const float *weight, const float *bias,
                          float *out, void *scratch);
// One chunk's weight gradient into dweight (overwritten, OIHW/IOHW as the layer's weight) and,
// when din is not NULL, its data gradient.
void im2col_backward_chunk(const ConvShape *s, int nb, const float *in, const float *weight, const void *shared,
                           const float *dout, float *din, float *dweight, void *scratch);

// ---- oneDNN (cpu_conv_onednn.c): a plan per prepared shape, ctx->backend holds them -------------
typedef struct OnednnState OnednnState;
// bf16: the primitives read bf16 copies of their inputs (activations, gradients, weights) and write
// fp32 (train.precision=bf16 on the CPU; needs AVX512-BF16, which onednn_bf16_supported says).
OnednnState *onednn_create(int threads, int bf16);
void onednn_destroy(OnednnState *st);
// Make (or find) the plan of s: its primitives for every chunk size and their memory objects; sets
// s->plan. threads: the contexts's, for the per-thread memory objects.
void onednn_prepare(OnednnState *st, ConvShape *s, const ConvChunks *ch);
ConvSpace onednn_space(const OnednnState *st, const ConvShape *s);
// Stops with a message when s is not a shape prepared on this state.
void onednn_check_plan(const OnednnState *st, const ConvShape *s, const char *op);
// The weight in the layouts the chunks read (forward: 0; backward with a data gradient: 1), into
// shared. One thread.
void onednn_prepare_weights(OnednnState *st, const ConvShape *s, const float *weight, int backward, void *shared);
void onednn_forward_chunk(OnednnState *st, const ConvShape *s, int thread, int nb, const float *in,
                          const float *bias, float *out, void *shared, void *scratch);
// dweight_partial in the plan's own layout; onednn_finish_dweight turns their sum into the layer's.
void onednn_backward_chunk(OnednnState *st, const ConvShape *s, int thread, int nb, const float *in,
                           const float *dout, float *din, float *dweight_partial, void *shared, void *scratch);
// The summed partials (in the plan's layout) -> dweight (the layer's layout). One thread.
void onednn_finish_dweight(OnednnState *st, const ConvShape *s, const float *sum, float *dweight);
// Reorders executed so far on this shape's plan (for bench_cpu_conv), and the bytes they wrote.
void onednn_reorder_counts(const OnednnState *st, const ConvShape *s, long *count, double *bytes);
// "forward jit:avx2 (1 reorders), ...": the implementation oneDNN chose per direction.
void onednn_plan_info(const OnednnState *st, const ConvShape *s, char *out, size_t len);
