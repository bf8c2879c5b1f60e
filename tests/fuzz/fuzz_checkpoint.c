// fuzz_checkpoint.c: the checkpoint reader: any bytes as a checkpoint file through read_meta, load
// (with and without /optim) and info. A load that succeeds must have filled the expected tensors
// with finite values; a load that fails must leave them untouched.
// Files without the checksum header (older ones) go straight to HDF5 1.10.8, which crashes or
// leaks on some damaged files (docs/FUZZING.md); that is HDF5's code, not ours, so such inputs
// only pass the checksum gate here, unless VQ_FUZZ_UNSEALED=1 asks for the whole path.
#include <fcntl.h>
#include <math.h>

#include "fuzz.h"
#include "io/checkpoint.h"
#include "io/ckpt_internal.h"

// The expected tensors: a tiny model with one trainable weight and one buffer.
typedef struct {
    float w[6], b[3], m[6], v[6];
    CkptTensor t[4];
} Tiny;

static void tiny_init(Tiny *x, float fill) {
    for (int i = 0; i < 6; i++) x->w[i] = x->m[i] = x->v[i] = fill;
    for (int i = 0; i < 3; i++) x->b[i] = fill;
    CkptTensor t[4] = {
        {"model/w", 2, {2, 3}, x->w, 0},
        {"model/_buffer.b", 1, {3}, x->b, 0},
        {"optim/w/exp_avg", 2, {2, 3}, x->m, 0},
        {"optim/w/exp_avg_sq", 2, {2, 3}, x->v, 1},
    };
    memcpy(x->t, t, sizeof t);
}

void fuzz_make_seeds(const char *dir) {
    Tiny x;
    tiny_init(&x, 0.25f);
    x.w[1] = -3.5f, x.v[2] = 0.125f;
    CheckpointMeta meta;
    checkpoint_meta_init(&meta);
    meta.step = 12, meta.world_size = 2, meta.data_variance = 0.06;
    meta.image_channels = 1, meta.image_height = 28, meta.image_width = 28;
    snprintf(meta.arch, sizeof meta.arch, "resnet");
    snprintf(meta.quantizer, sizeof meta.quantizer, "vq");
    char path[1024], err[2048];
    const char *config = "model:\n  num_hiddens: 8\ntrain:\n  lr: 0.001\n";
    snprintf(path, sizeof path, "%s/full.h5", dir);
    if (checkpoint_save(path, x.t, 4, &meta, config, err, sizeof err) != 0) fprintf(stderr, "seed: %s\n", err);
    snprintf(path, sizeof path, "%s/model_only.h5", dir);
    if (checkpoint_save(path, x.t, 2, &meta, "", err, sizeof err) != 0) fprintf(stderr, "seed: %s\n", err);
}

static void check_load(const char *path, int flags) {
    Tiny x;
    tiny_init(&x, 7.0f);
    CheckpointMeta meta;
    char err[2048];
    int rc = checkpoint_load(path, x.t, 4, flags, &meta, NULL, err, sizeof err);
    int n_checked = flags & CKPT_LOAD_OPTIM ? 4 : 2;
    for (int t = 0; t < 4; t++) {
        int64_t n = x.t[t].shape[0] * (x.t[t].ndim > 1 ? x.t[t].shape[1] : 1);
        for (int64_t i = 0; i < n; i++) {
            float y = x.t[t].data[i];
            int bad = rc != 0 || t >= n_checked ? y != 7.0f : !isfinite(y) || (x.t[t].non_negative && y < 0.0f);
            if (bad) {
                fprintf(stderr, "load rc %d left '%s'[%lld] = %g (%s)\n", rc, x.t[t].name, (long long)i, (double)y,
                        err);
                abort();
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char magic[] = "vqvae_dist checkpoint\n";
    const char *unsealed = getenv("VQ_FUZZ_UNSEALED");
    if ((size < sizeof magic - 1 || memcmp(data, magic, sizeof magic - 1) != 0) && !(unsealed && *unsealed == '1')) {
        char err[2048];
        CkptCtx cx = {"fuzz input", err, sizeof err};
        ckpt_verify(data, size, &cx);
        return 0;
    }
    const char *path = fuzz_scratch("input.h5");
    fuzz_write(path, data, size);
    CheckpointMeta meta;
    char err[2048], *config = NULL;
    if (checkpoint_read_meta(path, CKPT_LOAD_OPTIM, &meta, &config, err, sizeof err) == 0) free(config);
    check_load(path, CKPT_LOAD_OPTIM);
    check_load(path, 0);
    checkpoint_print_info(path, err, sizeof err);   // stdout: tools/fuzz.sh closes it
    return 0;
}
