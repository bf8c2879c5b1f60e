// test_hooks.c: see test_hooks.h.
#include "test_hooks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"

// A STEP:RANK hook from the environment; -1:-1 when unset.
static void parse_step_rank(const char *name, int64_t *step, int *rank) {
    *step = -1;
    *rank = -1;
    const char *hook = getenv(name);
    if (!hook || !*hook) return;
    long long s;
    int r;
    if (sscanf(hook, "%lld:%d", &s, &r) != 2) fatal("%s='%s' is not STEP:RANK (e.g. 5:1)", name, hook);
    *step = s;
    *rank = r;
}

void test_hooks_open(TestHooks *h, int rank) {
    memset(h, 0, sizeof *h);
    h->rank = rank;
    parse_step_rank("VQ_TEST_INJECT_NAN", &h->inject_nan_step, &h->inject_nan_rank);
    parse_step_rank("VQ_TEST_PERTURB", &h->perturb_step, &h->perturb_rank);
    const char *dump = getenv("VQ_TEST_DUMP_CODEBOOK");
    h->codebook_dump = dump && *dump ? dump : NULL;
    const char *prefix = getenv("VQ_TEST_LOG_SAMPLES");
    if (prefix && *prefix) {
        char path[CONFIG_STRING_MAX + 32];
        snprintf(path, sizeof path, "%s.rank%d", prefix, rank);
        h->sample_log = fopen(path, "a");
        if (!h->sample_log) fatal("VQ_TEST_LOG_SAMPLES: cannot open '%s' for appending", path);
    }
}

void test_hooks_close(TestHooks *h) {
    if (h->sample_log) fclose(h->sample_log);
    h->sample_log = NULL;
}

int test_hooks_at(const TestHooks *h, int64_t step) { return step == h->inject_nan_step || step == h->perturb_step; }

void test_hooks_log_batch(TestHooks *h, const TrainState *st, int64_t start, int batch) {
    if (!h->sample_log) return;
    fprintf(h->sample_log, "epoch %lld step %lld", (long long)st->sampler.epoch, (long long)st->step);
    for (int i = 0; i < batch; i++) fprintf(h->sample_log, " %lld", (long long)st->sampler.perm[start + i]);
    fputc('\n', h->sample_log);
    fflush(h->sample_log);
}

void test_hooks_after_backward(TestHooks *h, Session *s, int64_t step) {
    if (step != h->inject_nan_step || h->rank != h->inject_nan_rank) return;
    float nan = NAN;
    s->ctx.ops->to_device(&s->ctx, s->model.grads, &nan, sizeof nan);
}

void test_hooks_after_codebook_init(TestHooks *h, Session *s) {
    if (!h->codebook_dump) return;
    size_t n = (size_t)s->model.spec.num_embeddings * s->model.spec.embedding_dim;
    float *host = xmalloc(n * sizeof(float));
    dist_sync(s->dist, &s->ctx);
    s->ctx.ops->to_host(&s->ctx, host, s->model.codebook, n * sizeof(float));
    char path[CONFIG_STRING_MAX + 32];
    snprintf(path, sizeof path, "%s.rank%d", h->codebook_dump, h->rank);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(host, sizeof(float), n, f) != n || fclose(f) != 0)
        fatal("VQ_TEST_DUMP_CODEBOOK: cannot write '%s'", path);
    free(host);
}

void test_hooks_after_update(TestHooks *h, Session *s, int64_t step) {
    if (step != h->perturb_step || h->rank != h->perturb_rank) return;
    dist_sync(s->dist, &s->ctx);
    float value;
    s->ctx.ops->to_host(&s->ctx, &value, s->model.params, sizeof value);
    value += 1e-3f;
    s->ctx.ops->to_device(&s->ctx, s->model.params, &value, sizeof value);
}
