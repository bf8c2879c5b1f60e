// ckpt_dir.c: a folder of checkpoints: DIR/ckpt_<step>.h5, the `latest` pointer, keep N, the
// candidates for `--resume auto`, and the lock that keeps a second run out.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/common.h"
#include "ckpt_internal.h"

typedef struct {
    long long step;
    char *name;
} CkptFile;

// "ckpt_<digits>.h5" -> step, else -1.
static long long parse_ckpt_name(const char *name) {
    if (strncmp(name, "ckpt_", 5) != 0) return -1;
    const char *p = name + 5;
    long long step = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        if (step > (LLONG_MAX - 9) / 10) return -1;
        step = step * 10 + (*p++ - '0');
        digits++;
    }
    return digits > 0 && strcmp(p, ".h5") == 0 ? step : -1;
}

static int ckpt_newest_first(const void *a, const void *b) {
    const CkptFile *x = a, *y = b;
    if (x->step != y->step) return x->step > y->step ? -1 : 1;
    return -strcmp(x->name, y->name);
}

// The ckpt_*.h5 files of dir, newest step first; *count_out of them (caller frees names and array).
static CkptFile *scan_dir(const char *dir, int *count_out) {
    *count_out = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    int count = 0, cap = 16;
    CkptFile *files = xmalloc((size_t)cap * sizeof *files);
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        long long step = parse_ckpt_name(ent->d_name);
        if (step < 0) continue;
        if (count == cap) {
            cap *= 2;
            CkptFile *grown = realloc(files, (size_t)cap * sizeof *files);
            if (!grown) fatal("out of host memory listing '%s'", dir);
            files = grown;
        }
        files[count].step = step;
        files[count].name = xstrdup(ent->d_name);
        count++;
    }
    closedir(d);
    qsort(files, (size_t)count, sizeof *files, ckpt_newest_first);
    *count_out = count;
    return files;
}

static void free_scan(CkptFile *files, int count) {
    for (int i = 0; i < count; i++) free(files[i].name);
    free(files);
}

// Keep the newest `keep` (keep < 1: all), counting `name` (just written), which is never deleted.
static void delete_old(const char *dir, const char *name, int keep) {
    if (keep < 1) return;
    int count;
    CkptFile *files = scan_dir(dir, &count);
    int kept = 1;
    for (int i = 0; i < count; i++) {
        if (strcmp(files[i].name, name) == 0) continue;
        if (kept < keep) {
            kept++;
            continue;
        }
        char old[CKPT_PATH_MAX];
        snprintf(old, sizeof old, "%s/%s", dir, files[i].name);
        if (unlink(old) != 0) log_warn("cannot delete old checkpoint '%s': %s", old, strerror(errno));
    }
    free_scan(files, count);
}

int checkpoint_save_in_dir(const char *dir, const CkptTensor *tensors, int count, const CheckpointMeta *meta,
                           const char *config_yaml, int keep, char *path_out, size_t path_len, char *err,
                           size_t err_len) {
    if (meta->step < 0) return set_error(err, err_len, "cannot save a checkpoint for step %lld", (long long)meta->step);
    char why[CKPT_PATH_MAX + 128];
    if (make_dirs(dir, why, sizeof why) != 0)
        return set_error(err, err_len, "cannot create checkpoint folder (checkpoint.dir): %s", why);
    char name[64], path[CKPT_PATH_MAX], latest[CKPT_PATH_MAX], line[80];
    snprintf(name, sizeof name, "ckpt_%08lld.h5", (long long)meta->step);
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path ||
        snprintf(latest, sizeof latest, "%s/latest", dir) >= (int)sizeof latest)
        return set_error(err, err_len, "checkpoint folder path too long: '%s'", dir);
    if (checkpoint_save(path, tensors, count, meta, config_yaml, err, err_len) != 0) return -1;
    snprintf(line, sizeof line, "%s\n", name);
    if (ckpt_write_text_atomic(latest, line, err, err_len) != 0) return -1;
    if (path_out && copy_string(path_out, path_len, path) != 0)
        return set_error(err, err_len, "checkpoint path '%s' does not fit the caller's buffer", path);
    delete_old(dir, name, keep);
    return 0;
}

// The file `latest` names when it is a plain name of an existing file inside dir, else "".
static void read_latest(const char *dir, char *name, size_t len) {
    char path[CKPT_PATH_MAX], err[256];
    name[0] = '\0';
    snprintf(path, sizeof path, "%s/latest", dir);
    char *text = read_text_file(path, NULL, err, sizeof err);
    if (!text) return;
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ')) text[--n] = '\0';
    struct stat st;
    // `latest` is ours, but never follow it elsewhere.
    if (n > 0 && n < len && !strchr(text, '/') && strcmp(text, ".") != 0 && strcmp(text, "..") != 0 &&
        snprintf(path, sizeof path, "%s/%s", dir, text) < (int)sizeof path && stat(path, &st) == 0 &&
        S_ISREG(st.st_mode))
        copy_string(name, len, text);
    free(text);
}

int checkpoint_list_in_dir(const char *dir, char **paths, int max_paths) {
    int n = 0;
    char first[256], path[CKPT_PATH_MAX];
    if (max_paths <= 0) return 0;
    read_latest(dir, first, sizeof first);
    if (first[0]) {
        snprintf(path, sizeof path, "%s/%s", dir, first);
        paths[n++] = xstrdup(path);
    }
    int count;
    CkptFile *files = scan_dir(dir, &count);
    for (int i = 0; i < count && n < max_paths; i++) {
        if (strcmp(files[i].name, first) == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        paths[n++] = xstrdup(path);
    }
    free_scan(files, count);
    return n;
}

// ---- the lock ------------------------------------------------------------------------------

// What the holder wrote into the lock file ("pid 123 on host"), or "unknown" when it is empty.
static void lock_holder(int fd, char *buf, size_t len) {
    ssize_t n = pread(fd, buf, len - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = '\0';
    for (ssize_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x20) buf[i] = '?';
    if (!buf[0]) copy_string(buf, len, "unknown (it has not written its PID yet)");
}

int checkpoint_dir_lock(const char *dir, CkptDirLock *lock, char *err, size_t err_len) {
    lock->fd = -1;
    char why[CKPT_PATH_MAX + 128], path[CKPT_PATH_MAX];
    if (make_dirs(dir, why, sizeof why) != 0)
        return set_error(err, err_len, "cannot create checkpoint folder (checkpoint.dir): %s", why);
    if (snprintf(path, sizeof path, "%s/lock", dir) >= (int)sizeof path)
        return set_error(err, err_len, "checkpoint folder path too long: '%s'", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return set_error(err, err_len, "cannot open the lock file '%s': %s", path, strerror(errno));
    // flock, not a lock file's mere existence: the kernel drops it when the holder exits in any
    // way (kill -9 included), so a stale file never blocks a resume.
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int saved = errno;
        if (saved == EWOULDBLOCK) {
            char holder[160];
            lock_holder(fd, holder, sizeof holder);
            close(fd);
            return set_error(err, err_len, "checkpoint.dir '%s' is in use by another training run (%s holds %s); "
                             "two runs in one folder would overwrite each other's checkpoints: wait for it to end, "
                             "stop it, or give this run another checkpoint.dir", dir, holder, path);
        }
        // No locks on this file system (some network mounts): run unprotected, but say so.
        log_warn("cannot lock '%s' (%s): nothing stops a second run from using checkpoint.dir '%s' at the same time",
                 path, strerror(saved), dir);
    }
    char me[160], host[64] = "";
    gethostname(host, sizeof host - 1);
    int n = snprintf(me, sizeof me, "pid %ld on %s\n", (long)getpid(), host[0] ? host : "this host");
    if (ftruncate(fd, 0) != 0 || pwrite(fd, me, (size_t)n, 0) != n)   // only informative: the flock is the lock
        log_warn("cannot write this run's PID into '%s': %s", path, strerror(errno));
    lock->fd = fd;
    return 0;
}

void checkpoint_dir_unlock(CkptDirLock *lock) {
    if (lock->fd < 0) return;
    // The file stays: removing it could let a third run lock a new file while a second still
    // waits on the old one.
    flock(lock->fd, LOCK_UN);
    close(lock->fd);
    lock->fd = -1;
}
