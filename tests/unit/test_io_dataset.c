// test_io_dataset.c: IDX (plain and gzip) and CIFAR-10 files written here and read back exactly;
// mean/variance against a naive loop; batch scaling; a table of bad files, each with the text its
// error must contain; and the real Fashion-MNIST when it is installed. (Synthetic data:
// test_io_synthetic.c; PNG grids: test_io_png.c.)
#include "dataset_fixture.h"

// ---- round trips ----------------------------------------------------------------------------

static void test_idx_round_trip(TestCounts *c, const char *dir) {
    const uint32_t dims[3] = {5, 7, 6};  // rows != cols, to catch a swap
    const uint32_t label_dims[1] = {5};
    for (int gzip = 0; gzip <= 1; gzip++) {
        char images[512], labels[512], err[1024] = "";
        snprintf(images, sizeof images, "%s/rt-images%s", dir, gzip ? ".gz" : "");
        snprintf(labels, sizeof labels, "%s/rt-labels%s", dir, gzip ? ".gz" : "");
        EXPECT(c, write_idx(images, gzip, 0x803, 3, dims, 5 * 7 * 6, 11) == 0, "write %s", images);
        EXPECT(c, write_idx(labels, gzip, 0x801, 1, label_dims, 5, 22) == 0, "write %s", labels);
        Dataset ds;
        int rc = dataset_load_idx(images, labels, &ds, err, sizeof err);
        EXPECT(c, rc == 0, "gzip=%d: load failed: %s", gzip, err);
        if (rc != 0) continue;
        EXPECT(c, ds.count == 5 && ds.channels == 1 && ds.height == 7 && ds.width == 6,
               "gzip=%d: shape %lld x %d x %d x %d, expected 5 x 1 x 7 x 6", gzip, (long long)ds.count, ds.channels,
               ds.height, ds.width);
        int pixels_ok = 1, labels_ok = ds.labels != NULL;
        for (size_t i = 0; i < 5 * 7 * 6; i++) pixels_ok &= ds.pixels[i] == pattern_byte(i, 11);
        for (size_t i = 0; labels_ok && i < 5; i++) labels_ok &= ds.labels[i] == pattern_byte(i, 22);
        EXPECT(c, pixels_ok, "gzip=%d: pixels differ from what was written", gzip);
        EXPECT(c, labels_ok, "gzip=%d: labels differ from what was written", gzip);
        double mean, var;
        naive_stats(&ds, &mean, &var);
        EXPECT(c, test_close(ds.mean, mean, 1e-12, 1e-15), "gzip=%d: mean %.17g, naive %.17g", gzip, ds.mean, mean);
        EXPECT(c, test_close(ds.variance, var, 1e-12, 0), "gzip=%d: variance %.17g, naive %.17g", gzip,
               ds.variance, var);
        EXPECT(c, strcmp(ds.source, images) == 0, "source '%s', expected '%s'", ds.source, images);
        dataset_free(&ds);
        EXPECT(c, ds.pixels == NULL && ds.labels == NULL && ds.count == 0, "dataset_free left pointers");

        // Without a labels file: images only.
        rc = dataset_load_idx(images, NULL, &ds, err, sizeof err);
        EXPECT(c, rc == 0 && ds.labels == NULL && ds.count == 5, "gzip=%d: images-only load: rc %d: %s", gzip, rc,
               err);
        if (rc == 0) dataset_free(&ds);
    }
}

static void test_cifar_round_trip(TestCounts *c, const char *dir) {
    char a[512], b[512], err[1024] = "";
    snprintf(a, sizeof a, "%s/cifar_a.bin", dir);
    snprintf(b, sizeof b, "%s/cifar_b.bin", dir);
    EXPECT(c, write_cifar(a, 3, 5, 0) == 0 && write_cifar(b, 2, 9, 0) == 0, "write CIFAR files");
    const char *paths[2] = {a, b};
    Dataset ds;
    int rc = dataset_load_cifar10(paths, 2, &ds, err, sizeof err);
    EXPECT(c, rc == 0, "CIFAR load failed: %s", err);
    if (rc != 0) return;
    EXPECT(c, ds.count == 5 && ds.channels == 3 && ds.height == 32 && ds.width == 32, "CIFAR shape %lld x %d x %d x %d",
           (long long)ds.count, ds.channels, ds.height, ds.width);
    int pixels_ok = 1, labels_ok = ds.labels != NULL;
    for (int i = 0; i < 5; i++) {
        int file_record = i < 3 ? i : i - 3;
        uint32_t seed = i < 3 ? 5 : 9;
        size_t base = (size_t)file_record * 3073;
        if (labels_ok) labels_ok &= ds.labels[i] == (file_record * 3 + seed) % 10;
        for (size_t j = 0; j < 3072; j++) pixels_ok &= ds.pixels[(size_t)i * 3072 + j] == pattern_byte(base + 1 + j, seed);
    }
    EXPECT(c, pixels_ok, "CIFAR pixels differ from the records written (CHW after the label byte)");
    EXPECT(c, labels_ok, "CIFAR labels differ from the records written");
    double mean, var;
    naive_stats(&ds, &mean, &var);
    EXPECT(c, test_close(ds.variance, var, 1e-12, 0), "CIFAR variance %.17g, naive %.17g", ds.variance, var);
    EXPECT(c, test_close(ds.mean, mean, 1e-12, 1e-15), "CIFAR mean %.17g, naive %.17g", ds.mean, mean);
    dataset_free(&ds);

    // dataset_load finds data_batch_1..5.bin and test_batch.bin in data.path.
    char cdir[512], path[600];
    snprintf(cdir, sizeof cdir, "%s/cifar", dir);
    mkdir(cdir, 0700);
    for (int i = 1; i <= 5; i++) {
        snprintf(path, sizeof path, "%s/data_batch_%d.bin", cdir, i);
        write_cifar(path, i, (uint32_t)i, 0);
    }
    snprintf(path, sizeof path, "%s/test_batch.bin", cdir);
    write_cifar(path, 4, 77, 0);
    Config cfg;
    config_for(&cfg, "cifar10", cdir);
    Dataset train, test;
    rc = dataset_load(&cfg, &train, &test, err, sizeof err);
    EXPECT(c, rc == 0, "dataset_load cifar10: %s", err);
    if (rc != 0) return;
    EXPECT(c, train.count == 1 + 2 + 3 + 4 + 5 && test.count == 4, "cifar10 counts %lld / %lld, expected 15 / 4",
           (long long)train.count, (long long)test.count);
    // Files in order data_batch_1..5: batch f holds f records labelled (r * 3 + f) % 10.
    int order_ok = 1;
    int64_t k = 0;
    for (int f = 1; f <= 5; f++)
        for (int r = 0; r < f; r++, k++) order_ok &= train.labels[k] == (r * 3 + f) % 10;
    EXPECT(c, order_ok, "cifar10 training labels are not data_batch_1..5 in order");
    EXPECT(c, test.labels[0] == 7 && test.labels[3] == (3 * 3 + 77) % 10, "cifar10 test labels %d %d",
           test.labels[0], test.labels[3]);
    dataset_free(&train);
    dataset_free(&test);
}

static void test_fill_batch(TestCounts *c) {
    uint8_t pixels[3 * 4] = {0, 255, 51, 128, 1, 2, 3, 4, 200, 100, 50, 25};
    Dataset ds = {.count = 3, .channels = 1, .height = 2, .width = 2, .pixels = pixels};
    int64_t indices[3] = {2, 0, 2};
    float out[12];
    dataset_fill_batch(&ds, indices, 3, out);
    int ok = 1;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) {
            float want = (float)pixels[indices[i] * 4 + j] / 255.0f - 0.5f;
            ok &= out[i * 4 + j] == want;
        }
    EXPECT(c, ok, "fill_batch: values differ from x / 255 - 0.5 (out[0] = %g)", out[0]);
    EXPECT(c, out[4] == -0.5f && out[5] == 0.5f, "fill_batch: 0 -> %g and 255 -> %g, expected -0.5 and 0.5", out[4],
           out[5]);
    EXPECT(c, fabsf(out[6] - (0.2f - 0.5f)) < 1e-6f, "fill_batch: 51 -> %g, expected -0.3", out[6]);
}

// ---- bad files: each case writes its files into its own folder and calls a loader --------------

typedef int (*BadCaseFn)(const char *dir, Dataset *ds, char *err, size_t err_len);

static const uint32_t IMG_DIMS[3] = {5, 7, 6}, LABEL_DIMS[1] = {5};
enum { IMG_BYTES = 5 * 7 * 6 };

static int load_pair(const char *dir, Dataset *ds, char *err, size_t err_len) {
    char images[512], labels[512];
    snprintf(images, sizeof images, "%s/images", dir);
    snprintf(labels, sizeof labels, "%s/labels", dir);
    return dataset_load_idx(images, labels, ds, err, err_len);
}

static void idx_path(char *path, const char *dir, const char *name) { snprintf(path, 512, "%s/%s", dir, name); }

static int bad_magic(const char *dir, Dataset *ds, char *err, size_t err_len) {
    char p[512];
    idx_path(p, dir, "images");
    write_idx(p, 0, 0x802, 3, IMG_DIMS, IMG_BYTES, 1);
    idx_path(p, dir, "labels");
    write_idx(p, 0, 0x801, 1, LABEL_DIMS, 5, 1);
    return load_pair(dir, ds, err, err_len);
}

static int swapped_files(const char *dir, Dataset *ds, char *err, size_t err_len) {
    char p[512];
    idx_path(p, dir, "images");
    write_idx(p, 0, 0x801, 1, LABEL_DIMS, 5, 1);
    idx_path(p, dir, "labels");
    write_idx(p, 0, 0x803, 3, IMG_DIMS, IMG_BYTES, 1);
    return load_pair(dir, ds, err, err_len);
}

static int truncated_images(const char *dir, Dataset *ds, char *err, size_t err_len) {
    char p[512];
    idx_path(p, dir, "images");
    write_idx(p, 0, 0x803, 3, IMG_DIMS, 150, 1);
    idx_path(p, dir, "labels");
    write_idx(p, 0, 0x801, 1, LABEL_DIMS, 5, 1);
    return load_pair(dir, ds, err, err_len);
}

static int truncated_images_gz(const char *dir, Dataset *ds, char *err, size_t err_len) {
    char p[512];
    idx_path(p, dir, "images");
    write_idx(p, 1, 0x803, 3, IMG_DIMS, 150, 1);
    idx_path(p, dir, "labels");
    write_idx(p, 1, 0x801, 1, LABEL_DIMS, 5, 1);
    return load_pair(dir, ds, err, err_len);
}

static int trailing_bytes(const char *dir, Dataset *ds, char *err, size_t err_len) {
    char p[512];
    idx_path(p, dir, "images");
    write_idx(p, 0, 0x803, 3, IMG_DIMS, IMG_BYTES + 7, 1);
    idx_path(p, dir, "labels");
    write_idx(p, 0, 0x801, 1, LABEL_DIMS, 5, 1);
    return load_pair(dir, ds, err, err_len);
}

static int label_count_mismatch(const char *dir, Dataset *ds, char *err, size_t err_len) {
    const uint32_t four[1] = {4};
    char p[512];
    idx_path(p, dir, "images");
    write_idx(p, 0, 0x803, 3, IMG_DIMS, IMG_BYTES, 1);
    idx_path(p, dir, "labels");
    write_idx(p, 0, 0x801, 1, four, 4, 1);
    return load_pair(dir, ds, err, err_len);
}

static int truncated_labels(const char *dir, Dataset *ds, char *err, size_t err_len) {
    char p[512];
    idx_path(p, dir, "images");
    write_idx(p, 0, 0x803, 3, IMG_DIMS, IMG_BYTES, 1);
    idx_path(p, dir, "labels");
    write_idx(p, 0, 0x801, 1, LABEL_DIMS, 3, 1);
    return load_pair(dir, ds, err, err_len);
}

static int zero_dims(const char *dir, Dataset *ds, char *err, size_t err_len) {
    const uint32_t dims[3] = {5, 0, 6};
    char p[512];
    idx_path(p, dir, "images");
    write_idx(p, 0, 0x803, 3, dims, 0, 1);
    return dataset_load_idx(p, NULL, ds, err, err_len);
}

static int short_header(const char *dir, Dataset *ds, char *err, size_t err_len) {
    const uint32_t dims[1] = {5};  // magic + one dimension: 8 of the 16 header bytes
    char p[512];
    idx_path(p, dir, "images");
    write_idx(p, 0, 0x803, 1, dims, 2, 1);
    return dataset_load_idx(p, NULL, ds, err, err_len);
}

static int empty_idx(const char *dir, Dataset *ds, char *err, size_t err_len) {
    char p[512];
    idx_path(p, dir, "images");
    write_bytes(p, "", 0, 0);
    return dataset_load_idx(p, NULL, ds, err, err_len);
}

static int missing_idx(const char *dir, Dataset *ds, char *err, size_t err_len) {
    char p[512];
    idx_path(p, dir, "no-such-images");
    return dataset_load_idx(p, NULL, ds, err, err_len);
}

// A gzip file with 16 bytes in the middle of the compressed data overwritten, or cut in half.
static int damaged_gz(const char *dir, Dataset *ds, char *err, size_t err_len, int truncate) {
    const uint32_t dims[3] = {40, 28, 28};
    char p[512];
    idx_path(p, dir, "images");
    write_idx(p, 1, 0x803, 3, dims, 40 * 28 * 28, 3);
    size_t n = 0;
    uint8_t *bytes = read_bytes(p, &n);
    if (truncate) {
        n /= 2;
    } else {
        for (size_t i = n / 2; i < n / 2 + 16 && i < n; i++) bytes[i] ^= 0x5a;
    }
    write_bytes(p, bytes, n, 0);
    free(bytes);
    return dataset_load_idx(p, NULL, ds, err, err_len);
}

static int corrupt_gz(const char *dir, Dataset *ds, char *err, size_t err_len) {
    return damaged_gz(dir, ds, err, err_len, 0);
}

static int truncated_gz(const char *dir, Dataset *ds, char *err, size_t err_len) {
    return damaged_gz(dir, ds, err, err_len, 1);
}

static int cifar_file(const char *dir, int records, size_t extra, uint8_t bad_label, Dataset *ds, char *err,
                      size_t err_len) {
    char p[512];
    idx_path(p, dir, "data_batch_3.bin");
    write_cifar(p, records, 1, extra);
    if (bad_label) {
        size_t n = 0;
        uint8_t *bytes = read_bytes(p, &n);
        bytes[3073] = bad_label;  // label of record 1
        write_bytes(p, bytes, n, 0);
        free(bytes);
    }
    const char *paths[1] = {p};
    return dataset_load_cifar10(paths, 1, ds, err, err_len);
}

static int cifar_not_multiple(const char *dir, Dataset *ds, char *err, size_t err_len) {
    return cifar_file(dir, 2, 100, 0, ds, err, err_len);
}

static int cifar_empty(const char *dir, Dataset *ds, char *err, size_t err_len) {
    return cifar_file(dir, 0, 0, 0, ds, err, err_len);
}

static int cifar_bad_label(const char *dir, Dataset *ds, char *err, size_t err_len) {
    return cifar_file(dir, 3, 0, 57, ds, err, err_len);
}

static int cifar_missing_file(const char *dir, Dataset *ds, char *err, size_t err_len) {
    char p[512];
    idx_path(p, dir, "data_batch_1.bin");
    const char *paths[1] = {p};
    return dataset_load_cifar10(paths, 1, ds, err, err_len);
}

static int load_config(const char *dataset, const char *path, Dataset *ds, char *err, size_t err_len) {
    Config cfg;
    config_for(&cfg, dataset, path);
    Dataset test;
    int rc = dataset_load(&cfg, ds, &test, err, err_len);
    if (rc == 0) dataset_free(&test);
    return rc;
}

static int fashion_missing_dir(const char *dir, Dataset *ds, char *err, size_t err_len) {
    char p[512];
    idx_path(p, dir, "no-such-folder");
    return load_config("fashion_mnist", p, ds, err, err_len);
}

static int fashion_missing_file(const char *dir, Dataset *ds, char *err, size_t err_len) {
    char p[512];
    idx_path(p, dir, "train-labels-idx1-ubyte.gz");  // labels only: the images are missing
    write_idx(p, 1, 0x801, 1, LABEL_DIMS, 5, 1);
    return load_config("fashion_mnist", dir, ds, err, err_len);
}

static int fashion_missing_test_set(const char *dir, Dataset *ds, char *err, size_t err_len) {
    char p[512];
    idx_path(p, dir, "train-images-idx3-ubyte");  // plain names are found too
    write_idx(p, 0, 0x803, 3, IMG_DIMS, IMG_BYTES, 1);
    idx_path(p, dir, "train-labels-idx1-ubyte.gz");
    write_idx(p, 1, 0x801, 1, LABEL_DIMS, 5, 1);
    return load_config("fashion_mnist", dir, ds, err, err_len);
}

static int cifar_missing_dir(const char *dir, Dataset *ds, char *err, size_t err_len) {
    char p[512];
    idx_path(p, dir, "no-such-folder");
    return load_config("cifar10", p, ds, err, err_len);
}

static int cifar_nested_dir(const char *dir, Dataset *ds, char *err, size_t err_len) {
    char p[512];
    idx_path(p, dir, "cifar-10-batches-bin");
    mkdir(p, 0700);
    idx_path(p, dir, "cifar-10-batches-bin/data_batch_1.bin");
    write_cifar(p, 1, 1, 0);
    return load_config("cifar10", dir, ds, err, err_len);
}

static int unknown_dataset(const char *dir, Dataset *ds, char *err, size_t err_len) {
    return load_config("imagenet", dir, ds, err, err_len);
}

typedef struct {
    const char *what;
    BadCaseFn run;
    const char *want[2];  // substrings the error must contain (NULL = none)
    int names_dir;        // the error must name the file or folder (it lies under the test folder)
} BadCase;

static const BadCase BAD_CASES[] = {
    {"wrong image magic", bad_magic, {"0x00000802", "expected the IDX image magic 0x00000803"}, 1},
    {"images and labels swapped", swapped_files, {"swapped", "0x00000801"}, 1},
    {"truncated images", truncated_images, {"expected 210 bytes", "found 150"}, 1},
    {"truncated images, gzip", truncated_images_gz, {"expected 210 bytes", "found 150"}, 1},
    {"trailing bytes", trailing_bytes, {"7 trailing bytes", "found 217"}, 1},
    {"label count mismatch", label_count_mismatch, {"holds 4 labels", "holds 5 images"}, 1},
    {"truncated labels", truncated_labels, {"expected 5 bytes", "found 3"}, 1},
    {"zero dimension", zero_dims, {"dimension 2 of 3", "is 0"}, 1},
    {"header too short", short_header, {"expected a 16-byte IDX header", "found 10 bytes"}, 1},
    {"empty IDX file", empty_idx, {"holds only 0 bytes", "IDX image"}, 1},
    {"missing IDX file", missing_idx, {"cannot open IDX image file", "No such file"}, 1},
    {"corrupt gzip", corrupt_gz, {"gzip data is corrupt", "download the file again"}, 1},
    {"truncated gzip", truncated_gz, {"gzip stream ends early", "truncated"}, 1},
    {"CIFAR size not a multiple", cifar_not_multiple, {"is 6246 bytes", "not a multiple of the 3073-byte CIFAR-10 record"}, 1},
    {"CIFAR empty file", cifar_empty, {"empty (0 bytes)", "3073-byte"}, 1},
    {"CIFAR label out of range", cifar_bad_label, {"record 1 has label 57", "expected 0..9"}, 1},
    {"CIFAR missing file", cifar_missing_file, {"cannot open CIFAR-10 file", "binary version"}, 1},
    {"fashion_mnist missing folder", fashion_missing_dir, {"apt-get install dataset-fashion-mnist", "no-such-folder"}, 1},
    {"fashion_mnist missing images", fashion_missing_file, {"neither train-images-idx3-ubyte.gz nor", "apt-get install"}, 1},
    {"fashion_mnist missing test set", fashion_missing_test_set, {"neither t10k-images-idx3-ubyte.gz nor", "data.path"}, 1},
    {"cifar10 missing folder", cifar_missing_dir, {"binary version", "set data.path"}, 1},
    {"cifar10 folder is the tarball's parent", cifar_nested_dir, {"set data.path=", "cifar-10-batches-bin"}, 1},
    {"unknown dataset", unknown_dataset, {"'imagenet'", "fashion_mnist, mnist, cifar10, synthetic"}, 0},
};

static void test_bad_files(TestCounts *c, const char *dir) {
    int n = (int)(sizeof BAD_CASES / sizeof BAD_CASES[0]);
    for (int i = 0; i < n; i++) {
        const BadCase *bc = &BAD_CASES[i];
        char case_dir[512], err[2048] = "";
        snprintf(case_dir, sizeof case_dir, "%s/bad%02d", dir, i);
        mkdir(case_dir, 0700);
        Dataset ds;
        memset(&ds, 0xab, sizeof ds);
        int rc = bc->run(case_dir, &ds, err, sizeof err);
        EXPECT(c, rc == -1, "%s: loader returned %d, expected -1", bc->what, rc);
        if (rc == 0) dataset_free(&ds);
        EXPECT(c, rc != -1 || (ds.pixels == NULL && ds.labels == NULL), "%s: a failed load left data in the Dataset",
               bc->what);
        for (int k = 0; k < 2; k++)
            if (bc->want[k]) EXPECT(c, strstr(err, bc->want[k]) != NULL, "%s: error lacks '%s': %s", bc->what, bc->want[k], err);
        if (bc->names_dir) EXPECT(c, strstr(err, case_dir) != NULL, "%s: error does not name the file: %s", bc->what, err);
        printf("bad file: %-40s -> %s\n", bc->what, err);
    }
}

// ---- the real Fashion-MNIST, when installed ---------------------------------------------------

static void test_fashion_mnist(TestCounts *c, int *skipped) {
    const char *dir = "/usr/share/datasets/fashion-mnist";
    struct stat st;
    if (stat(dir, &st) != 0) {
        TEST_SKIP(skipped, "the real Fashion-MNIST check: %s is absent (apt-get install dataset-fashion-mnist)", dir);
        return;
    }
    Config cfg;
    config_for(&cfg, "fashion_mnist", dir);
    Dataset train, test;
    char err[1024] = "";
    double t0 = wall_time_seconds();
    int rc = dataset_load(&cfg, &train, &test, err, sizeof err);
    double seconds = wall_time_seconds() - t0;
    EXPECT(c, rc == 0, "Fashion-MNIST: %s", err);
    if (rc != 0) return;
    printf("Fashion-MNIST: %lld + %lld images loaded in %.3f s; mean %.6f variance %.6f (%s)\n",
           (long long)train.count, (long long)test.count, seconds, train.mean, train.variance, train.source);
    EXPECT(c, train.count == 60000 && test.count == 10000, "counts %lld / %lld, expected 60000 / 10000",
           (long long)train.count, (long long)test.count);
    EXPECT(c, train.channels == 1 && train.height == 28 && train.width == 28 && test.height == 28 && test.width == 28,
           "shape %dx%dx%d", train.channels, train.height, train.width);
    // Fashion-MNIST is balanced: 6000 training and 1000 test images per class.
    int64_t per_class[2][10] = {{0}};
    int labels_ok = train.labels && test.labels;
    for (int64_t i = 0; labels_ok && i < train.count; i++) {
        labels_ok &= train.labels[i] <= 9;
        if (labels_ok) per_class[0][train.labels[i]]++;
    }
    for (int64_t i = 0; labels_ok && i < test.count; i++) {
        labels_ok &= test.labels[i] <= 9;
        if (labels_ok) per_class[1][test.labels[i]]++;
    }
    EXPECT(c, labels_ok, "labels outside 0..9");
    int balanced = 1;
    for (int k = 0; k < 10; k++) balanced &= per_class[0][k] == 6000 && per_class[1][k] == 1000;
    EXPECT(c, balanced, "class counts are not 6000 / 1000 (class 0: %lld / %lld)", (long long)per_class[0][0],
           (long long)per_class[1][0]);
    // Known statistics of the training set: mean 0.2860, std 0.3530 of x / 255.
    EXPECT(c, test_close(train.mean, 0.2860 - 0.5, 0, 5e-4), "mean %g, expected about -0.2140", train.mean);
    EXPECT(c, test_close(sqrt(train.variance), 0.3530, 0, 5e-4), "std %g, expected about 0.3530",
           sqrt(train.variance));
    dataset_free(&train);
    dataset_free(&test);
}

int main(void) {
    TestCounts c = {0, 0};
    int skipped = 0;
    char dir[] = "/tmp/test_io_dataset.XXXXXX";
    make_test_dir(dir);
    test_idx_round_trip(&c, dir);
    test_cifar_round_trip(&c, dir);
    test_fill_batch(&c);
    test_bad_files(&c, dir);
    test_fashion_mnist(&c, &skipped);
    remove_test_dir(dir);
    return test_finish_skipped("test_io_dataset", &c, skipped);
}
