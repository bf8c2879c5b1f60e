// dataset_idx.c: the IDX reader (MNIST, Fashion-MNIST; plain or gzip). Errors as dataset.h says:
// -1 with a message naming the file, what was expected, what was found and what to do.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../core/common.h"
#include "dataset_internal.h"

enum {
    IDX_IMAGES_MAGIC = 0x00000803,  // unsigned byte data, 3 dimensions (count, rows, cols)
    IDX_LABELS_MAGIC = 0x00000801,  // unsigned byte data, 1 dimension (count)
    IDX_MAX_SIDE = 1 << 16,         // larger image sides mean a corrupt header, not a dataset
    GZ_CHUNK = 1 << 30,             // gzread takes an unsigned count: read big files in pieces
};

// More data than any host holds means a corrupt header; also keeps the size product in int64.
static const int64_t IDX_MAX_BYTES = (int64_t)1 << 40;
// The first piece of an IDX file's data is read into a buffer of at most this size (the whole of
// Fashion-MNIST's training images); the buffer grows only while the file keeps delivering.
static const int64_t IDX_FIRST_READ = (int64_t)64 << 20;

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

// Read and check the header of an open IDX file of ndims (1 or 3) dimensions: the magic, every
// dimension positive, image sides and the total size plausible. Fills dims[0..ndims) and returns
// the number of data bytes the header declares, or -1 with err.
static int64_t read_idx_header(gzFile f, const char *path, int ndims, int64_t dims[3], char *err, size_t err_len) {
    const char *kind = ndims == 3 ? "image" : "label";
    const char *example = ndims == 3 ? "train-images-idx3-ubyte.gz" : "train-labels-idx1-ubyte.gz";
    uint32_t want_magic = ndims == 3 ? IDX_IMAGES_MAGIC : IDX_LABELS_MAGIC;
    uint32_t other_magic = ndims == 3 ? IDX_LABELS_MAGIC : IDX_IMAGES_MAGIC;
    int header_bytes = 4 + 4 * ndims;
    uint8_t header[16];
    int64_t got = gz_read_bytes(f, path, header, header_bytes, err, err_len);
    if (got < 0) return -1;
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
        return -1;
    }
    if (got < header_bytes)
        return set_error(err, err_len, "'%s' is truncated: expected a %d-byte IDX header, found %lld bytes; "
                         "download the file again", path, header_bytes, (long long)got);

    int64_t n = 1;
    for (int d = 0; d < ndims; d++) {
        dims[d] = read_be32(header + 4 + 4 * d);
        if (dims[d] == 0)
            return set_error(err, err_len, "'%s': dimension %d of %d in the IDX header is 0, expected every "
                             "dimension > 0; the file is corrupt", path, d + 1, ndims);
        if (d > 0 && dims[d] > IDX_MAX_SIDE)
            return set_error(err, err_len, "'%s': the IDX header declares images of %lld x %lld pixels, expected "
                             "sides of at most %d; the file is corrupt", path, (long long)dims[1], (long long)dims[2],
                             IDX_MAX_SIDE);
        if (dims[d] > IDX_MAX_BYTES / n)
            return set_error(err, err_len, "'%s': the IDX header declares more than %lld bytes of data; the file is "
                             "corrupt", path, (long long)IDX_MAX_BYTES);
        n *= dims[d];
    }
    return n;
}

// Read an IDX file of unsigned bytes with ndims (1 or 3) dimensions, plain or gzip (gzread reads
// both). Checks the magic, that every dimension is positive and that exactly the declared number
// of data bytes follows the header. On success *data is malloc'd and dims[0..ndims) are filled.
static int read_idx(const char *path, int ndims, int64_t dims[3], uint8_t **data, char *err, size_t err_len) {
    const char *kind = ndims == 3 ? "image" : "label";
    int header_bytes = 4 + 4 * ndims;
    *data = NULL;

    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return set_error(err, err_len, "cannot open IDX %s file '%s': %s", kind, path,
                         errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1 << 20);

    int64_t n = read_idx_header(f, path, ndims, dims, err, err_len);
    if (n < 0) goto fail;
    char shape[96];
    if (ndims == 3)
        snprintf(shape, sizeof shape, "%lld images of %lldx%lld", (long long)dims[0], (long long)dims[1],
                 (long long)dims[2]);
    else
        snprintf(shape, sizeof shape, "%lld labels", (long long)dims[0]);

    int64_t got = read_declared(f, path, n, shape, data, err, err_len);
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
    dataset_compute_stats(out);
    copy_string(out->source, sizeof out->source, images_path);
    return 0;
}

// Path of dir/name.gz, or else dir/name; -1 with err naming both when neither exists.
static int find_idx_file(const char *dir, const char *name, const char *fix, char *path, char *err,
                         size_t err_len) {
    snprintf(path, DATASET_PATH_MAX, "%s/%s.gz", dir, name);
    if (dataset_file_exists(path)) return 0;
    snprintf(path, DATASET_PATH_MAX, "%s/%s", dir, name);
    if (dataset_file_exists(path)) return 0;
    return set_error(err, err_len, "data.path '%s' holds neither %s.gz nor %s; %s", dir, name, name, fix);
}

int dataset_load_idx_dir(const char *dir, const char *prefix, const char *fix, Dataset *out, char *err,
                         size_t err_len) {
    char images[DATASET_PATH_MAX], labels[DATASET_PATH_MAX], name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    if (find_idx_file(dir, name, fix, images, err, err_len) != 0) return -1;
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    if (find_idx_file(dir, name, fix, labels, err, err_len) != 0) return -1;
    return dataset_load_idx(images, labels, out, err, err_len);
}
