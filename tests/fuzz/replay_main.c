// replay_main.c: a harness as a plain program: its seeds (made into a scratch folder) and then
// every file under the folders or files given run through LLVMFuzzerTestOneInput once. A crash
// ends the program (and the ctest case) with the input's name printed just before.
#define FUZZ_REPLAY_MAIN
#include "fuzz.h"

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open '%s': %s\n", path, strerror(errno));
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    size_t got = buf ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    printf("replay: %s (%zu bytes)\n", path, got);
    fflush(stdout);
    LLVMFuzzerTestOneInput(buf, got);
    free(buf);
    return 0;
}

// Files of dir (not recursive), in name order so runs are repeatable; count of them, -1 on error.
static int replay_dir(const char *dir) {
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort), done = 0;
    if (n < 0) {
        fprintf(stderr, "replay: cannot list '%s': %s\n", dir, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char path[2048];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        if (names[i]->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode) && replay_file(path) == 0) done++;
        free(names[i]);
    }
    free(names);
    return done;
}

int main(int argc, char **argv) {
    char seeds[] = "/tmp/vq_fuzz_seeds.XXXXXX";
    if (!mkdtemp(seeds)) {
        perror("mkdtemp");
        return 1;
    }
    fuzz_make_seeds(seeds);
    int seeds_run = replay_dir(seeds), regressions = 0;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", seeds);
    if (system(cmd) != 0) fprintf(stderr, "replay: could not remove %s\n", seeds);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        int n = stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode) ? replay_dir(argv[i]) : replay_file(argv[i]) + 1;
        if (n < 0) return 1;
        regressions += n;
    }
    printf("replay: %d seeds and %d regression inputs ran without a crash\n", seeds_run, regressions);
    return seeds_run > 0 ? 0 : 1;
}
