// cpu_conv.c: the CPU convolutions (ops.h conv_prepare / conv_forward / conv_backward): the
// checks, the split of the batch into chunks, the threads, and the weight and bias gradients'
// reductions, around one of two engines (ctx->cpu_conv): oneDNN primitives (cpu_conv_onednn.c)
// or im2col + OpenBLAS sgemm (cpu_conv_im2col.c, the reference). See cpu_conv_internal.h for why
// the results do not depend on the thread count.
#include <omp.h>
#include <string.h>

#include "../../src/core/common.h"
#include "cpu_conv_internal.h"

// Upper bound on one chunk's im2col matrix (the largest per-thread scratch): the chunk shrinks
// until it fits.
#ifndef CONV_CHUNK_BUDGET
#define CONV_CHUNK_BUDGET ((size_t)32 << 20)
#endif

static void check_shape(const ConvShape *s) {
    CHECK(s->batch > 0 && s->in_channels > 0 && s->out_channels > 0 && s->kernel > 0 && s->stride > 0 && s->pad >= 0,
          "bad convolution shape (batch %d, channels %d->%d, kernel %d, stride %d, pad %d); build it with conv_shape()",
          s->batch, s->in_channels, s->out_channels, s->kernel, s->stride, s->pad);
    CHECK(!s->output_padding || s->transposed, "output_padding on a Conv2d; set it with conv_shape_set_output_padding");
    // The grid side must be exactly what a Conv2d over the image side produces, and a transposed
    // layer's output exactly its formula (conv_shape() and conv_shape_set_output_padding() do both).
    int ih = s->transposed ? s->out_height : s->in_height, iw = s->transposed ? s->out_width : s->in_width;
    int gh = s->transposed ? s->in_height : s->out_height, gw = s->transposed ? s->in_width : s->out_width;
    int span = s->kernel - 2 * s->pad + s->output_padding;
    CHECK(gh == (ih + 2 * s->pad - s->kernel) / s->stride + 1 && gw == (iw + 2 * s->pad - s->kernel) / s->stride + 1 &&
              (!s->transposed || (ih == (gh - 1) * s->stride + span && iw == (gw - 1) * s->stride + span)),
          "inconsistent convolution shape %dx%d -> %dx%d (kernel %d, stride %d, pad %d, output_padding %d, "
          "transposed %d); build it with conv_shape()", s->in_height, s->in_width, s->out_height, s->out_width,
          s->kernel, s->stride, s->pad, s->output_padding, s->transposed);
}

static int grid_pixels(const ConvShape *s) {
    return s->transposed ? s->in_height * s->in_width : s->out_height * s->out_width;
}

// Largest im2col matrix of a chunk of n images: (image_c k k) x (n grid pixels), either direction.
static size_t chunk_col_bytes(const ConvShape *s, int n) {
    int rows = (s->transposed ? s->in_channels : s->out_channels) * s->kernel * s->kernel;
    int rows_t = (s->transposed ? s->out_channels : s->in_channels) * s->kernel * s->kernel;
    return (size_t)(rows > rows_t ? rows : rows_t) * (size_t)n * (size_t)grid_pixels(s) * sizeof(float);
}

ConvChunks cpu_conv_chunks(const ConvShape *s) {
    int batch = s->batch, hw = grid_pixels(s);
    int chunk = (CONV_TARGET_COLUMNS + hw - 1) / hw;
    if (chunk > batch) chunk = batch;
    int count = (batch + chunk - 1) / chunk;
    if (count % CONV_CHUNK_MULTIPLE) count += CONV_CHUNK_MULTIPLE - count % CONV_CHUNK_MULTIPLE;
    if (count > batch) count = batch;
    chunk = (batch + count - 1) / count;
    while (chunk > 1 && chunk_col_bytes(s, chunk) > CONV_CHUNK_BUDGET) chunk--;
    // Even out the chunks (32 images at 12 per chunk would be 12 12 8; make it 11 11 10).
    count = (batch + chunk - 1) / chunk;
    chunk = (batch + count - 1) / count;
    ConvChunks ch = {chunk, (batch + chunk - 1) / chunk, 0};
    ch.last = batch - (ch.count - 1) * ch.chunk;
    return ch;
}

static int uses_onednn(const OpsContext *ctx, const ConvShape *s) {
    return ctx->cpu_conv == CPU_CONV_ONEDNN && !conv_is_dense(s);
}

static OnednnState *onednn_state(OpsContext *ctx) {
    CpuBackend *b = (CpuBackend *)ctx->backend;
    if (!b->onednn) b->onednn = onednn_create(ctx->threads, ctx->precision == PRECISION_BF16);
    return b->onednn;
}

static ConvSpace conv_space(OpsContext *ctx, const ConvShape *s, const ConvChunks *ch) {
    return uses_onednn(ctx, s) ? onednn_space(onednn_state(ctx), s) : im2col_space(s, ch);
}

// The workspace carved up (see ConvSpace). im2col with one chunk writes the weight gradient
// straight into dweight (its layout is the layer's); otherwise every chunk has a partial.
typedef struct {
    char *shared;
    float *partials;   // [count][partial_floats], or NULL
    char *threads;     // [threads][thread_bytes]
    ConvSpace space;
} ConvWorkspace;

static int needs_partials(const OpsContext *ctx, const ConvShape *s, const ConvChunks *ch) {
    return uses_onednn(ctx, s) || ch->count > 1;
}

static size_t workspace_bytes(const OpsContext *ctx, const ConvShape *s, const ConvChunks *ch, const ConvSpace *sp) {
    size_t partials = needs_partials(ctx, s, ch) ? (size_t)ch->count * sp->partial_floats * sizeof(float) : 0;
    return sp->shared_bytes + partials + (size_t)ctx->threads * sp->thread_bytes;
}

static ConvWorkspace conv_workspace(OpsContext *ctx, const ConvShape *s, const ConvChunks *ch, const char *op) {
    ConvWorkspace w;
    w.space = conv_space(ctx, s, ch);
    size_t need = workspace_bytes(ctx, s, ch, &w.space);
    CHECK(ctx->workspace_bytes >= need && (need == 0 || ctx->workspace),
          "%s: convolution workspace too small: this layer needs %zu bytes, the context has %zu; reserve the "
          "maximum of conv_prepare() over all layers with reserve_workspace() at start-up", op, need,
          ctx->workspace_bytes);
    w.shared = (char *)ctx->workspace;
    w.partials = needs_partials(ctx, s, ch) ? (float *)(w.shared + w.space.shared_bytes) : NULL;
    w.threads = w.shared + w.space.shared_bytes +
                (w.partials ? (size_t)ch->count * w.space.partial_floats * sizeof(float) : 0);
    return w;
}

size_t cpu_conv_prepare(OpsContext *ctx, ConvShape *s) {
    check_shape(s);
    ConvChunks ch = cpu_conv_chunks(s);
    s->plan = -1;
    if (uses_onednn(ctx, s)) onednn_prepare(onednn_state(ctx), s, &ch);
    ConvSpace sp = conv_space(ctx, s, &ch);
    return workspace_bytes(ctx, s, &ch, &sp);
}

static void check_call(OpsContext *ctx, const ConvShape *s, const char *op) {
    check_shape(s);
    if (uses_onednn(ctx, s)) onednn_check_plan(onednn_state(ctx), s, op);
}

// Inside our parallel region every oneDNN call must run single-threaded, as its primitives were
// made for (cpu_conv_onednn.c). oneDNN asks OpenMP how many threads it may use, and a team of one
// thread does not count as "in parallel", so the answer is set to 1 for this thread's nested work.
static void single_threaded_below(void) { omp_set_num_threads(1); }

static size_t in_image(const ConvShape *s) { return (size_t)s->in_channels * s->in_height * s->in_width; }
static size_t out_image(const ConvShape *s) { return (size_t)s->out_channels * s->out_height * s->out_width; }

void cpu_conv_forward(OpsContext *ctx, const ConvShape *s, const float *in, const float *weight, const float *bias,
                      float *out) {
    check_call(ctx, s, "conv_forward");
    CHECK(!s->has_bias || bias, "convolution has a bias but none was passed");
    if (!s->has_bias) bias = NULL;
    ConvChunks ch = cpu_conv_chunks(s);
    ConvWorkspace w = conv_workspace(ctx, s, &ch, "conv_forward");
    OnednnState *dnnl = uses_onednn(ctx, s) ? onednn_state(ctx) : NULL;
#pragma omp parallel num_threads(ctx->threads)
    {
        int tid = omp_get_thread_num();
        void *scratch = w.threads + (size_t)tid * w.space.thread_bytes;
        single_threaded_below();
        if (dnnl) {
#pragma omp single
            onednn_prepare_weights(dnnl, s, weight, 0, w.shared);
        }
#pragma omp for schedule(static)
        for (int c = 0; c < ch.count; c++) {
            int nb = conv_chunk_images(&ch, c);
            const float *x = in + (size_t)c * ch.chunk * in_image(s);
            float *y = out + (size_t)c * ch.chunk * out_image(s);
            if (dnnl) onednn_forward_chunk(dnnl, s, tid, nb, x, bias, y, w.shared, scratch);
            else im2col_forward_chunk(s, nb, x, weight, bias, y, scratch);
        }
    }
}

// dbias[c] = sum of dout over batch and pixels: per image a float sum over its plane in
// DBIAS_LANES independent lanes (one AVX2 register; short sums, so float is exact enough) and a
// tail, each then added into its double accumulator, the accumulators summed at the end: a
// fixed order (bit-reproducible). DBIAS_GROUP channels at a time, image by image, so that memory is
// read in runs of DBIAS_GROUP planes (one plane per image is too short for the prefetcher); the
// threads split the groups, so no sum depends on how many there are.
enum { DBIAS_LANES = 8, DBIAS_GROUP = 16 };

static void bias_grad_group(const ConvShape *s, const float *dout, int c0, float *dbias) {
    size_t hw = (size_t)s->out_height * (size_t)s->out_width;
    int n = s->out_channels - c0 < DBIAS_GROUP ? s->out_channels - c0 : DBIAS_GROUP;
    double acc[DBIAS_GROUP][DBIAS_LANES + 1] = {{0}};   // the lanes and the planes' tails
    for (int b = 0; b < s->batch; b++) {
        for (int j = 0; j < n; j++) {
            const float *p = dout + ((size_t)b * (size_t)s->out_channels + (size_t)(c0 + j)) * hw;
            float lanes[DBIAS_LANES] = {0}, tail = 0.0f;
            size_t i = 0;
            for (; i + DBIAS_LANES <= hw; i += DBIAS_LANES)
                for (int l = 0; l < DBIAS_LANES; l++) lanes[l] += p[i + l];
            for (; i < hw; i++) tail += p[i];
            for (int l = 0; l < DBIAS_LANES; l++) acc[j][l] += lanes[l];   // lane-wise: no dependency chain
            acc[j][DBIAS_LANES] += tail;
        }
    }
    for (int j = 0; j < n; j++) {
        double sum = 0.0;
        for (int l = 0; l <= DBIAS_LANES; l++) sum += acc[j][l];
        dbias[c0 + j] = (float)sum;
    }
}

// Elements per iteration of the partials' sum: the threads split the blocks, every element is
// summed over the chunks in chunk order.
enum { PARTIAL_BLOCK = 4096 };

// into[i] = sum over chunks c (in order) of partials[c][i], i < n. Runs inside the parallel region.
// The chunk loop is outside the element loop, so the element loop is a vectorized stream (into may
// be partials itself: chunk 0's partial).
static void sum_partials(const float *partials, size_t stride, int count, size_t n, float *into) {
    size_t blocks = (n + PARTIAL_BLOCK - 1) / PARTIAL_BLOCK;
#pragma omp for schedule(static)
    for (size_t blk = 0; blk < blocks; blk++) {
        size_t i0 = blk * PARTIAL_BLOCK, i1 = i0 + PARTIAL_BLOCK < n ? i0 + PARTIAL_BLOCK : n;
        if (into != partials) memcpy(into + i0, partials + i0, (i1 - i0) * sizeof(float));
        for (int c = 1; c < count; c++) {
            const float *p = partials + (size_t)c * stride;
            for (size_t i = i0; i < i1; i++) into[i] += p[i];
        }
    }
}

// Per chunk: the weight gradient into its partial (or straight into dweight), the data gradient;
// then the partials summed in chunk order and the bias gradient, all in one parallel region.
void cpu_conv_backward(OpsContext *ctx, const ConvShape *s, const float *in, const float *weight, const float *dout,
                       float *din, float *dweight, float *dbias) {
    check_call(ctx, s, "conv_backward");
    CHECK(!s->has_bias || dbias, "convolution has a bias but no dbias was passed");
    ConvChunks ch = cpu_conv_chunks(s);
    ConvWorkspace w = conv_workspace(ctx, s, &ch, "conv_backward");
    OnednnState *dnnl = uses_onednn(ctx, s) ? onednn_state(ctx) : NULL;
    size_t stride = w.space.partial_floats;
#pragma omp parallel num_threads(ctx->threads)
    {
        int tid = omp_get_thread_num();
        void *scratch = w.threads + (size_t)tid * w.space.thread_bytes;
        single_threaded_below();
#pragma omp single
        {
            if (dnnl && din) onednn_prepare_weights(dnnl, s, weight, 1, w.shared);
            else if (din) im2col_prepare_backward(s, weight, w.shared);
        }
#pragma omp for schedule(static)
        for (int c = 0; c < ch.count; c++) {
            int nb = conv_chunk_images(&ch, c);
            size_t off_in = (size_t)c * ch.chunk * in_image(s), off_out = (size_t)c * ch.chunk * out_image(s);
            float *dx = din ? din + off_in : NULL;
            float *dw = w.partials ? w.partials + (size_t)c * stride : dweight;
            if (dnnl) onednn_backward_chunk(dnnl, s, tid, nb, in + off_in, dout + off_out, dx, dw, w.shared, scratch);
            else im2col_backward_chunk(s, nb, in + off_in, weight, w.shared, dout + off_out, dx, dw, scratch);
        }
        // oneDNN's partials are in its own layout: sum them in place, then one reorder to dweight.
        if (w.partials && ch.count > 1) {
            size_t n = dnnl ? stride : conv_weight_count(s);
            sum_partials(w.partials, stride, ch.count, n, dnnl ? w.partials : dweight);
        }
        if (dnnl) {
#pragma omp single
            onednn_finish_dweight(dnnl, s, w.partials, dweight);
        }
        if (s->has_bias) {
            int groups = (s->out_channels + DBIAS_GROUP - 1) / DBIAS_GROUP;
#pragma omp for schedule(static)
            for (int g = 0; g < groups; g++) bias_grad_group(s, dout, g * DBIAS_GROUP, dbias);
        }
    }
}
