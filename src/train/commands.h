// commands.h: what each CLI command does (main.c only parses and dispatches).
#pragma once
#include "../dist/dist.h"

typedef struct {
    const char *config_path;   // --config
    const char *resume;        // --resume
    const char *checkpoint;    // --checkpoint / positional
    const char *out;           // --out
    int count;                 // --count; 0: not given (each command has its default)
    int steps;                 // --steps (bench: timed steps)
    int warmup;                // --warmup (bench: untimed steps first)
    const char *split;         // --split train|test (encode; default test)
    const char *codes;         // --codes (decode)
    int latents;               // --latents (encode)
    int rows, cols, scale;     // --rows, --cols, --scale (PNG grids); 0: not given
    const char **overrides;    // section.key=value
    int override_count;
} CliArgs;

// "error: ..." and a pointer to --help (from rank 0 only), then exit(EXIT_USAGE): a bad command line.
__attribute__((noreturn, format(printf, 1, 2))) void usage_error(const char *fmt, ...);

int command_train(const CliArgs *args, Dist *dist);
int command_eval(const CliArgs *args, Dist *dist);
int command_reconstruct(const CliArgs *args, Dist *dist);
int command_info(const CliArgs *args, Dist *dist);
int command_debug_step(const CliArgs *args, Dist *dist);
int command_layout(const CliArgs *args, Dist *dist);
int command_config_reference(const CliArgs *args, Dist *dist);
int command_bench(const CliArgs *args, Dist *dist);   // bench.c
int command_encode(const CliArgs *args, Dist *dist);  // cmd_codes.c
int command_decode(const CliArgs *args, Dist *dist);  // cmd_codes.c
int command_sample(const CliArgs *args, Dist *dist);  // cmd_codes.c
