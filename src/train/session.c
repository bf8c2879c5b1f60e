// session.c: see session.h.
#include "session.h"

#include <string.h>
#include <unistd.h>

#include "../core/common.h"
#include "model_spec.h"

static Precision precision_from_name(const char *name) {
    if (strcmp(name, "fp32") == 0) return PRECISION_FP32;
    if (strcmp(name, "bf16") == 0) return PRECISION_BF16;
    return PRECISION_TF32;
}

// train.threads, or the node's cores shared evenly by its ranks.
static int cpu_threads(const Config *cfg, const Dist *dist) {
    if (cfg->threads > 0) return cfg->threads;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = (int)(cores > 0 ? cores : 1) / (dist->local_world > 0 ? dist->local_world : 1);
    return threads < 1 ? 1 : threads;
}

void session_open(Session *s, const Config *cfg, Dist *dist, int channels, int height, int width, double variance) {
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->dist = dist;
    char err[1024];
    ModelSpec spec;
    if (model_spec_from_config(cfg, channels, height, width, variance, &spec, err, sizeof err) != 0) fatal("%s", err);
    spec.world = dist->world;
    int device_index = dist_local_device(dist, cuda_device_count());
    ops_context_init_with_conv(&s->ctx, cfg->device, device_index, cpu_threads(cfg, dist),
                               precision_from_name(cfg->precision), cfg->deterministic, cpu_conv_from_name(cfg->cpu_conv));
    dist_setup_comm(dist, &s->ctx, cfg->dist_backend, cfg->dist_timeout_s);
    model_build(&s->model, &spec, &s->ctx);
    // The largest device buffer a collective gets: the gradients (+ the verdict slot) or the
    // codebook statistics; the MPI backend on CUDA sizes its pinned staging buffer once for it.
    size_t stats = (size_t)spec.num_embeddings * (1 + (size_t)spec.embedding_dim);
    size_t grads = s->model.registry.trainable_count + 1;
    dist_reserve(dist, grads > stats ? grads : stats);
}

void session_close(Session *s) {
    if (!s->ctx.ops) return;
    dist_sync(s->dist, &s->ctx);   // nothing may still be queued behind a collective
    model_free(&s->model);
    dist_teardown_comm(s->dist);   // the NCCL communicator and pinned memory need the CUDA context
    ops_context_destroy(&s->ctx);
}
