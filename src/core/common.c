// common.c: see common.h.
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static int env_int(const char *const *names, int fallback) {
    for (int i = 0; names[i]; i++) {
        const char *v = getenv(names[i]);
        if (v && *v) return atoi(v);
    }
    return fallback;
}

int launcher_rank(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID", NULL};
    return env_int(names, 0);
}

int launcher_world(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS", NULL};
    return env_int(names, 1);
}

// kind: "error", "warning", or NULL for none. The whole line is formatted first and written with one call, so lines of ranks sharing a
// terminal or log file (unbuffered stderr under mpirun) do not interleave mid-line.
static void print_prefixed(FILE *f, const char *kind, const char *fmt, va_list ap) {
    char line[4096];
    int used = 0;
    if (launcher_world() > 1) used = snprintf(line, sizeof line, "[rank %d] ", launcher_rank());
    if (kind) used += snprintf(line + used, sizeof line - (size_t)used, "%s: ", kind);
    if ((size_t)used < sizeof line) vsnprintf(line + used, sizeof line - (size_t)used, fmt, ap);
    size_t n = strlen(line);
    if (n == sizeof line - 1) line[n - 1] = '\n';   // truncated: still end the line
    else line[n++] = '\n';
    fwrite(line, 1, n, f);
    fflush(f);
}

__attribute__((format(printf, 2, 3))) static void print_line(FILE *f, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    print_prefixed(f, NULL, fmt, ap);
    va_end(ap);
}

void fatal(const char *fmt, ...) {
    fflush(stdout);
    va_list ap;
    va_start(ap, fmt);
    print_prefixed(stderr, "error", fmt, ap);
    va_end(ap);
    exit(EXIT_ERROR);
}

void fatal_at(const char *file, int line, const char *fmt, ...) {
    fflush(stdout);
    char message[3072];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    print_line(stderr, "error at %s:%d: %s", file, line, message);
    exit(EXIT_ERROR);
}

void log_info(const char *fmt, ...) {
    if (launcher_rank() > 0) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

void log_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    print_prefixed(stderr, "error", fmt, ap);
    va_end(ap);
}

void log_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    print_prefixed(stderr, "warning", fmt, ap);
    va_end(ap);
}

int set_error(char *err, size_t err_len, const char *fmt, ...) {
    if (err && err_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) fatal("out of host memory allocating %zu bytes; lower train.batch_size or use a smaller dataset", bytes);
    return p;
}

void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) fatal("out of host memory allocating %zu x %zu bytes; lower train.batch_size", count, size);
    return p;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

int copy_string(char *dst, size_t dst_len, const char *src) {
    if (dst_len == 0) return -1;
    size_t n = strlen(src);
    if (n >= dst_len) {
        memcpy(dst, src, dst_len - 1);
        dst[dst_len - 1] = '\0';
        return -1;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

double wall_time_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 127 || lb > 127) return 1 << 20;
    int row[128];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int cost = a[i - 1] == b[j - 1] ? 0 : 1;
            int best = diag + cost;
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

char *read_text_file(const char *path, size_t *len_out, char *err, size_t err_len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_error(err, err_len, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            char *grown = realloc(buf, cap);
            if (!grown) { free(buf); fclose(f); set_error(err, err_len, "out of memory reading '%s'", path); return NULL; }
            buf = grown;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        set_error(err, err_len, "read error on '%s'", path);
        return NULL;
    }
    buf[len] = '\0';
    if (len_out) *len_out = len;
    return buf;
}

int make_dirs(const char *path, char *err, size_t err_len) {
    char buf[4096];
    if (copy_string(buf, sizeof buf, path) != 0) return set_error(err, err_len, "path too long: '%s'", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0775) != 0 && errno != EEXIST)
            return set_error(err, err_len, "cannot create folder '%s': %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0775) != 0 && errno != EEXIST)
        return set_error(err, err_len, "cannot create folder '%s': %s", buf, strerror(errno));
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
        return set_error(err, err_len, "'%s' exists but is not a folder; choose another path", path);
    return 0;
}
