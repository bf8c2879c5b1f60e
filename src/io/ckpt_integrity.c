// ckpt_integrity.c: what makes a checkpoint trustworthy: finite values, checksums, and writes
// that never leave a half-written file under the final name.
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
                             "state had diverged (or the file is corrupt); use an older checkpoint (--resume auto "
                             "falls back automatically)", full_name, cx->path,
                             isfinite(x[i]) ? "a negative" : "a non-finite", (double)x[i], (long long)i);
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

// ---- atomic writes -------------------------------------------------------------------------

static void dir_of(const char *path, char *dir, size_t len) {
    copy_string(dir, len, path);
    char *slash = strrchr(dir, '/');
    if (!slash) copy_string(dir, len, ".");
    else if (slash == dir) dir[1] = '\0';   // "/file"
    else *slash = '\0';
}

static int fsync_path(const char *path, int is_dir, char *err, size_t err_len) {
    int fd = open(path, is_dir ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
    if (fd < 0) return set_error(err, err_len, "cannot open '%s' to fsync it: %s", path, strerror(errno));
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    // Some file systems cannot fsync a folder (EINVAL); the rename is then as durable as it gets.
    if (rc != 0 && !(is_dir && saved == EINVAL))
        return set_error(err, err_len, "fsync of '%s' failed: %s", path, strerror(saved));
    return 0;
}

int ckpt_commit_tmp(const char *tmp, const char *path, char *err, size_t err_len) {
    if (fsync_path(tmp, 0, err, err_len) != 0) return -1;
    if (rename(tmp, path) != 0)
        return set_error(err, err_len, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    char dir[CKPT_PATH_MAX];
    dir_of(path, dir, sizeof dir);
    return fsync_path(dir, 1, err, err_len);
}

int ckpt_write_text_atomic(const char *path, const char *text, char *err, size_t err_len) {
    char tmp[CKPT_PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return set_error(err, err_len, "path too long: '%s'", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return set_error(err, err_len, "cannot create '%s': %s", tmp, strerror(errno));
    size_t len = strlen(text), done = 0;
    while (done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            set_error(err, err_len, "cannot write '%s': %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            return -1;
        }
        done += (size_t)w;
    }
    if (close(fd) != 0) {
        set_error(err, err_len, "cannot write '%s': %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (ckpt_commit_tmp(tmp, path, err, err_len) != 0) {
        unlink(tmp);   // gone already if the rename happened
        return -1;
    }
    return 0;
}
