// cpu_conv_im2col.c: the reference CPU convolution engine: Conv2d and ConvTranspose2d as
// im2col / col2im + OpenBLAS sgemm, one chunk of images at a time (cpu_conv.c runs the chunks on
// the threads; OpenBLAS runs single-threaded inside each).
//
// Both kinds are one linear map seen from its two sides. The "grid" side is the tensor whose
// pixels index the columns of the im2col matrix (Conv2d: the output; ConvTranspose2d: the input),
// the "image" side is the other one (Conv2d: the input; ConvTranspose2d: the output, with its
// output_padding rows, which no tap reaches). With
//   col = im2col(image)   [image_c * k * k, grid_hw]
//   W   = the weight      [grid_c, image_c * k * k]   (Conv2d OIHW and ConvTranspose2d IOHW are
//                                                      both exactly this row-major matrix)
// every product the two kinds need is one of three gemms:
//   gather:   grid  = W col                 Conv2d forward,  ConvTranspose2d backward-data
//   scatter:  image = col2im(W^T grid)      Conv2d backward-data,  ConvTranspose2d forward
//   dweight:  dW    = grid col^T            both (with dout in place of the output side)
// (Conv2d's backward-data at stride 1 may instead be a gather with the flipped kernel: ConvPlan.)
// A dense layer (conv_is_dense: the kernel covers the whole image, grid 1x1, like the small
// model's 7x7 conv from 7x7 to 1x1 and its transpose) needs no im2col at all: the NCHW image
// tensor of nb images is the row-major [nb, rows] matrix and the grid side is [nb, grid_c], so
// the three gemms run on the tensors as they are (dense_* below).
//
// A chunk's images go through one gemm with chunk * grid_hw columns: their im2col blocks side by
// side, and the grid-side tensor packed from NCHW [chunk][c][hw] into [c][chunk * hw] (and unpacked
// afterwards), because at 8x8 a per-image gemm has only 64 columns. Deterministic: every summation
// order is fixed by the shape.
#include <cblas.h>
#include <string.h>

#include "../../src/core/common.h"
#include "cpu_conv_internal.h"

typedef struct {
    int grid_c, grid_h, grid_w;
    int image_c, image_h, image_w;
    int k, stride, pad;
    int rows;          // image_c * k * k: rows of col, columns of W
    int grid_hw;       // columns of col per image
    int chunk;         // images per gemm at most
    int pointwise;     // 1x1, stride 1, pad 0: col is the image itself
    int dense;         // conv_is_dense: grid 1x1, the tensors are the gemm operands
    int phase_h, phase_w;   // size of one phase of the split plane (see split_plane)
} ConvGeom;

// A thread's scratch, carved into the col matrix [rows, chunk * grid_hw], the packed grid-side
// matrix [grid_c, chunk * grid_hw] and one split image plane (see split_plane).
typedef struct {
    float *col, *packed, *split;
} ConvScratch;

enum { SCRATCH_ALIGN_FLOATS = 16 };   // keep every part 64-byte aligned

static size_t round_up_floats(size_t n) {
    return (n + SCRATCH_ALIGN_FLOATS - 1) / SCRATCH_ALIGN_FLOATS * SCRATCH_ALIGN_FLOATS;
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

// Sizes in floats of the scratch parts for geometry g.
static size_t col_floats(const ConvGeom *g) {
    return g->dense ? 0 : (size_t)g->rows * (size_t)g->chunk * (size_t)g->grid_hw;
}
static size_t packed_floats(const ConvGeom *g) {
    return g->dense ? 0 : (size_t)g->grid_c * (size_t)g->chunk * (size_t)g->grid_hw;
}
static size_t split_floats(const ConvGeom *g) {
    return g->dense ? 0 : (size_t)g->stride * (size_t)g->stride * (size_t)g->phase_h * (size_t)g->phase_w;
}

static ConvGeom conv_geom(const ConvShape *s, int chunk) {
    ConvGeom g;
    if (s->transposed) {
        g.grid_c = s->in_channels, g.grid_h = s->in_height, g.grid_w = s->in_width;
        g.image_c = s->out_channels, g.image_h = s->out_height, g.image_w = s->out_width;
    } else {
        g.grid_c = s->out_channels, g.grid_h = s->out_height, g.grid_w = s->out_width;
        g.image_c = s->in_channels, g.image_h = s->in_height, g.image_w = s->in_width;
    }
    g.k = s->kernel, g.stride = s->stride, g.pad = s->pad;
    g.rows = g.image_c * g.k * g.k;
    g.grid_hw = g.grid_h * g.grid_w;
    g.chunk = chunk;
    g.pointwise = g.k == 1 && g.stride == 1 && g.pad == 0;
    g.dense = conv_is_dense(s);
    g.phase_h = (g.image_h + 2 * g.pad + g.stride - 1) / g.stride;
    g.phase_w = (g.image_w + 2 * g.pad + g.stride - 1) / g.stride;
    return g;
}

// im2col and col2im work on one image plane at a time, rearranged so that their inner loops are
// plain stride-1 runs with no bounds tests: the plane with its zero border of `pad` pixels
// (hp x wp), split into stride x stride phase planes of phase_h x phase_w, phase (py, px) holding the
// padded pixels (y, x) with y % stride = py and x % stride = px at (y / stride, x / stride). Kernel
// tap (ki, kj) at grid pixel (oh, ow) reads padded pixel (oh stride + ki, ow stride + kj), which is
// pixel (oh + ki / stride, ow + kj / stride) of phase (ki % stride, kj % stride). Stride 1 and pad 0
// need no split at all.
static int needs_split(const ConvGeom *g) { return g->stride > 1 || g->pad > 0; }

static const float *phase_plane(const ConvGeom *g, const float *split, int ki, int kj) {
    int s = g->stride;
    return split + (size_t)((ki % s) * s + kj % s) * (size_t)g->phase_h * (size_t)g->phase_w +
           (size_t)(ki / s) * (size_t)g->phase_w + (size_t)(kj / s);
}

// split = the plane src, padded and split into phases.
static void split_plane(const ConvGeom *g, const float *src, float *split) {
    int s = g->stride, p = g->pad, pw = g->phase_w;
    memset(split, 0, (size_t)s * (size_t)s * (size_t)g->phase_h * (size_t)pw * sizeof(float));
    for (int y = 0; y < g->image_h; y++) {
        const float *srow = src + (size_t)y * (size_t)g->image_w;
        for (int px = 0; px < s; px++) {
            // image columns x with (x + p) % s == px, landing at column (x + p) / s of the phase
            int x0 = ((px - p) % s + s) % s;
            float *drow = split + (size_t)(((y + p) % s) * s + px) * (size_t)g->phase_h * (size_t)pw +
                          (size_t)((y + p) / s) * (size_t)pw + (size_t)((x0 + p) / s);
            for (int x = x0, xx = 0; x < g->image_w; x += s, xx++) drow[xx] = srow[x];
        }
    }
}

// The inverse of split_plane for the interior: dst = interior of the split plane + v.
static void merge_plane(const ConvGeom *g, const float *split, float v, float *dst) {
    int s = g->stride, p = g->pad, pw = g->phase_w;
    for (int y = 0; y < g->image_h; y++) {
        float *drow = dst + (size_t)y * (size_t)g->image_w;
        for (int px = 0; px < s; px++) {
            int x0 = ((px - p) % s + s) % s;
            const float *srow = split + (size_t)(((y + p) % s) * s + px) * (size_t)g->phase_h * (size_t)pw +
                                (size_t)((y + p) / s) * (size_t)pw + (size_t)((x0 + p) / s);
            for (int x = x0, xx = 0; x < g->image_w; x += s, xx++) drow[x] = srow[xx] + v;
        }
    }
}

// col[r][b * grid_hw + oh * grid_w + ow] = image[b][c][oh * stride - pad + ki][ow * stride - pad + kj]
// (0 in the padding), r = (c * k + ki) * k + kj, for the nb images of the chunk. `split` is scratch
// for one split plane.
static void im2col(const ConvGeom *g, const float *image, int nb, float *col, float *split) {
    size_t ld = (size_t)nb * (size_t)g->grid_hw, plane = (size_t)g->image_h * (size_t)g->image_w;
    int k = g->k, gh = g->grid_h, gw = g->grid_w;
    int pw = needs_split(g) ? g->phase_w : g->image_w;
    for (int b = 0; b < nb; b++) {
        for (int c = 0; c < g->image_c; c++) {
            const float *src = image + ((size_t)b * (size_t)g->image_c + (size_t)c) * plane;
            if (needs_split(g)) split_plane(g, src, split);
            for (int ki = 0; ki < k; ki++) {
                for (int kj = 0; kj < k; kj++) {
                    float *restrict dst = col + (size_t)((c * k + ki) * k + kj) * ld + (size_t)b * (size_t)g->grid_hw;
                    const float *restrict from = needs_split(g) ? phase_plane(g, split, ki, kj)
                                                                : src + (size_t)ki * pw + kj;
                    for (int oh = 0; oh < gh; oh++, dst += gw, from += pw)
                        for (int ow = 0; ow < gw; ow++) dst[ow] = from[ow];
                }
            }
        }
    }
}

// The adjoint of im2col: image[b][c][y][x] = init[c] + the sum of the col entries that im2col took
// from pixel (y, x) (init is the bias, or NULL for 0). Overwrites the nb images. The sums go into
// the split scratch plane (whose padding is then dropped), or straight into the image when no
// split is needed.
static void col2im(const ConvGeom *g, const float *col, const float *init, int nb, float *image, float *split) {
    size_t ld = (size_t)nb * (size_t)g->grid_hw, plane = (size_t)g->image_h * (size_t)g->image_w;
    int k = g->k, gh = g->grid_h, gw = g->grid_w;
    int pw = needs_split(g) ? g->phase_w : g->image_w;
    size_t split_size = (size_t)g->stride * (size_t)g->stride * (size_t)g->phase_h * (size_t)g->phase_w;
    for (int b = 0; b < nb; b++) {
        for (int c = 0; c < g->image_c; c++) {
            float *dst = image + ((size_t)b * (size_t)g->image_c + (size_t)c) * plane;
            float v = init ? init[c] : 0.0f;
            if (needs_split(g)) {
                memset(split, 0, split_size * sizeof(float));
            } else {
                for (size_t i = 0; i < plane; i++) dst[i] = v;
            }
            for (int ki = 0; ki < k; ki++) {
                for (int kj = 0; kj < k; kj++) {
                    const float *restrict src = col + (size_t)((c * k + ki) * k + kj) * ld + (size_t)b * (size_t)g->grid_hw;
                    float *restrict to = needs_split(g) ? (float *)phase_plane(g, split, ki, kj)
                                                        : dst + (size_t)ki * pw + kj;
                    for (int oh = 0; oh < gh; oh++, src += gw, to += pw)
                        for (int ow = 0; ow < gw; ow++) to[ow] += src[ow];
                }
            }
            if (needs_split(g)) merge_plane(g, split, v, dst);
        }
    }
}

// packed[c][b * hw + p] = t[b][c][p]: the chunk's grid-side tensor as one [grid_c, nb * hw] matrix.
static void pack_grid(const ConvGeom *g, const float *t, int nb, float *packed) {
    size_t hw = (size_t)g->grid_hw, ld = (size_t)nb * hw;
    for (int b = 0; b < nb; b++)
        for (int c = 0; c < g->grid_c; c++)
            memcpy(packed + (size_t)c * ld + (size_t)b * hw, t + ((size_t)b * (size_t)g->grid_c + (size_t)c) * hw,
                   hw * sizeof(float));
}

// The inverse of pack_grid, adding bias[c] when bias is not NULL.
static void unpack_grid(const ConvGeom *g, const float *packed, const float *bias, int nb, float *t) {
    size_t hw = (size_t)g->grid_hw, ld = (size_t)nb * hw;
    for (int b = 0; b < nb; b++) {
        for (int c = 0; c < g->grid_c; c++) {
            const float *src = packed + (size_t)c * ld + (size_t)b * hw;
            float *dst = t + ((size_t)b * (size_t)g->grid_c + (size_t)c) * hw;
            float v = bias ? bias[c] : 0.0f;
            for (size_t p = 0; p < hw; p++) dst[p] = src[p] + v;
        }
    }
}

static void add_bias(const float *bias, int nb, int channels, size_t hw, float *t) {
    for (int b = 0; b < nb; b++)
        for (int c = 0; c < channels; c++) {
            float *dst = t + ((size_t)b * (size_t)channels + (size_t)c) * hw;
            for (size_t p = 0; p < hw; p++) dst[p] += bias[c];
        }
}

// Conv2d's data gradient at stride 1 is itself a Conv2d, of dout with the flipped kernel:
//   din = conv(dout, W~, pad k - 1 - pad),   W~[c][o][ki][kj] = W[o][c][k - 1 - ki][k - 1 - kj].
// Done as a gather (im2col of dout, one gemm with K = out_channels k k) it moves less memory than
// the scatter (a gemm with K = out_channels into in_channels k k rows, then col2im) when
// out_channels < in_channels, and its gemm has a better shape: the residual 128->32 3x3 conv's
// backward measured ~25% faster this way (at 128->128 the two measured the same).
typedef struct {
    ConvGeom g;   // the convolution
    ConvGeom f;   // its data gradient as a convolution of dout, when flip is set
    int flip;
} ConvPlan;

static ConvPlan conv_plan(const ConvShape *s, int chunk) {
    ConvPlan p;
    memset(&p, 0, sizeof p);
    p.g = conv_geom(s, chunk);
    p.flip = !s->transposed && !conv_is_dense(s) && s->stride == 1 && s->kernel > 1 && s->pad <= s->kernel - 1 &&
             s->out_channels < s->in_channels;
    if (p.flip) {
        ConvShape d = conv_shape(s->batch, s->out_channels, s->out_height, s->out_width, s->in_channels, s->kernel, 1,
                                 s->kernel - 1 - s->pad, 0, 0);
        CHECK(d.out_height == s->in_height && d.out_width == s->in_width, "flipped data-gradient shape mismatch");
        p.f = conv_geom(&d, chunk);
    }
    return p;
}

static size_t wflip_floats(const ConvPlan *p) { return p->flip ? (size_t)p->f.grid_c * (size_t)p->f.rows : 0; }

// Floats of each scratch part: enough for the convolution and, when flipped, its data gradient.
static void scratch_floats(const ConvPlan *p, size_t *col, size_t *packed, size_t *split) {
    *col = col_floats(&p->g), *packed = packed_floats(&p->g), *split = split_floats(&p->g);
    if (p->flip) {
        *col = max_size(*col, col_floats(&p->f));
        *packed = max_size(*packed, packed_floats(&p->f));
        *split = max_size(*split, split_floats(&p->f));
    }
}

ConvSpace im2col_space(const ConvShape *s, const ConvChunks *ch) {
    ConvPlan p = conv_plan(s, ch->chunk);
    size_t col, packed, split;
    scratch_floats(&p, &col, &packed, &split);
    ConvSpace space;
    space.shared_bytes = round_up_floats(wflip_floats(&p)) * sizeof(float);
    space.partial_floats = round_up_floats(conv_weight_count(s));
    space.thread_bytes = (round_up_floats(col) + round_up_floats(packed) + round_up_floats(split)) * sizeof(float);
    return space;
}

static ConvScratch conv_scratch(const ConvPlan *p, void *scratch) {
    size_t col, packed, split;
    scratch_floats(p, &col, &packed, &split);
    ConvScratch w;
    w.col = (float *)scratch;
    w.packed = w.col + round_up_floats(col);
    w.split = w.packed + round_up_floats(packed);
    return w;
}

// grid[nb] = W col_mat + bias for nb images, col_mat being im2col(image[nb]) (or the image itself
// when pointwise). A single image's result goes straight into the NCHW tensor; a chunk's through
// `packed` (which is overwritten).
static void gather(const ConvGeom *g, const float *weight, const float *col_mat, const float *bias, int nb,
                   float *grid, float *packed) {
    int n = nb * g->grid_hw;
    float *c_mat = nb == 1 ? grid : packed;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->grid_c, n, g->rows, 1.0f, weight, g->rows, col_mat, n,
                0.0f, c_mat, n);
    if (nb != 1) {
        unpack_grid(g, packed, bias, nb, grid);
    } else if (bias) {
        add_bias(bias, 1, g->grid_c, (size_t)g->grid_hw, grid);
    }
}

// im2col of nb images into col, or the image itself when the conv is pointwise and nb = 1.
static const float *col_matrix(const ConvGeom *g, const float *image, int nb, const ConvScratch *w) {
    if (g->pointwise && nb == 1) return image;
    im2col(g, image, nb, w->col, w->split);
    return w->col;
}

// image[nb] = col2im(W^T grid[nb]) + bias, nb images.
static void scatter(const ConvGeom *g, const float *weight, const float *grid_packed, const float *bias, int nb,
                    float *image, const ConvScratch *w) {
    int n = nb * g->grid_hw;
    if (g->pointwise && nb == 1) {   // col2im is the identity: write the gemm straight into the image
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->rows, n, g->grid_c, 1.0f, weight, g->rows, grid_packed,
                    n, 0.0f, image, n);
        if (bias) add_bias(bias, 1, g->image_c, (size_t)g->grid_hw, image);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->rows, n, g->grid_c, 1.0f, weight, g->rows, grid_packed, n,
                0.0f, w->col, n);
    col2im(g, w->col, bias, nb, image, w->split);
}

// The grid-side tensor of nb images as a [grid_c, nb * hw] matrix: itself when nb = 1.
static const float *grid_matrix(const ConvGeom *g, const float *t, int nb, float *packed) {
    if (nb == 1) return t;
    pack_grid(g, t, nb, packed);
    return packed;
}

// W~[c][o][ki][kj] = W[o][c][k - 1 - ki][k - 1 - kj]: the weight of the flipped data gradient.
static void flip_weight(const ConvShape *s, const float *weight, float *wflip) {
    int co_n = s->out_channels, ci_n = s->in_channels, k = s->kernel, kk = k * k;
    for (int o = 0; o < co_n; o++)
        for (int c = 0; c < ci_n; c++) {
            const float *src = weight + ((size_t)o * (size_t)ci_n + (size_t)c) * (size_t)kk;
            float *dst = wflip + ((size_t)c * (size_t)co_n + (size_t)o) * (size_t)kk;
            for (int t = 0; t < kk; t++) dst[t] = src[kk - 1 - t];
        }
}

// ---- dense layers: image [nb, rows], grid [nb, grid_c], W [grid_c, rows] -------------------------

// grid = image W^T (+ bias[c] on column c)
static void dense_gather(const ConvGeom *g, const float *weight, const float *image, const float *bias, int nb,
                         float *grid) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, g->grid_c, g->rows, 1.0f, image, g->rows, weight, g->rows,
                0.0f, grid, g->grid_c);
    if (bias) add_bias(bias, nb, g->grid_c, 1, grid);
}

// image = grid W (+ bias[c] on every pixel of channel c)
static void dense_scatter(const ConvGeom *g, const float *weight, const float *grid, const float *bias, int nb,
                          float *image) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, g->rows, g->grid_c, 1.0f, grid, g->grid_c, weight,
                g->rows, 0.0f, image, g->rows);
    if (bias) add_bias(bias, nb, g->image_c, (size_t)g->k * (size_t)g->k, image);
}

static void dense_backward(const ConvShape *s, const ConvGeom *g, int nb, const float *in, const float *weight,
                           const float *dout, float *din, float *dweight) {
    const float *image = s->transposed ? dout : in, *grid = s->transposed ? in : dout;
    // dW = grid^T image
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->grid_c, g->rows, nb, 1.0f, grid, g->grid_c, image,
                g->rows, 0.0f, dweight, g->rows);
    if (!din) return;
    if (s->transposed) dense_gather(g, weight, dout, NULL, nb, din);
    else dense_scatter(g, weight, dout, NULL, nb, din);
}

void im2col_forward_chunk(const ConvShape *s, int nb, const float *in, const float *weight, const float *bias,
                          float *out, void *scratch) {
    ConvPlan plan = conv_plan(s, nb);
    if (plan.g.dense) {
        if (s->transposed) dense_scatter(&plan.g, weight, in, bias, nb, out);
        else dense_gather(&plan.g, weight, in, bias, nb, out);
        return;
    }
    const ConvGeom g = plan.g;
    ConvScratch w = conv_scratch(&plan, scratch);
    if (s->transposed) {
        scatter(&g, weight, grid_matrix(&g, in, nb, w.packed), bias, nb, out, &w);
    } else {
        gather(&g, weight, col_matrix(&g, in, nb, &w), bias, nb, out, w.packed);
    }
}

void im2col_prepare_backward(const ConvShape *s, const float *weight, void *shared) {
    ConvPlan plan = conv_plan(s, 1);
    if (plan.flip) flip_weight(s, weight, (float *)shared);
}

// col = im2col(image side), P = grid side as a matrix; dW = P col^T; then the data gradient:
// ConvTranspose2d din = W col (col is im2col(dout)); Conv2d din = col2im(W^T P) (P is dout), or at
// stride 1 the flipped gather of ConvPlan (its weight in shared).
void im2col_backward_chunk(const ConvShape *s, int nb, const float *in, const float *weight, const void *shared,
                           const float *dout, float *din, float *dweight, void *scratch) {
    ConvPlan plan = conv_plan(s, nb);
    if (plan.g.dense) {
        dense_backward(s, &plan.g, nb, in, weight, dout, din, dweight);
        return;
    }
    const ConvGeom g = plan.g;
    ConvScratch w = conv_scratch(&plan, scratch);
    int n = nb * g.grid_hw;
    const float *image_side = s->transposed ? dout : in;
    const float *grid_side = s->transposed ? in : dout;
    const float *col_mat = col_matrix(&g, image_side, nb, &w);
    const float *p_mat = grid_matrix(&g, grid_side, nb, w.packed);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.grid_c, g.rows, n, 1.0f, p_mat, n, col_mat, n, 0.0f,
                dweight, g.rows);
    if (!din) return;
    // From here on col and packed are free to be overwritten.
    if (s->transposed) {
        gather(&g, weight, col_mat, NULL, nb, din, w.packed);
    } else if (plan.flip) {
        gather(&plan.f, (const float *)shared, col_matrix(&plan.f, dout, nb, &w), NULL, nb, din, w.packed);
    } else {
        scatter(&g, weight, p_mat, NULL, nb, din, &w);
    }
}
