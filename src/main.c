// main.c: the command line. One table lists the commands and one the options; the parser and
// the usage text are both generated from them, so they cannot drift apart.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "dist/dist.h"
#include "io/config.h"
#include "train/commands.h"

typedef enum {
    OPT_CONFIG = 1 << 0,
    OPT_RESUME = 1 << 1,
    OPT_CHECKPOINT = 1 << 2,
    OPT_OUT = 1 << 3,
    OPT_COUNT = 1 << 4,
    OPT_STEPS = 1 << 5,
    OPT_WARMUP = 1 << 6,
    OPT_SPLIT = 1 << 7,
    OPT_CODES = 1 << 8,
    OPT_LATENTS = 1 << 9,
    OPT_ROWS = 1 << 10,
    OPT_COLS = 1 << 11,
    OPT_SCALE = 1 << 12,
} OptionBit;

typedef struct {
    OptionBit bit;
    const char *flag;
    const char *arg;        // NULL: a flag, no value
    const char *help;
} OptionSpec;

static const OptionSpec OPTIONS[] = {
    {OPT_CONFIG, "--config", "FILE", "YAML config (configs/*.yaml); without it the built-in defaults are used"},
    {OPT_RESUME, "--resume", "auto|PATH", "continue from a checkpoint: auto = newest good one in checkpoint.dir"},
    {OPT_CHECKPOINT, "--checkpoint", "PATH", "checkpoint file to read"},
    {OPT_CODES, "--codes", "PATH", "codes file written by encode (docs/CODES.md)"},
    {OPT_OUT, "--out", "PATH", "output file or folder"},
    {OPT_SPLIT, "--split", "train|test", "which images to encode (default test)"},
    {OPT_COUNT, "--count", "N", "number of images (reconstruct, decode: default 16 or rows x cols; encode: all)"},
    {OPT_LATENTS, "--latents", NULL, "also store the encoder outputs (/latents, float32)"},
    {OPT_ROWS, "--rows", "R", "rows of tiles in the PNG (reconstruct: even, originals on top)"},
    {OPT_COLS, "--cols", "C", "columns of tiles in the PNG (default 8, fewer for fewer images)"},
    {OPT_SCALE, "--scale", "S", "draw every pixel S x S (default: the smallest S that makes tiles >= 64 px)"},
    {OPT_STEPS, "--steps", "N", "timed training steps (default 50)"},
    {OPT_WARMUP, "--warmup", "N", "untimed training steps before them (default 5)"},
};
enum { OPTION_COUNT = sizeof OPTIONS / sizeof OPTIONS[0] };

typedef struct {
    const char *name;
    unsigned options;       // OptionBits accepted
    unsigned required;      // OptionBits required
    int takes_overrides;    // accepts section.key=value arguments
    int (*run)(const CliArgs *args, Dist *dist);
    const char *help;
} CommandSpec;

static const CommandSpec COMMANDS[] = {
    {"train", OPT_CONFIG | OPT_RESUME, 0, 1, command_train, "train (the default command)"},
    {"eval", OPT_CHECKPOINT, OPT_CHECKPOINT, 1, command_eval, "evaluate a checkpoint on the test set"},
    {"reconstruct", OPT_CHECKPOINT | OPT_OUT | OPT_COUNT | OPT_ROWS | OPT_COLS | OPT_SCALE, OPT_CHECKPOINT | OPT_OUT, 1,
     command_reconstruct, "write a PNG of test images (top rows) and their reconstructions (bottom rows)"},
    {"encode", OPT_CHECKPOINT | OPT_OUT | OPT_SPLIT | OPT_COUNT | OPT_LATENTS, OPT_CHECKPOINT | OPT_OUT, 1,
     command_encode, "write the code of every image of a split to an HDF5 codes file (docs/CODES.md)"},
    {"decode", OPT_CHECKPOINT | OPT_CODES | OPT_OUT | OPT_COUNT | OPT_ROWS | OPT_COLS | OPT_SCALE,
     OPT_CHECKPOINT | OPT_CODES | OPT_OUT, 1, command_decode,
     "write a PNG of the images the decoder makes from a codes file's first codes"},
    {"sample", OPT_CHECKPOINT | OPT_OUT | OPT_COUNT | OPT_ROWS | OPT_COLS | OPT_SCALE, OPT_CHECKPOINT | OPT_OUT, 1,
     command_sample, "write a PNG of a VAE's decoder on --count (default 64) draws of z ~ N(0, I) (seed: train.seed)"},
    {"info", OPT_CHECKPOINT, OPT_CHECKPOINT, 0, command_info, "print a checkpoint's summary (also: info PATH)"},
    {"debug-step", OPT_CONFIG | OPT_OUT, OPT_OUT, 1, command_debug_step,
     "one training step with every input, gradient and result dumped to HDF5 files in --out (parity tests)"},
    {"bench", OPT_CONFIG | OPT_STEPS | OPT_WARMUP, 0, 1, command_bench,
     "time training steps on synthetic 3x32x32 data; one JSON line on stdout (docs/BENCHMARKS.md)"},
    {"layout", OPT_CONFIG, 0, 1, command_layout,
     "print the network's layers and the arena of activations and gradients for a config (reads no data)"},
    {"config-reference", 0, 0, 0, command_config_reference, "print the table of config keys (docs/CONFIG.md)"},
};
enum { COMMAND_COUNT = sizeof COMMANDS / sizeof COMMANDS[0] };

static void print_usage(FILE *out) {
    fprintf(out, "vqvae_dist %s: data-parallel VQ-VAE training\n\n", VQ_VERSION);
    fprintf(out, "usage: [mpirun -np N] vqvae_dist [COMMAND] [OPTIONS] [section.key=value ...]\n\ncommands:\n");
    for (int i = 0; i < COMMAND_COUNT; i++) {
        fprintf(out, "  %-17s %s\n", COMMANDS[i].name, COMMANDS[i].help);
        fprintf(out, "  %-17s", "");
        for (int j = 0; j < OPTION_COUNT; j++) {
            if (!(COMMANDS[i].options & OPTIONS[j].bit)) continue;
            int required = (COMMANDS[i].required & OPTIONS[j].bit) != 0;
            const char *arg = OPTIONS[j].arg;
            fprintf(out, " %s%s%s%s%s", required ? "" : "[", OPTIONS[j].flag, arg ? " " : "", arg ? arg : "",
                    required ? "" : "]");
        }
        if (COMMANDS[i].takes_overrides) fprintf(out, " [key=value ...]");
        fputc('\n', out);
    }
    fprintf(out, "\noptions:\n");
    for (int j = 0; j < OPTION_COUNT; j++)
        fprintf(out, "  %-12s %-10s %s\n", OPTIONS[j].flag, OPTIONS[j].arg ? OPTIONS[j].arg : "", OPTIONS[j].help);
    fprintf(out, "  %-23s %s\n  %-23s %s\n", "--help", "this text", "--version", "the program version");
    fprintf(out, "\nConfig keys and defaults: docs/CONFIG.md (or `vqvae_dist config-reference`).\n"
                 "Exit codes: 0 done, 1 error, 2 usage, %d stopped by a signal after a checkpoint (resume with "
                 "--resume auto), %d a peer rank died or hung.\n", EXIT_RESUMABLE, EXIT_COLLECTIVE_TIMEOUT);
}

static const CommandSpec *find_command(const char *name) {
    for (int i = 0; i < COMMAND_COUNT; i++)
        if (strcmp(COMMANDS[i].name, name) == 0) return &COMMANDS[i];
    return NULL;
}

static const OptionSpec *find_option(const char *flag) {
    for (int j = 0; j < OPTION_COUNT; j++)
        if (strcmp(OPTIONS[j].flag, flag) == 0) return &OPTIONS[j];
    return NULL;
}

// A whole number in [lo, hi] for `flag`, or a usage error.
static int parse_count(const char *flag, const char *value, int lo, int hi) {
    char *end;
    long n = strtol(value, &end, 10);
    if (end == value || *end || n < lo || n > hi)
        usage_error("%s expects a number from %d to %d, got '%s'", flag, lo, hi, value);
    return (int)n;
}

static void set_option(CliArgs *args, OptionBit bit, const char *value) {
    switch (bit) {
    case OPT_CONFIG: args->config_path = value; break;
    case OPT_RESUME: args->resume = value; break;
    case OPT_CHECKPOINT: args->checkpoint = value; break;
    case OPT_OUT: args->out = value; break;
    case OPT_COUNT: args->count = parse_count("--count", value, 1, 100000000); break;
    case OPT_STEPS: args->steps = parse_count("--steps", value, 1, 1000000); break;
    case OPT_WARMUP: args->warmup = parse_count("--warmup", value, 0, 1000000); break;
    case OPT_SPLIT:
        if (strcmp(value, "train") != 0 && strcmp(value, "test") != 0)
            usage_error("--split expects train or test, got '%s'", value);
        args->split = value;
        break;
    case OPT_CODES: args->codes = value; break;
    case OPT_LATENTS: args->latents = 1; break;
    case OPT_ROWS: args->rows = parse_count("--rows", value, 1, 10000); break;
    case OPT_COLS: args->cols = parse_count("--cols", value, 1, 10000); break;
    case OPT_SCALE: args->scale = parse_count("--scale", value, 1, 64); break;
    }
}

static const CommandSpec *parse_args(int argc, char **argv, CliArgs *args) {
    memset(args, 0, sizeof *args);
    args->split = "test";
    args->steps = 50;
    args->warmup = 5;
    args->overrides = calloc((size_t)argc, sizeof(char *));
    int i = 1;
    const CommandSpec *cmd = &COMMANDS[0];
    if (argc > 1 && argv[1][0] != '-' && !strchr(argv[1], '=')) {
        cmd = find_command(argv[1]);
        if (!cmd) {
            const char *best = NULL;
            int best_distance = 1 << 20;
            for (int c = 0; c < COMMAND_COUNT; c++) {
                int dist = edit_distance(argv[1], COMMANDS[c].name);
                if (dist < best_distance) { best_distance = dist; best = COMMANDS[c].name; }
            }
            usage_error("unknown command '%s'; did you mean '%s'?", argv[1], best);
        }
        i = 2;
    }
    unsigned seen = 0;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { print_usage(stdout); exit(EXIT_OK); }
        if (strcmp(a, "--version") == 0) { printf("vqvae_dist %s\n", VQ_VERSION); exit(EXIT_OK); }
        if (a[0] == '-') {
            const OptionSpec *opt = find_option(a);
            if (!opt) usage_error("unknown option '%s' for '%s'", a, cmd->name);
            if (!(cmd->options & opt->bit)) usage_error("'%s' does not take %s", cmd->name, opt->flag);
            if (!opt->arg) {
                set_option(args, opt->bit, NULL);
            } else {
                if (i + 1 >= argc) usage_error("%s needs a value: %s %s", opt->flag, opt->flag, opt->arg);
                set_option(args, opt->bit, argv[++i]);
            }
            seen |= opt->bit;
        } else if (strchr(a, '=')) {
            if (!cmd->takes_overrides) usage_error("'%s' takes no section.key=value overrides (got '%s')", cmd->name, a);
            args->overrides[args->override_count++] = a;
        } else if (cmd->options & OPT_CHECKPOINT && !(seen & OPT_CHECKPOINT)) {
            args->checkpoint = a;   // `info PATH`, `eval PATH`
            seen |= OPT_CHECKPOINT;
        } else {
            usage_error("unexpected argument '%s' for '%s' (overrides look like section.key=value)", a, cmd->name);
        }
    }
    for (int j = 0; j < OPTION_COUNT; j++)
        if ((cmd->required & OPTIONS[j].bit) && !(seen & OPTIONS[j].bit))
            usage_error("'%s' needs %s %s", cmd->name, OPTIONS[j].flag, OPTIONS[j].arg);
    return cmd;
}

int main(int argc, char **argv) {
    CliArgs args;
    const CommandSpec *cmd = parse_args(argc, argv, &args);
    if (cmd->run == command_config_reference || cmd->run == command_info) {
        int rc = cmd->run(&args, NULL);   // no MPI needed
        free(args.overrides);
        return rc;
    }
    Dist dist;
    dist_init(&dist, &argc, &argv);
    int rc = cmd->run(&args, &dist);
    dist_finalize(&dist);
    free(args.overrides);
    return rc;
}
