// test_io_synthetic.c: the synthetic dataset: determinism (a pure function of seed and index),
// range, smoothness, speed, and the train and test sets dataset_load makes of it.
#include "dataset_fixture.h"

// Determinism (a pure function of seed and index), range and smoothness.
static void test_synthetic_images(TestCounts *c) {
    Dataset a, b, other, prefix;
    dataset_make_synthetic(7, 16, 3, 32, &a);
    dataset_make_synthetic(7, 16, 3, 32, &b);
    dataset_make_synthetic(8, 16, 3, 32, &other);
    dataset_make_synthetic(7, 4, 3, 32, &prefix);
    size_t image = 3 * 32 * 32;
    EXPECT(c, a.count == 16 && a.channels == 3 && a.height == 32 && a.width == 32 && a.labels == NULL,
           "synthetic shape %lld x %d x %d x %d", (long long)a.count, a.channels, a.height, a.width);
    EXPECT(c, memcmp(a.pixels, b.pixels, 16 * image) == 0, "same seed gave different images");
    EXPECT(c, memcmp(a.pixels, prefix.pixels, 4 * image) == 0,
           "image i depends on the count, not only on (seed, i)");
    int all_differ = 1, distinct_in_set = 1;
    for (int i = 0; i < 16; i++) {
        all_differ &= memcmp(a.pixels + i * image, other.pixels + i * image, image) != 0;
        if (i > 0) distinct_in_set &= memcmp(a.pixels + i * image, a.pixels + (i - 1) * image, image) != 0;
    }
    EXPECT(c, all_differ, "seeds 7 and 8 gave an identical image");
    EXPECT(c, distinct_in_set, "consecutive images are identical");

    // Range and structure: not constant, not saturated, smooth (neighbours close; noise would be ~85).
    int levels[256] = {0};
    size_t n = 16 * image, clipped = 0;
    double neighbour_diff = 0.0;
    size_t neighbour_count = 0;
    for (size_t i = 0; i < n; i++) {
        levels[a.pixels[i]] = 1;
        clipped += a.pixels[i] == 0 || a.pixels[i] == 255;
        if (i % 32 != 31) {
            neighbour_diff += abs((int)a.pixels[i + 1] - (int)a.pixels[i]);
            neighbour_count++;
        }
    }
    int distinct = 0;
    for (int v = 0; v < 256; v++) distinct += levels[v];
    EXPECT(c, distinct >= 128, "only %d distinct pixel values in 16 synthetic images", distinct);
    EXPECT(c, clipped < n / 5, "%zu of %zu synthetic pixels are clipped to 0 or 255", clipped, n);
    double mean_diff = neighbour_diff / (double)neighbour_count;
    EXPECT(c, mean_diff < 6.0 && mean_diff > 0.1, "mean |horizontal neighbour difference| %.2f: not smooth images",
           mean_diff);
    EXPECT(c, a.variance > 0.01 && a.variance < 0.25, "synthetic variance %g", a.variance);
    double mean, var;
    naive_stats(&a, &mean, &var);
    EXPECT(c, test_close(a.variance, var, 1e-12, 0), "synthetic variance %.17g, naive %.17g", a.variance, var);
    dataset_free(&a);
    dataset_free(&b);
    dataset_free(&other);
    dataset_free(&prefix);
}

// One channel, and the speed (synthetic data stands in for datasets in tests and benchmarks).
static void test_synthetic_gray_and_speed(TestCounts *c, int *skipped) {
    // One channel works too.
    Dataset gray;
    dataset_make_synthetic(3, 2, 1, 28, &gray);
    EXPECT(c, gray.channels == 1 && gray.height == 28 && gray.variance > 0.005, "1-channel synthetic: %d ch, var %g",
           gray.channels, gray.variance);
    dataset_free(&gray);

    // Cheap: thousands of images well under a second (the bound is loose for valgrind).
    double t0 = wall_time_seconds();
    Dataset big;
    dataset_make_synthetic(1, 4096, 3, 32, &big);
    double seconds = wall_time_seconds() - t0;
    printf("synthetic: 4096 images of 3x32x32 in %.3f s\n", seconds);
    // Natively ~0.1-0.2 s; the bound leaves room for sanitizers and a loaded machine. Under valgrind
    // (which preloads its vgpreload_*.so) everything is ~100x slower: no bound there.
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload"))
        TEST_SKIP(skipped, "synthetic: the speed bound (running under valgrind, ~100x slower)");
    else
        EXPECT(c, seconds < 2.0, "4096 synthetic images took %.2f s, expected well under a second", seconds);
    dataset_free(&big);
}

// dataset_load: train and test from different index ranges, the test set 1/8 of the training set
// (at least 64).
static void test_synthetic_load(TestCounts *c) {
    size_t image = 3 * 32 * 32;
    Config cfg;
    config_for(&cfg, "synthetic", "/nonexistent");
    Dataset train, test;
    char err[1024] = "";
    int rc = dataset_load(&cfg, &train, &test, err, sizeof err);
    EXPECT(c, rc == 0, "synthetic dataset_load: %s", err);
    if (rc != 0) return;
    EXPECT(c, train.count == 512 && test.count == 64, "synthetic counts %lld / %lld, expected 512 / 64",
           (long long)train.count, (long long)test.count);
    int shared = 0;
    for (int64_t i = 0; i < test.count; i++)
        for (int64_t j = 0; j < train.count; j++)
            shared += memcmp(test.pixels + i * image, train.pixels + j * image, image) == 0;
    EXPECT(c, shared == 0, "%d test images also appear in the training set", shared);
    dataset_free(&train);
    dataset_free(&test);
    cfg.synthetic_count = 1600;
    rc = dataset_load(&cfg, &train, &test, err, sizeof err);
    EXPECT(c, rc == 0 && test.count == 200, "synthetic test count %lld for 1600 training images, expected 200",
           (long long)test.count);
    if (rc == 0) {
        dataset_free(&train);
        dataset_free(&test);
    }
}

int main(void) {
    TestCounts c = {0, 0};
    int skipped = 0;
    test_synthetic_images(&c);
    test_synthetic_gray_and_speed(&c, &skipped);
    test_synthetic_load(&c);
    return test_finish_skipped("test_io_synthetic", &c, skipped);
}
