// common.h: error reporting, check macros and small helpers shared by every layer.
// Errors carry a hint: what was expected, what was found, and what to do about it.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// Exit codes of the program (documented in README.md).
enum {
    EXIT_OK = 0,
    EXIT_ERROR = 1,          // bad input, I/O failure, internal error
    EXIT_USAGE = 2,          // bad command line
    EXIT_RESUMABLE = 75,     // stopped on a signal after writing a checkpoint: resume with --resume auto
    EXIT_COLLECTIVE_TIMEOUT = 76, // a peer rank died or hung; the job was aborted
};

// Print "error: <message>" (prefixed with the rank when world > 1) and exit(EXIT_ERROR).
// Use for conditions a user can fix; the message should say what to do.
__attribute__((noreturn, format(printf, 1, 2))) void fatal(const char *fmt, ...);
// As fatal(), but with a source location: for failed library calls and broken invariants.
__attribute__((noreturn, format(printf, 3, 4))) void fatal_at(const char *file, int line, const char *fmt, ...);

// This process's rank and world size as the launcher (mpirun, srun) announced them in the
// environment; 0 and 1 without a launcher. Used for message prefixes, so that no global state is
// needed and messages before MPI_Init are prefixed too.
int launcher_rank(void);
int launcher_world(void);

__attribute__((format(printf, 1, 2))) void log_info(const char *fmt, ...);  // rank 0 only, stdout
__attribute__((format(printf, 1, 2))) void log_warn(const char *fmt, ...);  // any rank, stderr
__attribute__((format(printf, 1, 2))) void log_error(const char *fmt, ...); // any rank, stderr; does not exit

// Write a formatted message into err[err_len]; returns -1 so callers can `return set_error(...)`.
__attribute__((format(printf, 3, 4))) int set_error(char *err, size_t err_len, const char *fmt, ...);

#define CHECK(cond, ...) \
    do { if (!(cond)) fatal_at(__FILE__, __LINE__, __VA_ARGS__); } while (0)

// malloc/calloc that never return NULL (start-up allocations only; never inside the step).
void *xmalloc(size_t bytes);
void *xcalloc(size_t count, size_t size);
char *xstrdup(const char *s);

// Copy src into dst[dst_len] always NUL-terminated; returns -1 if it had to truncate.
int copy_string(char *dst, size_t dst_len, const char *src);

double wall_time_seconds(void);   // monotonic clock

// Levenshtein distance, for "did you mean" hints.
int edit_distance(const char *a, const char *b);

// mkdir -p: create path and its missing parents (mode 0775). 0, or -1 with err naming the part
// that could not be made, or saying that path exists but is not a folder.
int make_dirs(const char *path, char *err, size_t err_len);

// Read a whole file into a malloc'd NUL-terminated buffer; returns NULL and fills err on failure.
char *read_text_file(const char *path, size_t *len_out, char *err, size_t err_len);
