// cpu_conv_onednn_none.c: the oneDNN engine of a build without oneDNN (CMake found no libdnnl-dev):
// cpu_conv_from_name() refuses "onednn" there, so only onednn_destroy(NULL) is ever reached.
#include "../../src/core/common.h"
#include "cpu_conv_internal.h"

static void no_onednn(void) {
    fatal("this build has no oneDNN; install libdnnl-dev (tools/install_deps.sh) and rebuild, or use "
          "train.cpu_conv=im2col");
}

OnednnState *onednn_create(int threads, int bf16) {
    (void)threads, (void)bf16;
    no_onednn();
}
int onednn_bf16_supported(void) { return 0; }
const char *onednn_isa_name(void) { return "none"; }
void onednn_destroy(OnednnState *st) { CHECK(st == NULL, "oneDNN state in a build without oneDNN"); }
void onednn_prepare(OnednnState *st, ConvShape *s, const ConvChunks *ch) { no_onednn(); }
ConvSpace onednn_space(const OnednnState *st, const ConvShape *s) { no_onednn(); }
void onednn_check_plan(const OnednnState *st, const ConvShape *s, const char *op) { no_onednn(); }
void onednn_prepare_weights(OnednnState *st, const ConvShape *s, const float *weight, int backward, void *shared) {
    no_onednn();
}
void onednn_forward_chunk(OnednnState *st, const ConvShape *s, int thread, int nb, const float *in,
                          const float *bias, float *out, void *shared, void *scratch) {
    no_onednn();
}
void onednn_backward_chunk(OnednnState *st, const ConvShape *s, int thread, int nb, const float *in,
                           const float *dout, float *din, float *dweight_partial, void *shared, void *scratch) {
    no_onednn();
}
void onednn_finish_dweight(OnednnState *st, const ConvShape *s, const float *sum, float *dweight) { no_onednn(); }
void onednn_reorder_counts(const OnednnState *st, const ConvShape *s, long *count, double *bytes) { no_onednn(); }
void onednn_plan_info(const OnednnState *st, const ConvShape *s, char *out, size_t len) { no_onednn(); }
