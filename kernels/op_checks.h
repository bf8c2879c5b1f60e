// op_checks.h: the argument checks that the CPU and CUDA backends make alike before the layer ops
// of ops.h (GroupNorm, resampling, attention, linear, the random ops), so that both refuse the
// same calls with the same words. Host code; C and C++ (the .cu files include it too).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../src/core/philox.h"
#ifdef __cplusplus
extern "C" {   // common.h's functions have C linkage (its system headers are included above)
#endif
#include "../src/core/common.h"
#ifdef __cplusplus
}
#endif

static inline void check_group_shape(const char *op, int n, int c, int hw, int groups) {
    CHECK(n >= 0 && c > 0 && hw > 0 && groups > 0 && c % groups == 0,
          "%s: channels %d must be a positive multiple of groups %d (n=%d, hw=%d); "
          "set model.norm_num_groups to a divisor of every channel count", op, c, groups, n, hw);
}

static inline void check_planes(const char *op, int n, int c, int h, int w) {
    CHECK(n >= 0 && c >= 0 && h >= 0 && w >= 0, "%s: negative shape [%d, %d, %d, %d]", op, n, c, h, w);
}

static inline void check_pad(const char *op, int n, int c, int h, int w, int top, int bottom, int left, int right) {
    check_planes(op, n, c, h, w);
    CHECK(top >= 0 && bottom >= 0 && left >= 0 && right >= 0,
          "%s: padding (top %d, bottom %d, left %d, right %d) must be >= 0", op, top, bottom, left, right);
}

static inline void check_attention(const char *op, int n, int c, int hw) {
    CHECK(n >= 0 && c > 0 && hw > 0, "%s: needs n >= 0, c > 0, hw > 0; got n=%d c=%d hw=%d", op, n, c, hw);
}

static inline void check_linear(const char *op, int n, int in, int out) {
    CHECK(n >= 0 && in > 0 && out > 0, "%s: needs n >= 0, in > 0, out > 0; got n=%d in=%d out=%d", op, n, in, out);
}

// The ids of a random op must fit src/core/philox.h's counter layout. The step itself is device
// memory: only the CPU backend can read it here.
static inline void check_counter(const char *op, int n, int64_t first_sample, uint32_t layer, const int32_t *step) {
    CHECK(n >= 0 && first_sample >= 0 && first_sample + n <= ((int64_t)1 << 32),
          "%s: samples [%lld, %lld) must lie in [0, 2^32) (the global sample index is 32 bits of the counter)", op,
          (long long)first_sample, (long long)first_sample + n);
    CHECK(layer < PHILOX_LAYER_LIMIT, "%s: layer id %u must be below 2^24; number the layers from 0", op, layer);
    CHECK(step != NULL, "%s: the step counter must be an int32 in device memory (e.g. &state->steps)", op);
}

static inline void check_dropout_p(const char *op, float p) {
    CHECK(p >= 0.0f && p <= 1.0f, "%s: p = %g must be in [0, 1]; check model.dropout", op, p);
}
