// cpu_onednn.h: what the two oneDNN files share: the plan of one convolution shape (made by
// cpu_onednn_plan.c, run by cpu_conv_onednn.c; see the top of cpu_conv_onednn.c).
#pragma once
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "../../src/core/common.h"
#include "cpu_conv_internal.h"

#define DNNL_CHECK(call)                                                                                        \
    do {                                                                                                        \
        dnnl_status_t status_ = (call);                                                                         \
        if (status_ != dnnl_success)                                                                            \
            fatal_at(__FILE__, __LINE__, "oneDNN: %s failed: %s; train.cpu_conv=im2col avoids oneDNN", #call,   \
                     dnnl_status2str(status_));                                                                 \
    } while (0)

enum { DIR_FWD, DIR_BWD_DATA, DIR_BWD_WEIGHTS, DIRS };
enum { SIDE_X, SIDE_Y, SIDES };   // C's image side (src / diff_src) and grid side (dst / diff_dst)
enum { MAX_VARIANTS = 2, ALIGN = 64 };

// Which sides each direction reads (the others it writes).
static const int READS[DIRS][SIDES] = {{1, 0}, {0, 1}, {1, 1}};
static const int SIDE_ARGS[DIRS][SIDES] = {{DNNL_ARG_SRC, DNNL_ARG_DST},
                                           {DNNL_ARG_DIFF_SRC, DNNL_ARG_DIFF_DST},
                                           {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST}};
static const int WEIGHT_ARGS[DIRS] = {DNNL_ARG_WEIGHTS, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_WEIGHTS};

typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_desc_t md[SIDES];        // the layouts the primitive runs on
    dnnl_primitive_t reorder[SIDES];     // NCHW -> md (sides it reads), md -> NCHW (the side it writes); NULL: same
    dnnl_memory_desc_t scratch_md;
    size_t scratch_bytes;
} Dir;

// The memory objects of one thread for one chunk size: set_data_handle re-points them, nothing is
// created during a call. Only handles (destroy_mems walks them as an array).
typedef struct {
    dnnl_memory_t user[SIDES];           // the chunk's NCHW tensors
    dnnl_memory_t prim[DIRS][SIDES];     // the primitives' operands
    dnnl_memory_t weight[DIRS];          // their weights (bwd_w: the chunk's partial weight gradient)
    dnnl_memory_t bias;                  // Conv2d forward with a bias
    dnnl_memory_t scratch[DIRS];         // NULL when a primitive needs none
} Mems;
_Static_assert(sizeof(Mems) % sizeof(dnnl_memory_t) == 0, "Mems holds only memory handles");

typedef struct {
    int nb;
    dnnl_memory_desc_t user[SIDES];
    Dir dir[DIRS];
} Variant;

typedef struct {
    ConvShape shape;
    int variants;
    Variant var[MAX_VARIANTS];
    dnnl_memory_desc_t w_user, w_md[DIRS];   // OIHW and the primitives' weight layouts (every variant's)
    dnnl_primitive_t w_reorder[DIRS];        // OIHW -> w_md (fwd, bwd_d), w_md -> OIHW (bwd_w); NULL: same
    dnnl_memory_t w_user_mem, w_prim_mem[DIRS];
    const float *w_ptr[DIRS];                // the weights the chunks of this call read (set per call)
    Mems *mems;                              // [threads][variants]
    ConvSpace space;
    size_t shared_off[2];                    // prepared fwd and bwd_d weights in the shared workspace
    size_t buf_bytes[3], scratch_bytes;      // per thread: x, y, second-input buffers and scratchpad
    long *reorders;                          // [threads] reorders executed, and the bytes they wrote
    double *reorder_bytes;
} Plan;

struct OnednnState {
    dnnl_engine_t engine;
    dnnl_stream_t *streams;   // one per thread
    dnnl_primitive_attr_t attr;
    int threads;
    int bf16;                 // inputs in bf16 (onednn_create)
    Plan *plans;
    int count, capacity;
};

static inline Plan *onednn_plan_of(const OnednnState *st, const ConvShape *s) { return &st->plans[s->plan]; }
