// dataset.c: see dataset.h. Loaders return -1 with a message that names the file, what was
// expected, what was found and what to do; they never exit. Images stay uint8 in memory and are
// scaled to float per batch.
#include "dataset.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "../core/common.h"
#include "../core/rng.h"

enum {
    PATH_BUF = 4096,
    IDX_IMAGES_MAGIC = 0x00000803,  // unsigned byte data, 3 dimensions (count, rows, cols)
    IDX_LABELS_MAGIC = 0x00000801,  // unsigned byte data, 1 dimension (count)
    IDX_MAX_SIDE = 1 << 16,         // larger image sides mean a corrupt header, not a dataset
    CIFAR_SIDE = 32,
    CIFAR_PIXELS = 3 * CIFAR_SIDE * CIFAR_SIDE,
    CIFAR_RECORD = 1 + CIFAR_PIXELS,  // label byte, then R, G, B planes of 32x32
    CIFAR_CLASSES = 10,
    GZ_CHUNK = 1 << 30,             // gzread takes an unsigned count: read big files in pieces
};

// Synthetic test images come from an index range far from the training images', so the two
// sets never share an image whatever data.synthetic_count is.
static const uint64_t SYNTHETIC_TEST_FIRST_INDEX = (uint64_t)1 << 40;
// More data than any host holds means a corrupt header; also keeps the size product in int64.
static const int64_t IDX_MAX_BYTES = (int64_t)1 << 40;
// The first piece of an IDX file's data is read into a buffer of at most this size (the whole of
// Fashion-MNIST's training images); the buffer grows only while the file keeps delivering.
static const int64_t IDX_FIRST_READ = (int64_t)64 << 20;

static const char FASHION_MNIST_FIX[] =
    "install it with `apt-get install dataset-fashion-mnist` (it puts the files in "
    "/usr/share/datasets/fashion-mnist) or set data.path to a folder holding train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz";
static const char MNIST_FIX[] =
    "Debian has no MNIST package (its dataset-fashion-mnist is data.dataset=fashion_mnist): download the four "
    "MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz) into /usr/share/datasets/mnist (where data.path=auto looks) or into a folder you "
    "name with data.path";
static const char CIFAR10_FIX[] =
    "download the binary version of CIFAR-10 (cifar-10-binary.tar.gz from "
    "https://www.cs.toronto.edu/~kriz/cifar.html; Debian has no package for it), extract it and set data.path to "
    "its cifar-10-batches-bin folder";

// ---- statistics ----------------------------------------------------------------------------

// A byte's value in double, for the statistics. centered keeps the exact expression it always had
// (the resnet's stored variances stay bit-identical).
static double range_value(DataRange range, int v) {
    if (range == RANGE_UNIT) return (double)v / 255.0;
    if (range == RANGE_SYMMETRIC) return (double)v / 255.0 * 2.0 - 1.0;
    return (double)v / 255.0 - 0.5;
}

// Mean and variance of the scaled pixels over all pixels, from a histogram of the 256 byte values:
// exact counts, then 256 terms in double, so the result does not depend on summation order.
static void compute_stats(Dataset *ds) {
    int64_t hist[256] = {0};
    size_t n = (size_t)ds->count * (size_t)ds->channels * (size_t)ds->height * (size_t)ds->width;
    for (size_t i = 0; i < n; i++) hist[ds->pixels[i]]++;
    double total = (double)n, mean = 0.0, var = 0.0;
    for (int v = 0; v < 256; v++) mean += (double)hist[v] * range_value(ds->range, v);
    mean /= total;
    for (int v = 0; v < 256; v++) {
        double d = range_value(ds->range, v) - mean;
        var += (double)hist[v] * d * d;
    }
    ds->mean = mean;
    ds->variance = var / total;  // population variance, like np.var in the reference notebook
}

DataRange dataset_range_of(const Config *cfg) {
    const char *r = cfg->data_range;
    if (strcmp(r, "auto") == 0)
        return strcmp(cfg->arch, "small") == 0 ? RANGE_UNIT : strcmp(cfg->arch, "groupnorm") == 0 ? RANGE_SYMMETRIC
                                                                                                  : RANGE_CENTERED;
    return strcmp(r, "unit") == 0 ? RANGE_UNIT : strcmp(r, "symmetric") == 0 ? RANGE_SYMMETRIC : RANGE_CENTERED;
}

const char *dataset_range_name(DataRange range) {
    return range == RANGE_UNIT ? "unit" : range == RANGE_SYMMETRIC ? "symmetric" : "centered";
}

void dataset_set_range(Dataset *ds, DataRange range) {
    ds->range = range;
    compute_stats(ds);
}

// ---- IDX -----------------------------------------------------------------------------------

// Read up to n bytes; returns the count read (less than n only at the end of the data), or -1
// with err set when zlib reports a corrupt or truncated gzip stream or a read error.
static int64_t gz_read_bytes(gzFile f, const char *path, uint8_t *dst, int64_t n, char *err, size_t err_len) {
    int64_t got = 0;
    while (got < n) {
        int64_t want = n - got < GZ_CHUNK ? n - got : GZ_CHUNK;
        int r = gzread(f, dst + got, (unsigned)want);
        if (r <= 0) break;
        got += r;
        if (r < want) break;
    }
    int errnum = Z_OK;
    const char *msg = gzerror(f, &errnum);
    size_t path_len = strlen(path);  // zlib prefixes its message with the path, which we print already
    if (strncmp(msg, path, path_len) == 0 && strncmp(msg + path_len, ": ", 2) == 0) msg += path_len + 2;
    if (errnum == Z_BUF_ERROR)
        return set_error(err, err_len, "'%s': the gzip stream ends early (zlib: %s): the file is truncated; "
                         "download it again", path, msg);
    if (errnum == Z_ERRNO)
        return set_error(err, err_len, "cannot read '%s': %s", path, strerror(errno));
    if (errnum != Z_OK)
        return set_error(err, err_len, "'%s': the gzip data is corrupt (zlib: %s); download the file again",
                         path, msg);
    return got;
}

static uint32_t read_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

// Reads up to the n bytes a header declares into *data (malloc'd), growing the buffer as they
// arrive: a corrupt header that declares far more than the file holds costs a short read, not a
// huge allocation. Returns the bytes read (< n: the file ended early), or -1 with err.
static int64_t read_declared(gzFile f, const char *path, int64_t n, const char *shape, uint8_t **data, char *err,
                             size_t err_len) {
    int64_t cap = n < IDX_FIRST_READ ? n : IDX_FIRST_READ, got = 0;
    uint8_t *buf = NULL;
    for (;;) {
        uint8_t *grown = realloc(buf, (size_t)cap);
        if (!grown) {
            free(buf);
            set_error(err, err_len, "cannot allocate %lld bytes for '%s' (%s)", (long long)cap, path, shape);
            return -1;
        }
        buf = grown;
        int64_t r = gz_read_bytes(f, path, buf + got, cap - got, err, err_len);
        if (r < 0) {
            free(buf);
            return -1;
        }
        got += r;
        if (got < cap || cap == n) break;   // the file ended, or every declared byte is here
        cap = cap <= n / 2 ? 2 * cap : n;
    }
    *data = buf;
    return got;
}

// Anything after the declared data means the header and the file disagree: count it all, so the
// message says how much there is (and reading to the end also verifies the gzip CRC).
static int check_no_trailing(gzFile f, const char *path, int64_t n, int header_bytes, const char *shape,
                             const char *kind, char *err, size_t err_len) {
    int64_t extra = 0;
    for (;;) {
        uint8_t scratch[1 << 14];
        int64_t r = gz_read_bytes(f, path, scratch, (int64_t)sizeof scratch, err, err_len);
        if (r < 0) return -1;
        extra += r;
        if (r < (int64_t)sizeof scratch) break;
    }
    if (extra == 0) return 0;
    return set_error(err, err_len, "'%s' has %lld trailing bytes: expected %lld bytes after the %d-byte header (%s), "
                     "found %lld; the header does not describe this file (corrupt, or not an IDX %s file)", path,
                     (long long)extra, (long long)n, header_bytes, shape, (long long)(n + extra), kind);
}

// Read an IDX file of unsigned bytes with ndims (1 or 3) dimensions, plain or gzip (gzread reads
// both). Checks the magic, that every dimension is positive and that exactly the declared number
// of data bytes follows the header. On success *data is malloc'd and dims[0..ndims) are filled.
static int read_idx(const char *path, int ndims, int64_t dims[3], uint8_t **data, char *err, size_t err_len) {
    const char *kind = ndims == 3 ? "image" : "label";
    const char *example = ndims == 3 ? "train-images-idx3-ubyte.gz" : "train-labels-idx1-ubyte.gz";
    uint32_t want_magic = ndims == 3 ? IDX_IMAGES_MAGIC : IDX_LABELS_MAGIC;
    uint32_t other_magic = ndims == 3 ? IDX_LABELS_MAGIC : IDX_IMAGES_MAGIC;
    int header_bytes = 4 + 4 * ndims;
    *data = NULL;

    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return set_error(err, err_len, "cannot open IDX %s file '%s': %s", kind, path,
                         errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1 << 20);

    uint8_t header[16];
    int64_t got = gz_read_bytes(f, path, header, header_bytes, err, err_len);
    if (got < 0) goto fail;
    if (got < 4 || read_be32(header) != want_magic) {
        uint32_t found = got >= 4 ? read_be32(header) : 0;
        if (got < 4)
            set_error(err, err_len, "'%s' holds only %lld bytes: too short for an IDX %s file (expected the magic "
                      "0x%08x, e.g. %s)", path, (long long)got, kind, want_magic, example);
        else if (found == other_magic)
            set_error(err, err_len, "'%s' starts with the IDX %s magic 0x%08x, expected the IDX %s magic 0x%08x: "
                      "the images and labels files are swapped", path, ndims == 3 ? "label" : "image", found,
                      kind, want_magic);
        else
            set_error(err, err_len, "'%s' starts with 0x%08x, expected the IDX %s magic 0x%08x (unsigned bytes, "
                      "%d dimension%s): it is not an IDX %s file like %s (plain or gzip)", path, found, kind,
                      want_magic, ndims, ndims == 1 ? "" : "s", kind, example);
        goto fail;
    }
    if (got < header_bytes) {
        set_error(err, err_len, "'%s' is truncated: expected a %d-byte IDX header, found %lld bytes; download the "
                  "file again", path, header_bytes, (long long)got);
        goto fail;
    }

    int64_t n = 1;
    for (int d = 0; d < ndims; d++) {
        dims[d] = read_be32(header + 4 + 4 * d);
        if (dims[d] == 0) {
            set_error(err, err_len, "'%s': dimension %d of %d in the IDX header is 0, expected every dimension "
                      "> 0; the file is corrupt", path, d + 1, ndims);
            goto fail;
        }
        if (d > 0 && dims[d] > IDX_MAX_SIDE) {
            set_error(err, err_len, "'%s': the IDX header declares images of %lld x %lld pixels, expected sides of "
                      "at most %d; the file is corrupt", path, (long long)dims[1], (long long)dims[2], IDX_MAX_SIDE);
            goto fail;
        }
        if (dims[d] > IDX_MAX_BYTES / n) {
            set_error(err, err_len, "'%s': the IDX header declares more than %lld bytes of data; the file is "
                      "corrupt", path, (long long)IDX_MAX_BYTES);
            goto fail;
        }
        n *= dims[d];
    }
    char shape[96];
    if (ndims == 3)
        snprintf(shape, sizeof shape, "%lld images of %lldx%lld", (long long)dims[0], (long long)dims[1],
                 (long long)dims[2]);
    else
        snprintf(shape, sizeof shape, "%lld labels", (long long)dims[0]);

    got = read_declared(f, path, n, shape, data, err, err_len);
    if (got < 0) goto fail;
    if (got < n) {
        set_error(err, err_len, "'%s' is truncated: expected %lld bytes after the %d-byte header (%s), found %lld; "
                  "download the file again", path, (long long)n, header_bytes, shape, (long long)got);
        goto fail;
    }
    if (check_no_trailing(f, path, n, header_bytes, shape, kind, err, err_len) != 0) goto fail;
    gzclose(f);
    return 0;

fail:
    free(*data);
    *data = NULL;
    gzclose(f);
    return -1;
}

int dataset_load_idx(const char *images_path, const char *labels_path, Dataset *out, char *err, size_t err_len) {
    memset(out, 0, sizeof *out);
    int64_t dims[3] = {0, 0, 0};
    uint8_t *pixels = NULL;
    if (read_idx(images_path, 3, dims, &pixels, err, err_len) != 0) return -1;
    out->count = dims[0];
    out->channels = 1;
    out->height = (int)dims[1];
    out->width = (int)dims[2];
    out->pixels = pixels;
    if (labels_path) {
        int64_t label_dims[3] = {0, 0, 0};
        if (read_idx(labels_path, 1, label_dims, &out->labels, err, err_len) != 0) {
            dataset_free(out);
            return -1;
        }
        if (label_dims[0] != out->count) {
            set_error(err, err_len, "'%s' holds %lld labels but '%s' holds %lld images, expected one label per "
                      "image: use the labels file of the same set (train-* with train-*, t10k-* with t10k-*)",
                      labels_path, (long long)label_dims[0], images_path, (long long)out->count);
            dataset_free(out);
            return -1;
        }
    }
    compute_stats(out);
    copy_string(out->source, sizeof out->source, images_path);
    return 0;
}

// ---- CIFAR-10 binary -----------------------------------------------------------------------

int dataset_load_cifar10(const char *const *paths, int path_count, Dataset *out, char *err, size_t err_len) {
    memset(out, 0, sizeof *out);
    if (path_count <= 0) return set_error(err, err_len, "no CIFAR-10 files given; %s", CIFAR10_FIX);
    // Sizes first, so that a bad file is reported before gigabytes are read.
    int64_t *records = xmalloc((size_t)path_count * sizeof(int64_t));
    int64_t total = 0;
    for (int i = 0; i < path_count; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0) {
            set_error(err, err_len, "cannot open CIFAR-10 file '%s': %s; %s", paths[i], strerror(errno), CIFAR10_FIX);
            goto fail;
        }
        if (!S_ISREG(st.st_mode)) {
            set_error(err, err_len, "CIFAR-10 file '%s' is not a regular file; %s", paths[i], CIFAR10_FIX);
            goto fail;
        }
        int64_t size = (int64_t)st.st_size;
        if (size == 0) {
            set_error(err, err_len, "'%s' is empty (0 bytes), expected whole %d-byte CIFAR-10 records; the file is "
                      "truncated (download the 'binary version' again)", paths[i], CIFAR_RECORD);
            goto fail;
        }
        if (size % CIFAR_RECORD != 0) {
            set_error(err, err_len, "'%s' is %lld bytes, not a multiple of the %d-byte CIFAR-10 record; "
                      "the file is truncated or not CIFAR-10 binary (download the 'binary version')", paths[i],
                      (long long)size, CIFAR_RECORD);
            goto fail;
        }
        records[i] = size / CIFAR_RECORD;
        total += records[i];
    }

    out->count = total;
    out->channels = 3;
    out->height = CIFAR_SIDE;
    out->width = CIFAR_SIDE;
    out->pixels = malloc((size_t)total * CIFAR_PIXELS);
    out->labels = malloc((size_t)total);
    if (!out->pixels || !out->labels) {
        set_error(err, err_len, "cannot allocate %lld bytes for %lld CIFAR-10 images",
                  (long long)total * CIFAR_PIXELS, (long long)total);
        goto fail;
    }
    int64_t image = 0;
    for (int i = 0; i < path_count; i++) {
        FILE *f = fopen(paths[i], "rb");
        if (!f) {
            set_error(err, err_len, "cannot open CIFAR-10 file '%s': %s", paths[i], strerror(errno));
            goto fail;
        }
        for (int64_t k = 0; k < records[i]; k++, image++) {
            uint8_t record[CIFAR_RECORD];
            if (fread(record, 1, sizeof record, f) != sizeof record) {
                if (ferror(f))
                    set_error(err, err_len, "cannot read CIFAR-10 file '%s': %s", paths[i], strerror(errno));
                else
                    set_error(err, err_len, "CIFAR-10 file '%s' became shorter while being read: expected %lld "
                              "records, found %lld", paths[i], (long long)records[i], (long long)k);
                fclose(f);
                goto fail;
            }
            if (record[0] >= CIFAR_CLASSES) {
                set_error(err, err_len, "'%s': record %lld has label %d, expected 0..%d: this is not CIFAR-10 binary "
                          "(CIFAR-100 records are 3074 bytes with two label bytes)", paths[i], (long long)k,
                          record[0], CIFAR_CLASSES - 1);
                fclose(f);
                goto fail;
            }
            out->labels[image] = record[0];
            memcpy(out->pixels + (size_t)image * CIFAR_PIXELS, record + 1, CIFAR_PIXELS);
        }
        fclose(f);
    }
    free(records);
    compute_stats(out);
    if (path_count == 1)
        copy_string(out->source, sizeof out->source, paths[0]);
    else
        snprintf(out->source, sizeof out->source, "%s .. %s (%d files)", paths[0], paths[path_count - 1],
                 path_count);
    return 0;

fail:
    free(records);
    dataset_free(out);
    return -1;
}

// ---- synthetic -----------------------------------------------------------------------------

enum { SYNTHETIC_MAX_BLOBS = 4, SYNTHETIC_MAX_CHANNELS = 16 };

// One image: a per-channel base colour with a linear gradient, plus 2-4 Gaussian blobs of random
// centre, width and per-channel colour; smooth, so a small VQ-VAE learns it quickly. All random
// numbers come from the image's own stream, in a fixed order: a pure function of (seed, index).
// work holds (2 * SYNTHETIC_MAX_BLOBS + 1) * size floats.
static void synthetic_image(uint64_t seed, uint64_t index, int channels, int size, uint8_t *dst, float *work) {
    Rng rng = rng_stream(seed, RNG_PURPOSE_SYNTHETIC, index, 0);
    float base[SYNTHETIC_MAX_CHANNELS], grad_x[SYNTHETIC_MAX_CHANNELS], grad_y[SYNTHETIC_MAX_CHANNELS];
    for (int c = 0; c < channels; c++) {
        base[c] = rng_uniform_range(&rng, 0.2f, 0.8f);
        grad_x[c] = rng_uniform_range(&rng, -0.4f, 0.4f);
        grad_y[c] = rng_uniform_range(&rng, -0.4f, 0.4f);
    }
    int blobs = 2 + (int)rng_below(&rng, 3);
    float colour[SYNTHETIC_MAX_BLOBS][SYNTHETIC_MAX_CHANNELS];
    float *coord = work;  // pixel centre in [-0.5, 0.5]
    for (int i = 0; i < size; i++) coord[i] = ((float)i + 0.5f) / (float)size - 0.5f;
    // A Gaussian blob is separable: exp(-r^2 / 2s^2) = gx[x] * gy[y], so each costs 2 x size exps.
    for (int b = 0; b < blobs; b++) {
        float cx = rng_uniform_range(&rng, -0.35f, 0.35f), cy = rng_uniform_range(&rng, -0.35f, 0.35f);
        float sigma = rng_uniform_range(&rng, 0.06f, 0.22f);
        for (int c = 0; c < channels; c++) colour[b][c] = rng_uniform_range(&rng, -0.6f, 0.6f);
        float *gx = work + (1 + 2 * b) * size, *gy = gx + size;
        for (int i = 0; i < size; i++) {
            float dx = (coord[i] - cx) / sigma, dy = (coord[i] - cy) / sigma;
            gx[i] = expf(-0.5f * dx * dx);
            gy[i] = expf(-0.5f * dy * dy);
        }
    }
    for (int c = 0; c < channels; c++) {
        for (int y = 0; y < size; y++) {
            for (int x = 0; x < size; x++) {
                float v = base[c] + grad_x[c] * coord[x] + grad_y[c] * coord[y];
                for (int b = 0; b < blobs; b++) {
                    const float *gx = work + (1 + 2 * b) * size, *gy = gx + size;
                    v += colour[b][c] * gx[x] * gy[y];
                }
                v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                dst[((size_t)c * size + y) * size + x] = (uint8_t)(v * 255.0f + 0.5f);
            }
        }
    }
}

// Images first_index .. first_index + count - 1 of the synthetic stream of seed.
static void make_synthetic_range(uint64_t seed, uint64_t first_index, int64_t count, int channels, int size,
                                 Dataset *out) {
    CHECK(count > 0 && channels > 0 && channels <= SYNTHETIC_MAX_CHANNELS && size > 0,
          "synthetic dataset of %lld images of %dx%dx%d: expected count > 0, 1..%d channels, size > 0",
          (long long)count, channels, size, size, SYNTHETIC_MAX_CHANNELS);
    memset(out, 0, sizeof *out);
    out->count = count;
    out->channels = channels;
    out->height = size;
    out->width = size;
    size_t image_bytes = (size_t)channels * size * size;
    out->pixels = xmalloc((size_t)count * image_bytes);
    float *work = xmalloc((size_t)(2 * SYNTHETIC_MAX_BLOBS + 1) * size * sizeof(float));
    for (int64_t i = 0; i < count; i++)
        synthetic_image(seed, first_index + (uint64_t)i, channels, size, out->pixels + (size_t)i * image_bytes, work);
    free(work);
    compute_stats(out);
    snprintf(out->source, sizeof out->source, "synthetic (seed %llu, images %llu..%llu, %dx%dx%d)",
             (unsigned long long)seed, (unsigned long long)first_index,
             (unsigned long long)(first_index + (uint64_t)count - 1), channels, size, size);
}

void dataset_make_synthetic(uint64_t seed, int64_t count, int channels, int size, Dataset *out) {
    make_synthetic_range(seed, 0, count, channels, size, out);
}

// ---- dataset_load --------------------------------------------------------------------------

static int check_directory(const char *dir, const char *dataset, const char *fix, char *err, size_t err_len) {
    struct stat st;
    if (stat(dir, &st) != 0)
        return set_error(err, err_len, "data.path '%s' for data.dataset %s: %s; %s", dir, dataset, strerror(errno),
                         fix);
    if (!S_ISDIR(st.st_mode))
        return set_error(err, err_len, "data.path '%s' for data.dataset %s is not a directory; %s", dir, dataset,
                         fix);
    return 0;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// Path of dir/name.gz, or else dir/name; -1 with err naming both when neither exists.
static int find_idx_file(const char *dir, const char *name, const char *fix, char *path, char *err,
                         size_t err_len) {
    snprintf(path, PATH_BUF, "%s/%s.gz", dir, name);
    if (file_exists(path)) return 0;
    snprintf(path, PATH_BUF, "%s/%s", dir, name);
    if (file_exists(path)) return 0;
    return set_error(err, err_len, "data.path '%s' holds neither %s.gz nor %s; %s", dir, name, name, fix);
}

static int load_idx_set(const char *dir, const char *prefix, const char *fix, Dataset *out, char *err,
                        size_t err_len) {
    char images[PATH_BUF], labels[PATH_BUF], name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    if (find_idx_file(dir, name, fix, images, err, err_len) != 0) return -1;
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    if (find_idx_file(dir, name, fix, labels, err, err_len) != 0) return -1;
    return dataset_load_idx(images, labels, out, err, err_len);
}

// CIFAR-10's five training batches or its test batch.
static int load_cifar10_split(const char *dir, DatasetSplit split, Dataset *out, char *err, size_t err_len) {
    char paths[6][PATH_BUF];
    for (int i = 0; i < 5; i++) snprintf(paths[i], PATH_BUF, "%s/data_batch_%d.bin", dir, i + 1);
    snprintf(paths[5], PATH_BUF, "%s/test_batch.bin", dir);
    int first = split == SPLIT_TRAIN ? 0 : 5, count = split == SPLIT_TRAIN ? 5 : 1;
    for (int i = first; i < first + count; i++) {
        if (file_exists(paths[i])) continue;
        // The tarball extracts into cifar-10-batches-bin/: point at it when data.path is its parent.
        char nested[PATH_BUF];
        snprintf(nested, sizeof nested, "%s/cifar-10-batches-bin/data_batch_1.bin", dir);
        if (file_exists(nested))
            return set_error(err, err_len, "data.path '%s' has no %s but holds cifar-10-batches-bin/: set "
                             "data.path=%s/cifar-10-batches-bin", dir, paths[i] + strlen(dir) + 1, dir);
        return set_error(err, err_len, "CIFAR-10 file '%s' does not exist; %s", paths[i], CIFAR10_FIX);
    }
    const char *split_paths[5];
    for (int i = 0; i < count; i++) split_paths[i] = paths[first + i];
    return dataset_load_cifar10(split_paths, count, out, err, err_len);
}

static int load_split_centered(const Config *cfg, DatasetSplit split, Dataset *out, char *err, size_t err_len) {
    memset(out, 0, sizeof *out);
    const char *name = cfg->dataset, *dir = config_data_path(cfg);
    if (strcmp(name, "synthetic") == 0) {
        int count = cfg->synthetic_count, channels = cfg->synthetic_channels, size = cfg->synthetic_size;
        if (count <= 0 || channels <= 0 || channels > SYNTHETIC_MAX_CHANNELS || size <= 0)
            return set_error(err, err_len, "synthetic dataset: data.synthetic_count=%d, data.channels=%d, "
                             "data.image_size=%d; expected a count > 0, 1..%d channels and a size > 0", count,
                             channels, size, SYNTHETIC_MAX_CHANNELS);
        if (split == SPLIT_TRAIN) make_synthetic_range(cfg->seed, 0, count, channels, size, out);
        else make_synthetic_range(cfg->seed, SYNTHETIC_TEST_FIRST_INDEX, count / 8 > 64 ? count / 8 : 64, channels,
                                  size, out);
        return 0;
    }
    if (strcmp(name, "fashion_mnist") == 0 || strcmp(name, "mnist") == 0) {
        const char *fix = strcmp(name, "mnist") == 0 ? MNIST_FIX : FASHION_MNIST_FIX;
        if (check_directory(dir, name, fix, err, err_len) != 0) return -1;
        return load_idx_set(dir, split == SPLIT_TRAIN ? "train" : "t10k", fix, out, err, err_len);
    }
    if (strcmp(name, "cifar10") == 0) {
        if (check_directory(dir, name, CIFAR10_FIX, err, err_len) != 0) return -1;
        return load_cifar10_split(dir, split, out, err, err_len);
    }
    return set_error(err, err_len, "data.dataset '%s' is not one of fashion_mnist, mnist, cifar10, synthetic", name);
}

int dataset_load_split(const Config *cfg, DatasetSplit split, Dataset *out, char *err, size_t err_len) {
    if (load_split_centered(cfg, split, out, err, err_len) != 0) return -1;
    DataRange range = dataset_range_of(cfg);
    if (range != RANGE_CENTERED) dataset_set_range(out, range);
    return 0;
}

int dataset_load(const Config *cfg, Dataset *train, Dataset *test, char *err, size_t err_len) {
    memset(test, 0, sizeof *test);
    if (dataset_load_split(cfg, SPLIT_TRAIN, train, err, err_len) != 0) return -1;
    if (dataset_load_split(cfg, SPLIT_TEST, test, err, err_len) != 0) {
        dataset_free(train);
        return -1;
    }
    if (train->channels != test->channels || train->height != test->height || train->width != test->width) {
        set_error(err, err_len, "the training images (%s: %dx%dx%d) and the test images (%s: %dx%dx%d) differ in "
                  "shape; expected both sets of one dataset", train->source, train->channels, train->height,
                  train->width, test->source, test->channels, test->height, test->width);
        dataset_free(train);
        dataset_free(test);
        return -1;
    }
    return 0;
}

void dataset_shape(const Config *cfg, int *channels, int *height, int *width) {
    if (strcmp(cfg->dataset, "synthetic") == 0) {
        *channels = cfg->synthetic_channels;
        *height = *width = cfg->synthetic_size;
    } else if (strcmp(cfg->dataset, "cifar10") == 0) {
        *channels = 3;
        *height = *width = 32;
    } else {   // the IDX sets
        *channels = 1;
        *height = *width = 28;
    }
}

void dataset_fill_batch(const Dataset *ds, const int64_t *indices, int n, float *out) {
    // Same float ops as torchvision's ToTensor (x / 255) then Normalize(0.5, 1) (x - 0.5), or
    // Normalize(0.5, 0.5) ((x - 0.5) / 0.5), or ToTensor alone.
    float scale[256];
    for (int v = 0; v < 256; v++) {
        float x = (float)v / 255.0f;
        scale[v] = ds->range == RANGE_UNIT ? x : ds->range == RANGE_SYMMETRIC ? (x - 0.5f) / 0.5f : x - 0.5f;
    }
    size_t image = (size_t)ds->channels * ds->height * ds->width;
    for (int i = 0; i < n; i++) {
        CHECK(indices[i] >= 0 && indices[i] < ds->count, "image index %lld outside the dataset of %lld images",
              (long long)indices[i], (long long)ds->count);
        const uint8_t *src = ds->pixels + (size_t)indices[i] * image;
        float *dst = out + (size_t)i * image;
        for (size_t j = 0; j < image; j++) dst[j] = scale[src[j]];
    }
}

void dataset_free(Dataset *ds) {
    free(ds->pixels);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}
