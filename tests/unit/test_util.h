// test_util.h: a minimal test harness. Each EXPECT records a failure and goes on; TEST_MAIN_END
// prints "N passed, N failed" and exits non-zero when anything failed, so a test can never exit 0
// on failure. Exit code 77 means SKIP (ctest SKIP_RETURN_CODE).
#pragma once
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    int passed;
    int failed;
} TestCounts;

#define TEST_SKIP_CODE 77

#define EXPECT(counts, cond, ...)                                               \
    do {                                                                        \
        if (cond) {                                                             \
            (counts)->passed++;                                                 \
        } else {                                                                \
            (counts)->failed++;                                                 \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

// |a - b| <= atol + rtol |b|
static inline int test_close(double a, double b, double rtol, double atol) {
    if (isnan(a) || isnan(b)) return 0;
    return fabs(a - b) <= atol + rtol * fabs(b);
}

// Largest relative error max|a-b| / max(max|b|, tiny) over n values.
static inline double test_max_rel_error(const float *a, const float *b, size_t n) {
    double max_diff = 0.0, max_ref = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) return INFINITY;
        if (d > max_diff) max_diff = d;
        if (fabs((double)b[i]) > max_ref) max_ref = fabs((double)b[i]);
    }
    return max_diff / max_ref;
}

static inline int test_finish(const char *name, const TestCounts *c) {
    printf("%s: %d passed, %d failed\n", name, c->passed, c->failed);
    return c->failed == 0 && c->passed > 0 ? 0 : 1;
}
