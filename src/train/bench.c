// bench.c: `vqvae_dist bench`: the real trainer's step timed on synthetic data (CIFAR-shaped, or
// of the config's dataset's shape), with one JSON line on stdout (rank 0) that bench/compare.py
// sets beside PyTorch's (docs/BENCHMARKS.md). Writes no checkpoint and no metrics file.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../core/common.h"
#include "commands.h"
#include "trainer.h"

// VQ_GIT_COMMIT: the commit of this build, written by tools/git_commit.cmake at every build.
#include <vq_commit.h>   // generated in the build tree (-I build/generated), hence <>

// ---- the process and the machine -------------------------------------------------------------

// Seconds since the kernel started this process (/proc/self/stat field 22, in clock ticks since
// boot), so start-up time includes loading the program and MPI_Init; -1 where /proc is missing.
static double process_age_seconds(void) {
    char buf[2048];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return -1.0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');   // the command name may hold spaces and parentheses
    if (!p) return -1.0;
    unsigned long long start_ticks = 0;
    // after ")": field 3 (state) .. field 21, then starttime
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
               &start_ticks) != 1)
        return -1.0;
    long ticks_per_s = sysconf(_SC_CLK_TCK);
    struct timespec now;
    if (ticks_per_s <= 0 || clock_gettime(CLOCK_BOOTTIME, &now) != 0) return -1.0;
    double age = (double)now.tv_sec + 1e-9 * (double)now.tv_nsec - (double)start_ticks / (double)ticks_per_s;
    return age >= 0.0 ? age : -1.0;
}

static size_t peak_rss_bytes(void) {
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
    return (size_t)usage.ru_maxrss * 1024;   // KiB on Linux
}

// ---- output ----------------------------------------------------------------------------------

// s as a JSON string (quotes, backslashes and control characters escaped).
static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

// The trainer logs to stdout; a bench's stdout is its one JSON line, so the logs go to stderr
// until the line is printed. Returns the saved stdout for stdout_restore.
static int stdout_to_stderr(void) {
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    if (saved < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
        fatal("bench: cannot redirect stdout to stderr (dup/dup2 failed); is stdout closed?");
    return saved;
}

static void stdout_restore(int saved) {
    fflush(stdout);
    if (dup2(saved, STDOUT_FILENO) < 0) fatal("bench: cannot restore stdout (dup2 failed)");
    close(saved);
}

// ---- the command -----------------------------------------------------------------------------

// Channels and size of the real datasets: the bench's synthetic stand-in for each has its shape
// (bench/pytorch_vqvae.py's DATASET_SHAPES holds the same table).
static const struct {
    const char *name;
    int channels, size;
} DATASET_SHAPES[] = {{"cifar10", 3, 32}, {"mnist", 1, 28}, {"fashion_mnist", 1, 28}};

// A benchmark measures the step, not the disk: unless the command line itself names data.dataset,
// a config's real dataset becomes synthetic images of that dataset's shape (so `bench --config
// configs/cifar.yaml` needs no CIFAR files).
static void bench_synthetic_data(Config *cfg, const CliArgs *args) {
    for (int i = 0; i < args->override_count; i++)
        if (strncmp(args->overrides[i], "data.dataset=", 13) == 0) return;   // told otherwise
    for (size_t i = 0; i < sizeof DATASET_SHAPES / sizeof DATASET_SHAPES[0]; i++) {
        if (strcmp(cfg->dataset, DATASET_SHAPES[i].name) != 0) continue;
        log_info("bench: synthetic %dx%dx%d images in place of %s (data.dataset=%s on the command line benches "
                 "the real data)", DATASET_SHAPES[i].channels, DATASET_SHAPES[i].size, DATASET_SHAPES[i].size,
                 cfg->dataset, cfg->dataset);
        copy_string(cfg->dataset, sizeof cfg->dataset, "synthetic");
        cfg->synthetic_channels = DATASET_SHAPES[i].channels;
        cfg->synthetic_size = DATASET_SHAPES[i].size;
        return;
    }
}

// Defaults, then the bench's data (synthetic CIFAR-shaped), then --config, then overrides, then
// synthetic data of the config's shape (bench_synthetic_data); then everything that would write a
// file points at nothing.
static void bench_config(Config *cfg, const CliArgs *args, const Dist *dist) {
    char err[1024];
    config_defaults(cfg);
    copy_string(cfg->dataset, sizeof cfg->dataset, "synthetic");
    cfg->synthetic_channels = 3;
    cfg->synthetic_size = 32;
    if (args->config_path && config_load_file(cfg, args->config_path, err, sizeof err) != 0) fatal("%s", err);
    for (int i = 0; i < args->override_count; i++)
        if (config_apply_override(cfg, args->overrides[i], err, sizeof err) != 0) fatal("%s", err);
    bench_synthetic_data(cfg, args);
    if (config_validate(cfg, err, sizeof err) != 0) fatal("%s", err);

    int64_t global_batch = (int64_t)cfg->batch_size * dist->world;
    if (strcmp(cfg->dataset, "synthetic") == 0 && cfg->synthetic_count < global_batch) {
        // A benchmark of a large global batch should not fail on the size of made-up data.
        int64_t count = 4 * global_batch;
        CHECK(count <= (1 << 30), "bench: a global batch of %lld images is too large for the synthetic dataset",
              (long long)global_batch);
        log_info("bench: data.synthetic_count raised from %d to %lld so that it holds 4 global batches",
                 cfg->synthetic_count, (long long)count);
        cfg->synthetic_count = (int)count;
    }
    cfg->steps = (int64_t)args->warmup + args->steps;
    cfg->checkpoint_every = 0;
    cfg->eval_every = 0;
    cfg->verify_every = 0;
    const char *tmp = getenv("TMPDIR");
    copy_string(cfg->checkpoint_dir, sizeof cfg->checkpoint_dir, tmp && *tmp ? tmp : "/tmp");   // exists: nothing made
}

// The largest value over the ranks (memory peaks differ a little between ranks).
static uint64_t max_over_ranks(Dist *dist, uint64_t value) {
    uint64_t *all = xmalloc((size_t)dist->world * sizeof(uint64_t));
    dist_allgather_u64(dist, value, all);
    uint64_t best = 0;
    for (int r = 0; r < dist->world; r++) best = all[r] > best ? all[r] : best;
    free(all);
    return best;
}

// What one bench measured, for its JSON line.
typedef struct {
    const Config *cfg;
    const OpsContext *ctx;
    int world, steps, warmup;
    double elapsed_s, startup_s;
    double loss;   // the last step's loss
    uint64_t peak_memory, peak_allocated, in_use;
} BenchResult;

static double bench_images_per_s(const BenchResult *r) {
    double images = (double)r->steps * (double)r->cfg->batch_size * (double)r->world;
    return r->elapsed_s > 0.0 ? images / r->elapsed_s : 0.0;
}

// What the convolutions computed in: CUDA as configured; the CPU in bf16 when asked (oneDNN), else
// fp32 (tf32 is a CUDA mode).
static const char *bench_precision(const OpsContext *ctx, const Config *cfg) {
    if (ctx->kind == BACKEND_CUDA) return cfg->precision;
    return ctx->precision == PRECISION_BF16 ? "bf16" : "fp32";
}

// The one JSON line (rank 0), with the device and, on CUDA, the library versions the process
// runs with.
static void bench_print_json(const BenchResult *r) {
    const Config *cfg = r->cfg;
    const OpsContext *ctx = r->ctx;
    OpsDescription desc;
    ops_context_describe(ctx, &desc);
    char versions[256] = "";
    if (ctx->kind == BACKEND_CUDA)
        snprintf(versions, sizeof versions, ", \"cuda_runtime\": %d, \"cuda_driver\": %d, \"cudnn\": %zu, \"nccl\": %d",
                 desc.cuda_runtime, desc.cuda_driver, desc.cudnn, dist_nccl_version());
    int64_t global_batch = (int64_t)cfg->batch_size * r->world;
    char loss[32] = "null";   // JSON has no NaN
    if (isfinite(r->loss)) snprintf(loss, sizeof loss, "%.6f", r->loss);
    printf("{\"impl\": \"vqvae_dist\", \"version\": ");
    json_string(stdout, VQ_VERSION);
    printf(", \"commit\": ");
    json_string(stdout, VQ_GIT_COMMIT);
    printf(", \"device\": ");
    json_string(stdout, desc.device);
    printf(", \"backend\": \"%s\", \"precision\": \"%s\", \"compile\": false, \"quantizer\": \"%s\", "
           "\"world\": %d, \"batch\": %d, \"global_batch\": %lld, \"threads\": %d, \"cpu_conv\": \"%s\", "
           "\"steps\": %d, "
           "\"warmup\": %d, \"images_per_s\": %.2f, \"ms_per_step\": %.3f, \"startup_s\": %.3f, "
           "\"final_loss\": %s, \"peak_memory_bytes\": %llu, \"peak_allocated_bytes\": %llu, "
           "\"memory_in_use_bytes\": %llu%s}\n",
           ctx->ops->name, bench_precision(ctx, cfg),
           strcmp(cfg->model_type, "vae") == 0 ? "none" : cfg->quantizer, r->world,
           cfg->batch_size, (long long)global_batch, ctx->kind == BACKEND_CPU ? ctx->threads : 0,
           ctx->kind == BACKEND_CPU ? cpu_conv_name(ctx->cpu_conv) : "-", r->steps, r->warmup,
           bench_images_per_s(r),
           1000.0 * r->elapsed_s / r->steps, r->startup_s, loss, (unsigned long long)r->peak_memory,
           (unsigned long long)r->peak_allocated, (unsigned long long)r->in_use, versions);
    fflush(stdout);
}

int command_bench(const CliArgs *args, Dist *dist) {
    double entry = wall_time_seconds();
    double age_at_entry = process_age_seconds();
    int saved_stdout = stdout_to_stderr();

    Config cfg;
    bench_config(&cfg, args, dist);
    char *yaml = config_to_yaml(&cfg);
    log_info("--- resolved config ---\n%s-----------------------", yaml);
    free(yaml);

    Trainer t;
    trainer_setup(&t, &cfg, dist, NULL, NULL);
    OpsContext *ctx = &t.s.ctx;
    const Ops *ops = ctx->ops;
    int total = args->warmup + args->steps;
    log_info("bench: %d warm-up steps, then %d timed steps", args->warmup, args->steps);

    // Every clock reading follows a synchronize, so it sees the device's work done.
    double first_step_end = 0.0, timed_start = 0.0;
    size_t in_use_peak = 0;
    for (int i = 0; i < total; i++) {
        if (i == args->warmup) {
            ops->synchronize(ctx);
            timed_start = wall_time_seconds();
        }
        trainer_step(&t);
        if (i == 0) {
            ops->synchronize(ctx);
            first_step_end = wall_time_seconds();
            in_use_peak = ops->memory_in_use(ctx);   // (inside the timed steps only with --warmup 0)
        }
    }
    ops->synchronize(ctx);
    BenchResult r = {.cfg = &cfg, .ctx = ctx, .world = dist->world, .steps = args->steps, .warmup = args->warmup};
    r.elapsed_s = wall_time_seconds() - timed_start;

    train_state_sync(&t.st, &t.s);
    r.loss = train_log_collect(&t.log, &t.s, &t.st).loss;
    // The step allocates nothing, so after the steps "now" is the peak, but for what cuDNN and
    // cuBLAS may hold only while a call runs; the sample after the first step covers start-up.
    size_t in_use_now = ops->memory_in_use(ctx);
    if (in_use_now > in_use_peak) in_use_peak = in_use_now;
    // CPU: the peak resident set, comparable with PyTorch's ru_maxrss; CUDA: device memory added
    // since the context was created.
    r.peak_memory = max_over_ranks(dist, ctx->kind == BACKEND_CPU ? peak_rss_bytes() : in_use_peak);
    r.peak_allocated = max_over_ranks(dist, ctx->peak_allocated_bytes);
    r.in_use = max_over_ranks(dist, in_use_now);
    r.startup_s = age_at_entry >= 0.0 ? age_at_entry + (first_step_end - entry) : first_step_end - entry;

    log_info("bench: %d steps in %.3fs: %.1f images/s, %.2f ms/step; start-up to the end of the first step %.2fs",
             args->steps, r.elapsed_s, bench_images_per_s(&r), 1000.0 * r.elapsed_s / args->steps, r.startup_s);
    stdout_restore(saved_stdout);
    if (dist->rank == 0) bench_print_json(&r);
    trainer_free(&t);
    return EXIT_OK;
}
