// train_state.c: see train_state.h.
#include "train_state.h"

#include <stdlib.h>
#include <string.h>

#include <assert.h>

#include "../core/common.h"

// The training set on the device, once (on the CPU backend the host array serves as is).
static void upload_train_set(TrainState *st, OpsContext *ctx) {
    const Dataset *ds = st->train_set;
    CHECK(ds->count <= INT32_MAX, "the training set has %lld images; at most %d are supported",
          (long long)ds->count, INT32_MAX);
    size_t bytes = (size_t)ds->count * ds->channels * ds->height * ds->width;
    if (ctx->kind == BACKEND_CPU) {
        st->pixels_device = ds->pixels;
    } else {
        st->pixels_device = ctx->ops->alloc(ctx, bytes);
        ctx->ops->to_device(ctx, st->pixels_device, ds->pixels, bytes);
    }
    st->perm_device = ctx->ops->alloc(ctx, (size_t)ds->count * sizeof(int32_t));
    st->perm_staging = xmalloc((size_t)ds->count * sizeof(int32_t));
    st->perm_device_epoch = -1;
}

void train_state_init(TrainState *st, Session *s, const Dataset *train_set) {
    memset(st, 0, sizeof *st);
    const Config *cfg = &s->cfg;
    OpsContext *ctx = &s->ctx;
    const Model *m = &s->model;
    st->train_set = train_set;
    sampler_init(&st->sampler, cfg->seed, train_set->count);
    st->adam_hyper = (AdamHyper){cfg->lr, cfg->beta1, cfg->beta2, cfg->adam_eps, cfg->weight_decay};
    st->usage_window = cfg->usage_window;
    st->usage_ring = ctx->ops->alloc(ctx, (size_t)cfg->usage_window * m->spec.num_embeddings * sizeof(float));
    st->state = ctx->ops->alloc(ctx, sizeof(StepState));
    if (cfg->dead_code_threshold > 0)
        st->restart_picks = ctx->ops->alloc(ctx, (size_t)m->spec.num_embeddings * (m->spec.embedding_dim + 1) *
                                                     sizeof(float));
    st->batch_indices = xmalloc((size_t)m->spec.batch * sizeof(int64_t));
    st->batch_host = xmalloc(model_input_count(m) * sizeof(float));
    upload_train_set(st, ctx);
}

void train_state_free(TrainState *st, Session *s) {
    OpsContext *ctx = &s->ctx;
    if (!st->state) return;
    dist_sync(s->dist, ctx);   // the buffers below may be in use by queued work
    ctx->ops->release(ctx, st->usage_ring);
    ctx->ops->release(ctx, st->state);
    ctx->ops->release(ctx, st->restart_picks);
    ctx->ops->release(ctx, st->perm_device);
    if (ctx->kind != BACKEND_CPU) ctx->ops->release(ctx, st->pixels_device);
    free(st->perm_staging);
    free(st->batch_indices);
    free(st->batch_host);
    free(st->host_state);
    sampler_free(&st->sampler);
    memset(st, 0, sizeof *st);
}

void train_state_upload(TrainState *st, Session *s) {
    CHECK(st->step < INT32_MAX, "step %lld exceeds the device step counter's range", (long long)st->step);
    int32_t adam_steps = st->state_host.adam_steps;
    int32_t restarts = st->state_host.restarts;
    st->state_host = (StepState){.steps = (int32_t)st->step, .adam_steps = adam_steps,
                                 .skipped = (int32_t)st->step - adam_steps, .finite = 1, .restarts = restarts};
    s->ctx.ops->to_device(&s->ctx, st->state, &st->state_host, sizeof st->state_host);
    st->first_step = st->step;
}

void train_state_sync(TrainState *st, Session *s) {
    int32_t skipped_before = st->state_host.skipped;
    dist_sync(s->dist, &s->ctx);   // a hung collective ends the job here instead of blocking to_host
    s->ctx.ops->to_host(&s->ctx, &st->state_host, st->state, sizeof st->state_host);
    CHECK(st->state_host.steps == st->step, "the device step counter (%d) disagrees with the host's (%lld)",
          st->state_host.steps, (long long)st->step);
    int32_t new_skips = st->state_host.skipped - skipped_before;
    if (new_skips > 0)   // every rank says so: the verdict is the same everywhere by construction
        log_warn("%lld step(s) skipped since the last report, the last one step %d: the loss or the gradient was "
                 "not finite on some rank, so every rank skipped the update (%lld skipped in all)",
                 (long long)new_skips, st->state_host.last_skipped, (long long)st->state_host.skipped);
}

int64_t train_state_next_batch(TrainState *st, Session *s) {
    Model *m = &s->model;
    OpsContext *ctx = &s->ctx;
    Sampler *sp = &st->sampler;
    int64_t start = sampler_next_slice(sp, &st->position, m->spec.batch, s->dist->world, s->dist->rank);
    if (sp->epoch != st->perm_device_epoch) {   // once per epoch: the permutation to the device
        dist_sync(s->dist, ctx);   // the copy may wait for the stream: bound it by the timeout
        for (int64_t i = 0; i < sp->count; i++) st->perm_staging[i] = (int32_t)sp->perm[i];
        ctx->ops->to_device(ctx, st->perm_device, st->perm_staging, (size_t)sp->count * sizeof(int32_t));
        st->perm_device_epoch = sp->epoch;
    }
    const Dataset *ds = st->train_set;
    size_t image_elems = (size_t)ds->channels * ds->height * ds->width;
    static_assert((int)RANGE_UNIT == (int)PIXELS_UNIT && (int)RANGE_SYMMETRIC == (int)PIXELS_SYMMETRIC &&
                      (int)RANGE_CENTERED == (int)PIXELS_CENTERED, "data.range: the io and kernel enums agree");
    ctx->ops->gather_images(ctx, st->pixels_device, st->perm_device, start, m->spec.batch, image_elems,
                            (PixelRange)ds->range, m->input);
    st->samples_seen += (int64_t)m->spec.batch * s->dist->world;
    return start;
}

void train_state_finish_step(TrainState *st, Session *s) {
    OpsContext *ctx = &s->ctx;
    int k = s->model.spec.num_embeddings;
    int slot = (int)(st->step % st->usage_window);
    if (model_has_codebook(&s->model))
        ctx->ops->copy(ctx, st->usage_ring + (size_t)slot * k, s->model.code_stats, (size_t)k * sizeof(float));
    st->step++;
}
