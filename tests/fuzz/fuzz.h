// fuzz.h: what each harness (tests/fuzz/fuzz_*.c) provides, and what they share. A harness is one
// libFuzzer target (tools/fuzz.sh builds it with clang, ASan and UBSan) and, built with
// replay_main.c, a plain program that replays its seeds and every file of
// tests/fuzz/regressions/<target>/ (the ctest cases test_fuzz_replay_*).
#pragma once
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
// Writes the harness's seed inputs into dir, one file each (the corpus a run starts from).
void fuzz_make_seeds(const char *dir);

// Each harness uses some of these.
#pragma GCC diagnostic ignored "-Wunused-function"

static char fuzz_scratch_dir[64];

static void fuzz_remove_scratch(void) {
    DIR *d = opendir(fuzz_scratch_dir);
    struct dirent *e;
    char path[sizeof fuzz_scratch_dir + 260];
    while (d && (e = readdir(d)) != NULL) {
        snprintf(path, sizeof path, "%s/%s", fuzz_scratch_dir, e->d_name);
        if (e->d_name[0] != '.') unlink(path);
    }
    if (d) closedir(d);
    rmdir(fuzz_scratch_dir);
}

// A file of this process's scratch folder (made on first use, removed at exit; inputs go through
// real files because the readers take paths).
static const char *fuzz_scratch(const char *name) {
    char *dir = fuzz_scratch_dir;
    static char path[128];
    if (!dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof fuzz_scratch_dir, "%s/vq_fuzz.%ld", base, (long)getpid());
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            perror(dir);
            abort();
        }
        atexit(fuzz_remove_scratch);
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static void fuzz_write(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

static void fuzz_seed(const char *dir, const char *name, const void *data, size_t size) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fuzz_write(path, data, size);
}

#ifndef FUZZ_REPLAY_MAIN
// libFuzzer calls this first (in the harness's file): VQ_FUZZ_MAKE_SEEDS=DIR writes the seeds and
// exits.
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = getenv("VQ_FUZZ_MAKE_SEEDS");
    if (dir && *dir) {
        fuzz_make_seeds(dir);
        exit(0);
    }
    return 0;
}
#endif
