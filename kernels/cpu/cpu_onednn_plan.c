// cpu_onednn_plan.c: making and freeing the oneDNN plans of the CPU convolutions (the design is
// described at the top of cpu_conv_onednn.c, which runs them).
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_onednn.h"

enum { NARROW_CHANNELS = 4 };

static size_t align_up(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }
static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

const char *onednn_isa_name(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "older than avx2";
    }
}

int onednn_bf16_supported(void) {
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}

OnednnState *onednn_create(int threads, int bf16) {
    // ops_context_init_with_conv refuses bf16 without AVX512-BF16 (oneDNN's reference kernels).
    CHECK(!bf16 || onednn_bf16_supported(), "bf16 oneDNN state on a CPU without AVX512-BF16 (%s)", onednn_isa_name());
    OnednnState *st = xcalloc(1, sizeof *st);
    st->threads = threads;
    st->bf16 = bf16;
    DNNL_CHECK(dnnl_engine_create(&st->engine, dnnl_cpu, 0));
    st->streams = xcalloc((size_t)threads, sizeof *st->streams);
    for (int t = 0; t < threads; t++)
        DNNL_CHECK(dnnl_stream_create(&st->streams[t], st->engine, dnnl_stream_default_flags));
    DNNL_CHECK(dnnl_primitive_attr_create(&st->attr));
    DNNL_CHECK(dnnl_primitive_attr_set_scratchpad_mode(st->attr, dnnl_scratchpad_mode_user));
    return st;
}

static void destroy_mems(Mems *m) {
    dnnl_memory_t *all = (dnnl_memory_t *)m;   // Mems is an array of handles
    for (size_t i = 0; i < sizeof *m / sizeof(dnnl_memory_t); i++)
        if (all[i]) DNNL_CHECK(dnnl_memory_destroy(all[i]));
}

static void destroy_plan(const OnednnState *st, Plan *p) {
    for (int v = 0; v < p->variants; v++)
        for (int d = 0; d < DIRS; d++) {
            Dir *dir = &p->var[v].dir[d];
            DNNL_CHECK(dnnl_primitive_destroy(dir->prim));
            for (int side = 0; side < SIDES; side++)
                if (dir->reorder[side]) DNNL_CHECK(dnnl_primitive_destroy(dir->reorder[side]));
        }
    for (int d = 0; d < DIRS; d++) {
        if (p->w_reorder[d]) DNNL_CHECK(dnnl_primitive_destroy(p->w_reorder[d]));
        DNNL_CHECK(dnnl_memory_destroy(p->w_prim_mem[d]));
    }
    DNNL_CHECK(dnnl_memory_destroy(p->w_user_mem));
    for (int i = 0; i < st->threads * p->variants; i++) destroy_mems(&p->mems[i]);
    free(p->mems);
    free(p->reorders);
    free(p->reorder_bytes);
}

void onednn_destroy(OnednnState *st) {
    if (!st) return;
    for (int i = 0; i < st->count; i++) destroy_plan(st, &st->plans[i]);
    free(st->plans);
    DNNL_CHECK(dnnl_primitive_attr_destroy(st->attr));
    for (int t = 0; t < st->threads; t++) DNNL_CHECK(dnnl_stream_destroy(st->streams[t]));
    free(st->streams);
    DNNL_CHECK(dnnl_engine_destroy(st->engine));
    free(st);
}

// ---- making a plan ---------------------------------------------------------------------------

static int same_shape(const ConvShape *a, const ConvShape *b) {
    return a->batch == b->batch && a->in_channels == b->in_channels && a->in_height == b->in_height &&
           a->in_width == b->in_width && a->out_channels == b->out_channels && a->out_height == b->out_height &&
           a->out_width == b->out_width && a->kernel == b->kernel && a->stride == b->stride && a->pad == b->pad &&
           a->output_padding == b->output_padding && a->transposed == b->transposed && a->has_bias == b->has_bias;
}

// C's image and grid sides of the layer: channels, height, width.
static void sides_of(const ConvShape *s, int x[3], int y[3]) {
    int in[3] = {s->in_channels, s->in_height, s->in_width}, out[3] = {s->out_channels, s->out_height, s->out_width};
    memcpy(x, s->transposed ? out : in, sizeof in);
    memcpy(y, s->transposed ? in : out, sizeof in);
}

// bf16: the descriptor of an operand a bf16 primitive reads; what it writes stays fp32 (so the
// weight gradient is summed, and every output leaves, in fp32), as does everything of ours.
static void md_by_tag(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims, dnnl_format_tag_t tag, int bf16) {
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(md, ndims, dims, bf16 ? dnnl_bf16 : dnnl_f32, tag));
}

static dnnl_primitive_t make_reorder(const OnednnState *st, const dnnl_memory_desc_t *from,
                                     const dnnl_memory_desc_t *to) {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    DNNL_CHECK(dnnl_reorder_primitive_desc_create(&pd, from, st->engine, to, st->engine, NULL));
    DNNL_CHECK(dnnl_primitive_create(&prim, pd));
    DNNL_CHECK(dnnl_primitive_desc_destroy(pd));
    return prim;
}

// The primitive descriptors of the three directions of C for nb images. w: the weight layouts to
// use (NULL: let oneDNN choose, format any).
static void make_descs(const OnednnState *st, const ConvShape *s, int nb, const dnnl_memory_desc_t *w,
                       dnnl_primitive_desc_t pd[DIRS]) {
    int x[3], y[3];
    sides_of(s, x, y);
    dnnl_dims_t xd = {nb, x[0], x[1], x[2]}, yd = {nb, y[0], y[1], y[2]}, wd = {y[0], x[0], s->kernel, s->kernel};
    dnnl_dims_t bd = {y[0]}, strides = {s->stride, s->stride}, pad = {s->pad, s->pad};
    // A narrow image side (the first Conv2d's image, the last ConvTranspose2d's output) stays NCHW:
    // "any" would pad its 1 channel to 8 (nChw8c), eight times the bytes, plus a reorder each way.
    dnnl_format_tag_t xtag = x[0] < NARROW_CHANNELS ? dnnl_nchw : dnnl_format_tag_any;
    dnnl_memory_desc_t xm[DIRS], ym[DIRS], wm[DIRS], bm;
    for (int d = 0; d < DIRS; d++) {
        int bf16_read = st->bf16 && d != DIR_BWD_WEIGHTS;   // bwd_w writes its weights
        md_by_tag(&xm[d], 4, xd, xtag, st->bf16 && READS[d][SIDE_X]);
        md_by_tag(&ym[d], 4, yd, dnnl_format_tag_any, st->bf16 && READS[d][SIDE_Y]);
        if (w) wm[d] = w[d];
        else md_by_tag(&wm[d], 4, wd, dnnl_format_tag_any, bf16_read);
    }
    md_by_tag(&bm, 1, bd, dnnl_x, 0);
    int fwd_bias = s->has_bias && !s->transposed;   // ConvTranspose2d's bias is on C's image side
    dnnl_convolution_desc_t cd;
    DNNL_CHECK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct, &xm[DIR_FWD],
                                                  &wm[DIR_FWD], fwd_bias ? &bm : NULL, &ym[DIR_FWD], strides, pad, pad));
    DNNL_CHECK(dnnl_primitive_desc_create(&pd[DIR_FWD], &cd, st->attr, st->engine, NULL));
    DNNL_CHECK(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &xm[DIR_BWD_DATA],
                                                        &wm[DIR_BWD_DATA], &ym[DIR_BWD_DATA], strides, pad, pad));
    DNNL_CHECK(dnnl_primitive_desc_create(&pd[DIR_BWD_DATA], &cd, st->attr, st->engine, pd[DIR_FWD]));
    DNNL_CHECK(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &xm[DIR_BWD_WEIGHTS],
                                                           &wm[DIR_BWD_WEIGHTS], NULL, &ym[DIR_BWD_WEIGHTS], strides,
                                                           pad, pad));
    DNNL_CHECK(dnnl_primitive_desc_create(&pd[DIR_BWD_WEIGHTS], &cd, st->attr, st->engine, pd[DIR_FWD]));
}

static const dnnl_query_t SIDE_QUERY[DIRS][SIDES] = {{dnnl_query_src_md, dnnl_query_dst_md},
                                                    {dnnl_query_diff_src_md, dnnl_query_diff_dst_md},
                                                    {dnnl_query_src_md, dnnl_query_diff_dst_md}};
static const dnnl_query_t WEIGHT_QUERY[DIRS] = {dnnl_query_weights_md, dnnl_query_weights_md,
                                               dnnl_query_diff_weights_md};

static void make_variant(const OnednnState *st, Plan *p, int v, int nb) {
    const ConvShape *s = &p->shape;
    Variant *var = &p->var[v];
    var->nb = nb;
    int x[3], y[3];
    sides_of(s, x, y);
    dnnl_dims_t xd = {nb, x[0], x[1], x[2]}, yd = {nb, y[0], y[1], y[2]};
    md_by_tag(&var->user[SIDE_X], 4, xd, dnnl_nchw, 0);
    md_by_tag(&var->user[SIDE_Y], 4, yd, dnnl_nchw, 0);
    dnnl_primitive_desc_t pd[DIRS];
    make_descs(st, s, nb, v == 0 ? NULL : p->w_md, pd);   // a shorter chunk keeps the weight layouts
    for (int d = 0; d < DIRS; d++) {
        Dir *dir = &var->dir[d];
        DNNL_CHECK(dnnl_primitive_create(&dir->prim, pd[d]));
        dir->scratch_md = *dnnl_primitive_desc_query_md(pd[d], dnnl_query_scratchpad_md, 0);
        dir->scratch_bytes = dnnl_memory_desc_get_size(&dir->scratch_md);
        if (v == 0) p->w_md[d] = *dnnl_primitive_desc_query_md(pd[d], WEIGHT_QUERY[d], 0);
        for (int side = 0; side < SIDES; side++) {
            dir->md[side] = *dnnl_primitive_desc_query_md(pd[d], SIDE_QUERY[d][side], 0);
            dir->reorder[side] = NULL;
            if (dnnl_memory_desc_equal(&dir->md[side], &var->user[side])) continue;
            dir->reorder[side] = READS[d][side] ? make_reorder(st, &var->user[side], &dir->md[side])
                                                : make_reorder(st, &dir->md[side], &var->user[side]);
        }
    }
    for (int d = 0; d < DIRS; d++) DNNL_CHECK(dnnl_primitive_desc_destroy(pd[d]));
}

static dnnl_memory_t make_mem(const OnednnState *st, const dnnl_memory_desc_t *md) {
    dnnl_memory_t m;
    DNNL_CHECK(dnnl_memory_create(&m, md, st->engine, DNNL_MEMORY_NONE));
    return m;
}

static void make_mems(const OnednnState *st, Plan *p, const Variant *var, Mems *m) {
    memset(m, 0, sizeof *m);
    for (int side = 0; side < SIDES; side++) m->user[side] = make_mem(st, &var->user[side]);
    for (int d = 0; d < DIRS; d++) {
        for (int side = 0; side < SIDES; side++) m->prim[d][side] = make_mem(st, &var->dir[d].md[side]);
        m->weight[d] = make_mem(st, &p->w_md[d]);
        if (var->dir[d].scratch_bytes) m->scratch[d] = make_mem(st, &var->dir[d].scratch_md);
    }
    if (p->shape.has_bias && !p->shape.transposed) {
        dnnl_memory_desc_t bm;
        dnnl_dims_t bd = {p->shape.out_channels};
        md_by_tag(&bm, 1, bd, dnnl_x, 0);
        m->bias = make_mem(st, &bm);
    }
}

// Workspace sizes: shared = the prepared fwd and bwd_d weights; partial = bwd_w's weight layout;
// per thread = an x and a y buffer, a buffer for an input needed in a second layout, the scratchpad.
static void plan_space(Plan *p) {
    size_t wbytes[DIRS];
    for (int d = 0; d < DIRS; d++) wbytes[d] = dnnl_memory_desc_get_size(&p->w_md[d]);
    p->shared_off[0] = 0;
    p->shared_off[1] = p->w_reorder[DIR_FWD] ? align_up(wbytes[DIR_FWD]) : 0;
    p->space.shared_bytes = p->shared_off[1] + (p->w_reorder[DIR_BWD_DATA] ? align_up(wbytes[DIR_BWD_DATA]) : 0);
    p->space.partial_floats = align_up(wbytes[DIR_BWD_WEIGHTS]) / sizeof(float);
    memset(p->buf_bytes, 0, sizeof p->buf_bytes);
    p->scratch_bytes = 0;
    for (int v = 0; v < p->variants; v++)
        for (int d = 0; d < DIRS; d++) {
            const Dir *dir = &p->var[v].dir[d];
            for (int side = 0; side < SIDES; side++) {
                size_t b = align_up(dnnl_memory_desc_get_size(&dir->md[side]));
                p->buf_bytes[side] = max_size(p->buf_bytes[side], b);
                p->buf_bytes[2] = max_size(p->buf_bytes[2], b);
            }
            p->scratch_bytes = max_size(p->scratch_bytes, align_up(dir->scratch_bytes));
        }
    p->space.thread_bytes = p->buf_bytes[0] + p->buf_bytes[1] + p->buf_bytes[2] + p->scratch_bytes;
}

static Plan *new_plan(OnednnState *st) {
    if (st->count == st->capacity) {
        st->capacity = st->capacity ? 2 * st->capacity : 16;
        st->plans = realloc(st->plans, (size_t)st->capacity * sizeof *st->plans);
        if (!st->plans) fatal("out of host memory for oneDNN convolution plans");
    }
    Plan *p = &st->plans[st->count++];
    memset(p, 0, sizeof *p);
    return p;
}

void onednn_prepare(OnednnState *st, ConvShape *s, const ConvChunks *ch) {
    for (int i = 0; i < st->count; i++) {
        if (same_shape(&st->plans[i].shape, s)) {
            s->plan = i;
            return;
        }
    }
    // The primitives' kernels are chosen for the thread count they see now: make them for 1.
    int saved_threads = omp_get_max_threads();
    omp_set_num_threads(1);
    Plan *p = new_plan(st);
    p->shape = *s;
    p->shape.plan = -1;
    p->variants = ch->last != ch->chunk ? 2 : 1;
    make_variant(st, p, 0, ch->chunk);
    if (p->variants == 2) make_variant(st, p, 1, ch->last);
    dnnl_dims_t wd = {s->transposed ? s->in_channels : s->out_channels,
                      s->transposed ? s->out_channels : s->in_channels, s->kernel, s->kernel};
    md_by_tag(&p->w_user, 4, wd, dnnl_oihw, 0);
    p->w_user_mem = make_mem(st, &p->w_user);
    for (int d = 0; d < DIRS; d++) {
        p->w_prim_mem[d] = make_mem(st, &p->w_md[d]);
        if (dnnl_memory_desc_equal(&p->w_md[d], &p->w_user)) continue;
        p->w_reorder[d] = d == DIR_BWD_WEIGHTS ? make_reorder(st, &p->w_md[d], &p->w_user)
                                               : make_reorder(st, &p->w_user, &p->w_md[d]);
    }
    p->mems = xcalloc((size_t)st->threads * (size_t)p->variants, sizeof *p->mems);
    for (int t = 0; t < st->threads; t++)
        for (int v = 0; v < p->variants; v++) make_mems(st, p, &p->var[v], &p->mems[t * p->variants + v]);
    p->reorders = xcalloc((size_t)st->threads, sizeof *p->reorders);
    p->reorder_bytes = xcalloc((size_t)st->threads, sizeof *p->reorder_bytes);
    plan_space(p);
    omp_set_num_threads(saved_threads);
    s->plan = st->count - 1;
}

void onednn_check_plan(const OnednnState *st, const ConvShape *s, const char *op) {
    CHECK(s->plan >= 0 && s->plan < st->count && same_shape(&st->plans[s->plan].shape, s),
          "%s: %s %d->%d k%d was not prepared on this CPU context (plan %d); call conv_prepare at start-up", op,
          s->transposed ? "ConvTranspose2d" : "Conv2d", s->in_channels, s->out_channels, s->kernel, s->plan);
}

ConvSpace onednn_space(const OnednnState *st, const ConvShape *s) {
    onednn_check_plan(st, s, "conv_prepare");
    return onednn_plan_of(st, s)->space;
}
