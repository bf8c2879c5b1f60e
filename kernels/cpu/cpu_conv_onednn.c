// cpu_conv_onednn.c: the CPU convolutions as oneDNN primitives (Debian's libdnnl, the library
// PyTorch uses on x86), one chunk of images per call (cpu_conv.c runs the chunks on the threads).
//
// Both kinds are expressed through the Conv2d C from the image side x to the grid side y
// (cpu_conv_im2col.c), with C's filter [grid_c, image_c, k, k], which is the layer's weight as
// stored (Conv2d OIHW, ConvTranspose2d IOHW), so:
//   Conv2d:          forward  y = C.fwd(x = in) + bias    backward  dW = C.bwd_w(x = in, y = dout),
//                                                                   din = C.bwd_data(y = dout)
//   ConvTranspose2d: forward  x = C.bwd_data(y = in) (+ bias, added here)
//                                                         backward  dW = C.bwd_w(x = dout, y = in),
//                                                                   din = C.fwd(x = dout)
// C's right padding is the layer's pad: oneDNN rounds the output size down as we do, and
// output_padding's extra rows are the ones no tap of C reaches.
//
// Plans. conv_prepare makes, once per shape, the three primitives for each chunk size (the full
// chunk and a shorter last one), letting oneDNN choose the layouts (format "any": blocked
// nChw8c / OIhw8i8o with AVX2), plus a reorder for every operand whose chosen layout is not the
// user's NCHW / OIHW, and the memory objects every thread binds to its buffers; a call then only
// binds pointers and executes. The primitives are made while OpenMP's thread count is 1 and are
// always run inside cpu_conv.c's parallel region (where oneDNN runs single-threaded), so each
// runs its 1-thread kernel: nothing depends on the thread count. Scratchpads are ours (user mode).
// Reorders are counted per plan (onednn_reorder_counts). Activations stay NCHW between layers
// (the model's layout), so every call reorders its activations in and out; weights once per call.
// With train.precision=bf16 (OnednnState.bf16) what a primitive reads is bf16 and what it writes
// fp32, so those reorders also convert, and nothing here changes: buffers are sized from the
// primitives' descriptors. Plans are made in cpu_onednn_plan.c.
#include <stdio.h>
#include <string.h>

#include "cpu_onednn.h"

static const char *const DIR_NAMES[DIRS] = {"forward", "backward-data", "backward-weights"};

// ---- running ---------------------------------------------------------------------------------

static void bind(dnnl_memory_t m, const void *ptr) { DNNL_CHECK(dnnl_memory_set_data_handle(m, (void *)ptr)); }

static void run(const OnednnState *st, int thread, dnnl_primitive_t prim, int nargs, const dnnl_exec_arg_t *args) {
    DNNL_CHECK(dnnl_primitive_execute(prim, st->streams[thread], nargs, args));
}

static void count_reorder(Plan *p, int thread, const dnnl_memory_desc_t *to) {
    p->reorders[thread]++;
    p->reorder_bytes[thread] += (double)dnnl_memory_desc_get_size(to);
}

static void reorder(const OnednnState *st, Plan *p, int thread, dnnl_primitive_t r, dnnl_memory_t from,
                    dnnl_memory_t to, const dnnl_memory_desc_t *to_md) {
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    run(st, thread, r, 2, args);
    count_reorder(p, thread, to_md);
}

void onednn_prepare_weights(OnednnState *st, const ConvShape *s, const float *weight, int backward, void *shared) {
    Plan *p = onednn_plan_of(st, s);
    // The direction whose weights a call reads: forward Conv2d fwd, ConvTranspose2d bwd_d;
    // backward (the data gradient) the other one.
    int d = (s->transposed != 0) ^ (backward != 0) ? DIR_BWD_DATA : DIR_FWD;
    p->w_ptr[d] = weight;
    if (!p->w_reorder[d]) return;
    float *to = (float *)((char *)shared + p->shared_off[d == DIR_FWD ? 0 : 1]);
    bind(p->w_user_mem, weight);
    bind(p->w_prim_mem[d], to);
    reorder(st, p, 0, p->w_reorder[d], p->w_user_mem, p->w_prim_mem[d], &p->w_md[d]);
    p->w_ptr[d] = to;
}

// The thread's buffers: x, y, a second input, the scratchpad.
typedef struct {
    char *buf[3];
    char *scratch;
} Buffers;

static Buffers buffers(const Plan *p, void *scratch) {
    Buffers b;
    b.buf[0] = (char *)scratch;
    b.buf[1] = b.buf[0] + p->buf_bytes[0];
    b.buf[2] = b.buf[1] + p->buf_bytes[1];
    b.scratch = b.buf[2] + p->buf_bytes[2];
    return b;
}

// Direction d's operand on `side` for a chunk: the user's NCHW tensor itself when the layouts
// agree, else `buf`, filled from it by the reorder when d reads that side.
static dnnl_memory_t operand(const OnednnState *st, Plan *p, int thread, const Variant *var, Mems *m, int d,
                             int side, const float *user, char *buf) {
    const Dir *dir = &var->dir[d];
    dnnl_memory_t mem = m->prim[d][side];
    bind(mem, dir->reorder[side] ? (const void *)buf : (const void *)user);
    if (dir->reorder[side] && READS[d][side]) {
        bind(m->user[side], user);
        reorder(st, p, thread, dir->reorder[side], m->user[side], mem, &dir->md[side]);
    }
    return mem;
}

// Run direction d on the bound operands; then the side it writes goes back to NCHW `user` when it
// was a buffer. weight: what the primitive reads or (bwd_w) writes.
static void execute(const OnednnState *st, Plan *p, int thread, const Variant *var, Mems *m, int d,
                    dnnl_memory_t x, dnnl_memory_t y, const float *weight, const float *bias, char *scratch,
                    float *user_out) {
    const Dir *dir = &var->dir[d];
    bind(m->weight[d], weight);
    dnnl_exec_arg_t args[5] = {{SIDE_ARGS[d][SIDE_X], x}, {SIDE_ARGS[d][SIDE_Y], y}, {WEIGHT_ARGS[d], m->weight[d]}};
    int n = 3;
    if (d == DIR_FWD && m->bias) {
        bind(m->bias, bias);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, m->bias};
    }
    if (m->scratch[d]) {
        bind(m->scratch[d], scratch);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, m->scratch[d]};
    }
    run(st, thread, dir->prim, n, args);
    for (int side = 0; side < SIDES && user_out; side++) {
        if (READS[d][side] || !dir->reorder[side]) continue;
        bind(m->user[side], user_out);
        reorder(st, p, thread, dir->reorder[side], side == SIDE_X ? x : y, m->user[side], &var->user[side]);
    }
}

static const Variant *variant_for(const Plan *p, int nb, int thread, Mems **m) {
    int v = nb == p->var[0].nb ? 0 : 1;
    CHECK(v < p->variants && p->var[v].nb == nb, "oneDNN plan has no primitives for a chunk of %d images", nb);
    *m = &p->mems[thread * p->variants + v];
    return &p->var[v];
}

// out[n, c, :] += bias[c] over nb images.
static void add_bias(const ConvShape *s, int nb, const float *bias, float *out) {
    size_t hw = (size_t)s->out_height * (size_t)s->out_width;
    for (int b = 0; b < nb; b++)
        for (int c = 0; c < s->out_channels; c++) {
            float *o = out + ((size_t)b * (size_t)s->out_channels + (size_t)c) * hw;
            for (size_t i = 0; i < hw; i++) o[i] += bias[c];
        }
}

void onednn_forward_chunk(OnednnState *st, const ConvShape *s, int thread, int nb, const float *in,
                          const float *bias, float *out, void *shared, void *scratch) {
    (void)shared;
    Plan *p = onednn_plan_of(st, s);
    Mems *m;
    const Variant *var = variant_for(p, nb, thread, &m);
    Buffers b = buffers(p, scratch);
    if (!s->transposed) {
        dnnl_memory_t x = operand(st, p, thread, var, m, DIR_FWD, SIDE_X, in, b.buf[0]);
        dnnl_memory_t y = operand(st, p, thread, var, m, DIR_FWD, SIDE_Y, out, b.buf[1]);
        execute(st, p, thread, var, m, DIR_FWD, x, y, p->w_ptr[DIR_FWD], bias, b.scratch, out);
        return;
    }
    dnnl_memory_t y = operand(st, p, thread, var, m, DIR_BWD_DATA, SIDE_Y, in, b.buf[1]);
    dnnl_memory_t x = operand(st, p, thread, var, m, DIR_BWD_DATA, SIDE_X, out, b.buf[0]);
    execute(st, p, thread, var, m, DIR_BWD_DATA, x, y, p->w_ptr[DIR_BWD_DATA], NULL, b.scratch, out);
    if (bias) add_bias(s, nb, bias, out);
}

// The weight gradient of the chunk into `partial` (bwd_w), then the data gradient, whose input is
// the one bwd_w read on the same side (Conv2d: dout, grid side; ConvTranspose2d: dout, image side):
// reused when its layout is the same, else reordered again into the second-input buffer.
void onednn_backward_chunk(OnednnState *st, const ConvShape *s, int thread, int nb, const float *in,
                           const float *dout, float *din, float *dweight_partial, void *shared, void *scratch) {
    (void)shared;
    Plan *p = onednn_plan_of(st, s);
    Mems *m;
    const Variant *var = variant_for(p, nb, thread, &m);
    Buffers b = buffers(p, scratch);
    const float *x_user = s->transposed ? dout : in, *y_user = s->transposed ? in : dout;
    dnnl_memory_t x = operand(st, p, thread, var, m, DIR_BWD_WEIGHTS, SIDE_X, x_user, b.buf[0]);
    dnnl_memory_t y = operand(st, p, thread, var, m, DIR_BWD_WEIGHTS, SIDE_Y, y_user, b.buf[1]);
    execute(st, p, thread, var, m, DIR_BWD_WEIGHTS, x, y, dweight_partial, NULL, b.scratch, NULL);
    if (!din) return;
    // Conv2d: din = C.bwd_data(dout), dout on the grid side; ConvTranspose2d: din = C.fwd(dout),
    // dout on the image side. The buffer bwd_w read the other side from is free now: din goes there.
    int d = s->transposed ? DIR_FWD : DIR_BWD_DATA;
    int dout_side = s->transposed ? SIDE_X : SIDE_Y, din_side = 1 - dout_side;
    const Dir *dir = &var->dir[d], *wdir = &var->dir[DIR_BWD_WEIGHTS];
    dnnl_memory_t dout_mem;
    if (dir->reorder[dout_side] && wdir->reorder[dout_side] &&
        dnnl_memory_desc_equal(&dir->md[dout_side], &wdir->md[dout_side])) {
        dout_mem = m->prim[d][dout_side];   // bwd_w's copy, in the same layout
        bind(dout_mem, b.buf[dout_side]);
    } else {
        dout_mem = operand(st, p, thread, var, m, d, dout_side, dout, b.buf[2]);
    }
    dnnl_memory_t din_mem = operand(st, p, thread, var, m, d, din_side, din, b.buf[din_side]);
    dnnl_memory_t cx = dout_side == SIDE_X ? dout_mem : din_mem, cy = dout_side == SIDE_X ? din_mem : dout_mem;
    execute(st, p, thread, var, m, d, cx, cy, p->w_ptr[d], NULL, b.scratch, din);
}

void onednn_finish_dweight(OnednnState *st, const ConvShape *s, const float *sum, float *dweight) {
    Plan *p = onednn_plan_of(st, s);
    if (!p->w_reorder[DIR_BWD_WEIGHTS]) {
        memcpy(dweight, sum, conv_weight_count(s) * sizeof(float));
        return;
    }
    bind(p->w_prim_mem[DIR_BWD_WEIGHTS], sum);
    bind(p->w_user_mem, dweight);
    reorder(st, p, 0, p->w_reorder[DIR_BWD_WEIGHTS], p->w_prim_mem[DIR_BWD_WEIGHTS], p->w_user_mem, &p->w_user);
}

void onednn_reorder_counts(const OnednnState *st, const ConvShape *s, long *count, double *bytes) {
    const Plan *p = onednn_plan_of(st, s);
    *count = 0;
    *bytes = 0.0;
    for (int t = 0; t < st->threads; t++) *count += p->reorders[t], *bytes += p->reorder_bytes[t];
}

void onednn_plan_info(const OnednnState *st, const ConvShape *s, char *out, size_t len) {
    const Plan *p = onednn_plan_of(st, s);
    size_t used = 0;
    out[0] = '\0';
    for (int d = 0; d < DIRS && used < len; d++) {
        const_dnnl_primitive_desc_t pd;
        const char *impl = "?";
        DNNL_CHECK(dnnl_primitive_get_primitive_desc(p->var[0].dir[d].prim, &pd));
        DNNL_CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
        int reorders = (p->var[0].dir[d].reorder[SIDE_X] != NULL) + (p->var[0].dir[d].reorder[SIDE_Y] != NULL) +
                       (p->w_reorder[d] != NULL);
        used += (size_t)snprintf(out + used, len - used, "%s%s %s (%d reorders)", d ? ", " : "", DIR_NAMES[d], impl,
                                 reorders);
    }
}
