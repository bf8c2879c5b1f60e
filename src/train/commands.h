// commands.h: what each CLI command does (main.c only parses and dispatches).
#pragma once
#include "../dist/dist.h"

typedef struct {
    const char *config_path;   // --config
    const char *resume;        // --resume
    const char *checkpoint;    // --checkpoint / positional
    const char *out;           // --out
    int count;                 // --count
    int steps;                 // --steps (bench: timed steps)
    int warmup;                // --warmup (bench: untimed steps first)
    const char **overrides;    // section.key=value
    int override_count;
} CliArgs;

int command_train(const CliArgs *args, Dist *dist);
int command_eval(const CliArgs *args, Dist *dist);
int command_reconstruct(const CliArgs *args, Dist *dist);
int command_info(const CliArgs *args, Dist *dist);
int command_debug_step(const CliArgs *args, Dist *dist);
int command_layout(const CliArgs *args, Dist *dist);
int command_config_reference(const CliArgs *args, Dist *dist);
int command_bench(const CliArgs *args, Dist *dist);   // bench.c
