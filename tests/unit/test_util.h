// test_util.h: a minimal test harness. Each EXPECT records a pass or a failure and goes on;
// test_finish prints "N passed, N failed, N skipped" and returns non-zero when anything failed
// or nothing passed, so a test can never exit 0 on failure. A whole test that cannot run here
// returns TEST_SKIP_CODE (77, ctest's SKIP_RETURN_CODE); a sub-case that cannot, TEST_SKIP.
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

// A sub-case that cannot run here: TEST_SKIP says why and counts it in *skipped, an int of the
// caller's that goes to test_finish_skipped: a skipped case is reported, never counted as passed.
#define TEST_SKIP(skipped, ...)   \
    do {                          \
        (*(skipped))++;           \
        printf("SKIP: ");         \
        printf(__VA_ARGS__);      \
        putchar('\n');            \
    } while (0)

// Print "name: N passed, N failed, N skipped"; the exit code: 0 only when nothing failed and
// something passed.
static inline int test_finish_skipped(const char *name, const TestCounts *c, int skipped) {
    printf("%s: %d passed, %d failed, %d skipped\n", name, c->passed, c->failed, skipped);
    return c->failed == 0 && c->passed > 0 ? 0 : 1;
}

static inline int test_finish(const char *name, const TestCounts *c) { return test_finish_skipped(name, c, 0); }
