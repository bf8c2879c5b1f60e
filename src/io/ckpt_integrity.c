// ckpt_integrity.c: what makes a checkpoint trustworthy: finite values, checksums, and writes
// that never leave a half-written file under the final name.
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <zlib.h>

#include "../core/common.h"
#include "ckpt_internal.h"

// ---- values --------------------------------------------------------------------------------

int ckpt_check_finite(const CkptTensor *tensors, int count, const CkptCtx *cx) {
    for (int i = 0; i < count; i++) {
        const CkptTensor *t = &tensors[i];
        int64_t n = ckpt_tensor_count(t);
        for (int64_t j = 0; j < n; j++)
            if (!isfinite(t->data[j]))
                return set_error(cx->err, cx->err_len, "not writing checkpoint %s: '/%s' is %g at index %lld; the "
                                 "training state has diverged", cx->path, t->name, (double)t->data[j], (long long)j);
    }
    return 0;
}

int ckpt_check_values(const char *full_name, const float *x, int64_t n, int non_negative, const CkptCtx *cx) {
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || (non_negative && x[i] < 0.0f))
            return set_error(cx->err, cx->err_len, "'%s' in %s holds %s value %g at flat index %lld: the training "
                             "state had diverged (or the file is corrupt); use an older checkpoint", full_name,
                             cx->path, isfinite(x[i]) ? "a negative" : "a non-finite", (double)x[i], (long long)i);
    }
    return 0;
}

int ckpt_has_fletcher32(hid_t dcpl) {
    int nfilters = H5Pget_nfilters(dcpl);
    for (int i = 0; i < nfilters; i++) {
        unsigned flags, config;
        size_t nelem = 0;
        if (H5Pget_filter2(dcpl, (unsigned)i, &flags, &nelem, NULL, 0, NULL, &config) == H5Z_FILTER_FLETCHER32)
            return 1;
    }
    return 0;
}

// ---- the whole-file checksum ---------------------------------------------------------------

// The header, NUL-padded to the user block: readable with `head -c 512 FILE`.
static void format_header(char *block, uint32_t crc, unsigned long long len) {
    memset(block, 0, CKPT_USERBLOCK);
    snprintf(block, CKPT_USERBLOCK, CKPT_HEADER_MAGIC "crc32 %08x\nbytes %llu\n", (unsigned)crc, len);
}

static uint32_t body_crc(const unsigned char *bytes, size_t len) {
    return (uint32_t)crc32_z(crc32_z(0, Z_NULL, 0), bytes + CKPT_USERBLOCK, len - CKPT_USERBLOCK);
}

void ckpt_seal(unsigned char *image, size_t len) { format_header((char *)image, body_crc(image, len), len); }

// Parses "crc32 XXXXXXXX\nbytes N\n" after the magic; the whole block must then be exactly what
// format_header writes for those values (so any damaged byte of it is seen).
static int parse_header(const unsigned char *block, uint32_t *crc, unsigned long long *len) {
    const char *p = (const char *)block + strlen(CKPT_HEADER_MAGIC);
    if (memcmp(p, "crc32 ", 6) != 0) return -1;
    p += 6;
    uint32_t c = 0;
    for (int i = 0; i < 8; i++, p++) {
        int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
        if (d < 0) return -1;
        c = c << 4 | (uint32_t)d;
    }
    if (memcmp(p, "\nbytes ", 7) != 0) return -1;
    p += 7;
    unsigned long long n = 0;
    for (int digits = 0; *p >= '0' && *p <= '9'; p++, digits++) {
        if (digits >= 19) return -1;
        n = n * 10 + (unsigned long long)(*p - '0');
    }
    char want[CKPT_USERBLOCK];
    format_header(want, c, n);
    if (memcmp(want, block, CKPT_USERBLOCK) != 0) return -1;
    *crc = c;
    *len = n;
    return 0;
}

static int all_zero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

// A file without our header: plain HDF5 (signature at 0), or HDF5 after a user block.
static int verify_unsealed(const unsigned char *bytes, size_t len, const CkptCtx *cx) {
    if (len >= 8 && memcmp(bytes, CKPT_HDF5_SIGNATURE, 8) == 0) return 0;
    for (size_t at = CKPT_USERBLOCK; at + 8 <= len && at <= (1u << 30); at *= 2) {
        if (memcmp(bytes + at, CKPT_HDF5_SIGNATURE, 8) != 0) continue;
        // Our writer puts exactly this user block there: anything else in it is damage.
        if (at == CKPT_USERBLOCK && !all_zero(bytes, CKPT_USERBLOCK))
            return set_error(cx->err, cx->err_len, "the checksum header of checkpoint '%s' (its first %d bytes) is "
                             "damaged: the file is corrupt; use an older checkpoint", cx->path, CKPT_USERBLOCK);
        return 0;
    }
    return set_error(cx->err, cx->err_len, "'%s' is not an HDF5 file (no HDF5 signature), so not a vqvae_dist "
                     "checkpoint", cx->path);
}

int ckpt_verify(const unsigned char *bytes, size_t len, const CkptCtx *cx) {
    size_t magic = strlen(CKPT_HEADER_MAGIC);
    if (len < CKPT_USERBLOCK && memcmp(bytes, CKPT_HEADER_MAGIC, len < magic ? len : magic) == 0)
        return set_error(cx->err, cx->err_len, "checkpoint '%s' is truncated: it has %zu bytes, less than its %d-byte "
                         "header; use an older checkpoint", cx->path, len,
                         CKPT_USERBLOCK);
    if (len < CKPT_USERBLOCK || memcmp(bytes, CKPT_HEADER_MAGIC, magic) != 0) return verify_unsealed(bytes, len, cx);
    uint32_t crc;
    unsigned long long want_len;
    if (parse_header(bytes, &crc, &want_len) != 0)
        return set_error(cx->err, cx->err_len, "the checksum header of checkpoint '%s' (its first %d bytes) is "
                         "damaged: the file is corrupt; use an older checkpoint", cx->path, CKPT_USERBLOCK);
    if (want_len != len)
        return set_error(cx->err, cx->err_len, "checkpoint '%s' is %s: it has %zu bytes, it was written with %llu; "
                         "use an older checkpoint", cx->path,
                         len < want_len ? "truncated" : "corrupt (longer than written)", len, want_len);
    uint32_t got = body_crc(bytes, len);
    if (got != crc)
        return set_error(cx->err, cx->err_len, "checksum mismatch in checkpoint '%s': its bytes have CRC-32 %08x, it "
                         "was written with %08x: the file is corrupt; use an older checkpoint", cx->path, (unsigned)got,
                         (unsigned)crc);
    return 1;
}

// ---- atomic writes -------------------------------------------------------------------------

static void dir_of(const char *path, char *dir, size_t len) {
    copy_string(dir, len, path);
    char *slash = strrchr(dir, '/');
    if (!slash) copy_string(dir, len, ".");
    else if (slash == dir) dir[1] = '\0';   // "/file"
    else *slash = '\0';
}

static int fsync_path(const char *path, int is_dir, char *err, size_t err_len) {
    int fd = open(path, (is_dir ? (O_RDONLY | O_DIRECTORY) : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) return set_error(err, err_len, "cannot open '%s' to fsync it: %s", path, strerror(errno));
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    // Some file systems cannot fsync a folder (EINVAL); the rename is then as durable as it gets.
    if (rc != 0 && !(is_dir && saved == EINVAL))
        return set_error(err, err_len, "fsync of '%s' failed: %s", path, strerror(saved));
    return 0;
}

// tmp is complete, fsync'd and closed: move it over path and make the rename durable.
static int rename_durable(const char *tmp, const char *path, char *err, size_t err_len) {
    if (rename(tmp, path) != 0)
        return set_error(err, err_len, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    char dir[CKPT_PATH_MAX];
    dir_of(path, dir, sizeof dir);
    return fsync_path(dir, 1, err, err_len);
}

// ---- reading and writing whole files ------------------------------------------------------

unsigned char *ckpt_read_file(const CkptCtx *cx, size_t *len_out) {
    *len_out = 0;
    struct stat st;
    int fd = open(cx->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        set_error(cx->err, cx->err_len, "cannot open checkpoint '%s': %s", cx->path, strerror(errno));
        if (fd >= 0) close(fd);
        return NULL;
    }
    if (S_ISDIR(st.st_mode) || st.st_size == 0) {
        if (S_ISDIR(st.st_mode))
            set_error(cx->err, cx->err_len, "checkpoint '%s' is a folder; give a checkpoint file, or the folder with "
                      "--resume auto", cx->path);
        else
            set_error(cx->err, cx->err_len, "checkpoint '%s' is empty (0 bytes): the file is truncated; use an older "
                      "checkpoint", cx->path);
        close(fd);
        return NULL;
    }
    size_t len = (size_t)st.st_size, done = 0;
    unsigned char *buf = xmalloc(len);
    while (done < len) {
        ssize_t r = read(fd, buf + done, len - done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;   // shorter than fstat said: it shrank while we read
        done += (size_t)r;
    }
    int saved = errno;
    close(fd);
    if (done < len) {
        set_error(cx->err, cx->err_len, "cannot read checkpoint '%s': %s", cx->path,
                  done < len && saved ? strerror(saved) : "the file changed while it was read");
        free(buf);
        return NULL;
    }
    *len_out = len;
    return buf;
}

static void free_space(const char *path, char *dir, size_t dir_len, unsigned long long *avail) {
    dir_of(path, dir, dir_len);
    struct statvfs vs;
    *avail = statvfs(dir, &vs) == 0 ? (unsigned long long)vs.f_bavail * vs.f_frsize : ULLONG_MAX;
}

static int no_space(const char *path, size_t need, char *err, size_t err_len) {
    char dir[CKPT_PATH_MAX];
    unsigned long long avail;
    free_space(path, dir, sizeof dir, &avail);
    return set_error(err, err_len, "not enough space for '%s': it needs %zu bytes (%.1f MiB), '%s' has %llu bytes "
                     "(%.1f MiB) free; free disk space, lower checkpoint.keep, or point checkpoint.dir at a larger "
                     "disk", path, need, need / 1048576.0, dir, avail,
                     avail / 1048576.0);
}

// Writes all of bytes to fd; 0, or -1 with errno set.
static int write_all(int fd, const unsigned char *bytes, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, bytes + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        if (w == 0) {
            errno = ENOSPC;
            return -1;
        }
        done += (size_t)w;
    }
    return 0;
}

int ckpt_write_file(const char *path, const unsigned char *bytes, size_t len, char *err, size_t err_len) {
    char tmp[CKPT_PATH_MAX], dir[CKPT_PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return set_error(err, err_len, "path too long: '%s'", path);
    unsigned long long avail;
    free_space(path, dir, sizeof dir, &avail);
    if (avail < len) return no_space(path, len, err, err_len);   // before touching anything
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return set_error(err, err_len, "cannot create '%s': %s", tmp, strerror(errno));
    // A full disk may show in write, in fsync (delayed allocation) or in close (network file systems).
    int rc = write_all(fd, bytes, len);
    if (rc == 0) rc = fsync(fd);
    int saved = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    if (rc == 0) rc = rename_durable(tmp, path, err, err_len);
    else if (saved == ENOSPC || saved == EDQUOT) no_space(path, len, err, err_len);
    else set_error(err, err_len, "cannot write '%s': %s", tmp, strerror(saved));
    if (rc != 0) unlink(tmp);   // an existing file at path was never touched
    return rc;
}

int ckpt_write_text_atomic(const char *path, const char *text, char *err, size_t err_len) {
    return ckpt_write_file(path, (const unsigned char *)text, strlen(text), err, err_len);
}
