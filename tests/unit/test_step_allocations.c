// test_step_allocations.c: a training step allocates nothing. This program interposes the C
// allocator (malloc, calloc, realloc, free and the aligned forms, passed on to glibc's __libc_*),
// builds the real trainer (trainer_setup) on the CPU, runs two steps unwatched (start-up may
// allocate), then counts every allocator call during 20 more steps (an epoch boundary, with its new
// permutation, included), at two batch sizes and with both convolution engines, and for
// model.arch groupnorm (with dropout) at one:
//   im2col + OpenBLAS: no call at all.
//   oneDNN: no call outside libdnnl, and none that outlives its step; the calls inside libdnnl are
//     reported, not failed: dnnl_primitive_execute builds its argument list as a std::unordered_map
//     on every call (src/common/primitive_exec_types.hpp of oneDNN 2.6), which the C API cannot avoid.
// A call is "inside libdnnl" when any frame of its backtrace lies in libdnnl's mapped code.
// The step runs on the main thread and its OpenMP teams; the process has other threads too (Open
// MPI's progress threads, even for one rank). A call on one of those is not the step's: it is
// reported with its backtrace and the 20 steps are watched once more, which must then be clean.
// Under AddressSanitizer (tools/test.sh --sanitize) ASan owns the allocator and these hooks would
// replace its interceptors, so that build only SKIPs: the plain build does the counting.
#if defined(__SANITIZE_ADDRESS__)
#include <stdio.h>
int main(void) {
    printf("SKIP: test_step_allocations: the allocator hooks cannot run under AddressSanitizer; the plain build "
           "(tools/test.sh) counts the step's allocations\n");
    return 77;
}
#else
#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "dist/dist.h"
#include "io/config.h"
#include "test_util.h"
#include "train/trainer.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

enum { MAX_TRACES = 6, TRACE_DEPTH = 24, MAX_RANGES = 16 };

// What the hooks see. Counting is on only around the watched steps; `busy` keeps a hook's own
// backtrace() from being counted.
static atomic_int counting;
static atomic_long calls_other, calls_onednn, live_onednn, calls_foreign;
static _Thread_local int busy;
static pid_t main_tid;
static uintptr_t dnnl_lo[MAX_RANGES], dnnl_hi[MAX_RANGES];
static int dnnl_ranges;
static void *traces[MAX_TRACES][TRACE_DEPTH];
static int trace_depth[MAX_TRACES], trace_foreign[MAX_TRACES];
static atomic_int traces_kept;

static int in_onednn(void *const *frames, int n) {
    for (int i = 0; i < n; i++)
        for (int r = 0; r < dnnl_ranges; r++)
            if ((uintptr_t)frames[i] >= dnnl_lo[r] && (uintptr_t)frames[i] < dnnl_hi[r]) return 1;
    return 0;
}

// One allocator call (+1 allocation, -1 release, 0 realloc) while counting.
static void seen(int delta) {
    if (!atomic_load(&counting) || busy) return;
    busy = 1;
    void *frames[TRACE_DEPTH];
    int n = backtrace(frames, TRACE_DEPTH);
    if (in_onednn(frames, n)) {
        atomic_fetch_add(&calls_onednn, 1);
        atomic_fetch_add(&live_onednn, delta);
    } else {
        int foreign = gettid() != main_tid && !omp_in_parallel();   // neither main thread nor an OpenMP team
        atomic_fetch_add(foreign ? &calls_foreign : &calls_other, 1);
        int slot = atomic_fetch_add(&traces_kept, 1);
        if (slot < MAX_TRACES) {
            memcpy(traces[slot], frames, (size_t)n * sizeof(void *));
            trace_depth[slot] = n;
            trace_foreign[slot] = foreign;
        }
    }
    busy = 0;
}

void *malloc(size_t n) {
    seen(1);
    return __libc_malloc(n);
}
void *calloc(size_t count, size_t n) {
    seen(1);
    return __libc_calloc(count, n);
}
void *realloc(void *p, size_t n) {
    seen(p ? (n ? 0 : -1) : 1);
    return __libc_realloc(p, n);
}
void free(void *p) {
    if (p) seen(-1);
    __libc_free(p);
}
void *aligned_alloc(size_t alignment, size_t n) {
    seen(1);
    return __libc_memalign(alignment, n);
}
void *memalign(size_t alignment, size_t n) {
    seen(1);
    return __libc_memalign(alignment, n);
}
int posix_memalign(void **out, size_t alignment, size_t n) {
    seen(1);
    *out = __libc_memalign(alignment, n);
    return *out ? 0 : 12;   // ENOMEM
}

// libdnnl's loaded segments, from the dynamic linker's list.
static int find_onednn(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size, (void)data;
    if (!info->dlpi_name || !strstr(info->dlpi_name, "libdnnl")) return 0;
    for (int i = 0; i < info->dlpi_phnum && dnnl_ranges < MAX_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD) continue;
        dnnl_lo[dnnl_ranges] = info->dlpi_addr + ph->p_vaddr;
        dnnl_hi[dnnl_ranges] = dnnl_lo[dnnl_ranges] + ph->p_memsz;
        dnnl_ranges++;
    }
    return 0;
}

static void print_traces(void) {
    int kept = atomic_load(&traces_kept);
    for (int i = 0; i < kept && i < MAX_TRACES; i++) {
        fprintf(stderr, "-- allocation %d outside oneDNN during a step, on %s:\n", i + 1,
                trace_foreign[i] ? "a thread outside the step" : "the step's thread");
        backtrace_symbols_fd(traces[i], trace_depth[i], STDERR_FILENO);
    }
}

// Counts the allocator calls of `steps` training steps; returns those on threads outside the step.
static long watch_steps(Trainer *t, int steps) {
    atomic_store(&calls_other, 0), atomic_store(&calls_onednn, 0), atomic_store(&live_onednn, 0);
    atomic_store(&calls_foreign, 0), atomic_store(&traces_kept, 0);
    atomic_store(&counting, 1);
    for (int i = 0; i < steps; i++) trainer_step(t);
    atomic_store(&counting, 0);
    return atomic_load(&calls_foreign);
}

// groupnorm: model.arch groupnorm with dropout (GroupNorm, SiLU, attention, resampling layers).
static void check_steps(TestCounts *c, Dist *dist, const char *engine, int batch, int groupnorm) {
    const char *source_dir = getenv("VQ_SOURCE_DIR");
    CHECK(source_dir && *source_dir, "VQ_SOURCE_DIR is not set (ctest sets it; or export it to the repo root)");
    char path[4096], err[1024], b[64], e[64];
    snprintf(path, sizeof path, "%s/configs/smoke.yaml", source_dir);
    snprintf(b, sizeof b, "train.batch_size=%d", batch);
    snprintf(e, sizeof e, "train.cpu_conv=%s", engine);
    const char *overrides[] = {b, e, "train.device=cpu", "train.threads=2", "data.synthetic_count=320",
                               "checkpoint.every=0", "train.eval_every=0", "log.every=1000000",
                               "log.metrics_file=/dev/null", "checkpoint.dir=/tmp"};
    Config cfg;
    config_defaults(&cfg);
    CHECK(config_load_file(&cfg, path, err, sizeof err) == 0, "%s", err);
    for (size_t i = 0; i < sizeof overrides / sizeof overrides[0]; i++)
        CHECK(config_apply_override(&cfg, overrides[i], err, sizeof err) == 0, "%s", err);
    const char *gn[] = {"model.arch=groupnorm", "model.block_out_channels=[8, 16]", "model.norm_num_groups=4",
                        "model.dropout=0.1"};
    for (size_t i = 0; groupnorm && i < sizeof gn / sizeof gn[0]; i++)
        CHECK(config_apply_override(&cfg, gn[i], err, sizeof err) == 0, "%s", err);
    const char *what = groupnorm ? "groupnorm" : "resnet";
    Trainer t;
    trainer_setup(&t, &cfg, dist, NULL, NULL);
    for (int i = 0; i < 2; i++) trainer_step(&t);
    int steps = 20;
    long foreign = watch_steps(&t, steps);
    if (foreign && atomic_load(&calls_other) == 0) {   // only threads the step does not run on
        print_traces();
        printf("%s, %s, batch %d: %ld allocator calls on threads outside the step; watching %d more steps\n", what,
               engine, batch, foreign, steps);
        foreign = watch_steps(&t, steps);
    }
    long other = atomic_load(&calls_other), onednn = atomic_load(&calls_onednn), live = atomic_load(&live_onednn);
    printf("%s, %s, batch %d: %d steps: %ld allocator calls outside oneDNN (%ld on other threads), %ld inside (%.0f "
           "per step), %ld blocks of oneDNN's still held\n", what, engine, batch, steps, other + foreign, foreign,
           onednn, (double)onednn / steps, live);
    other += foreign;
    EXPECT(c, other == 0, "%s, batch %d: %ld allocator calls outside oneDNN in %d steps", engine, batch, other,
           steps);
    if (strcmp(engine, "im2col") == 0)
        EXPECT(c, onednn == 0, "im2col, batch %d: %ld allocator calls inside oneDNN", batch, onednn);
    EXPECT(c, live == 0, "%s, batch %d: %ld oneDNN allocations outlived the steps", engine, batch, live);
    if (other) print_traces();
    trainer_free(&t);
}

int main(int argc, char **argv) {
    TestCounts c = {0, 0};
    Dist dist;
    main_tid = gettid();
    dist_init(&dist, &argc, &argv);
    void *warm[2];
    backtrace(warm, 2);   // loads the unwinder now, not inside a hook
    dl_iterate_phdr(find_onednn, NULL);
    int skipped = 0;
    for (int run = 0; run < 3; run++) {
        int batch = run == 1 ? 64 : 16, groupnorm = run == 2;
        check_steps(&c, &dist, "im2col", batch, groupnorm);
        if (onednn_compiled()) check_steps(&c, &dist, "onednn", batch, groupnorm);
        else TEST_SKIP(&skipped, "onednn, batch %d: this build has no oneDNN", batch);
    }
    dist_finalize(&dist);
    return test_finish_skipped("test_step_allocations", &c, skipped);
}
#endif   // __SANITIZE_ADDRESS__
