// state_io.c: see state_io.h.
#include "state_io.h"

#include <stdlib.h>
#include <string.h>

#include "../core/common.h"

static size_t state_floats(const Model *m) { return m->registry.total_count + 2 * m->registry.trainable_count; }

static CheckpointState host_state(const Model *m, float *buffer) {
    CheckpointState st = {
        .registry = &m->registry,
        .values = buffer,
        .exp_avg = buffer + m->registry.total_count,
        .exp_avg_sq = buffer + m->registry.total_count + m->registry.trainable_count,
    };
    return st;
}

static CheckpointState train_host_state(Session *s, TrainState *st) {
    if (!st->host_state) st->host_state = xmalloc(state_floats(&s->model) * sizeof(float));
    return host_state(&s->model, st->host_state);
}

void state_fill_meta(const Session *s, const TrainState *st, CheckpointMeta *meta) {
    const Config *cfg = &s->cfg;
    const ModelSpec *spec = &s->model.spec;
    checkpoint_meta_init(meta);
    meta->step = st->step;
    meta->epoch = st->position.epoch;
    meta->epoch_offset = st->position.offset;
    meta->samples_seen = st->samples_seen;
    meta->seed = cfg->seed;
    meta->world_size = s->dist->world;
    copy_string(meta->arch, sizeof meta->arch, cfg->arch);
    // a VAE has no quantizer (its config still holds the unused quantizer keys)
    copy_string(meta->quantizer, sizeof meta->quantizer, spec->type == MODEL_VAE ? "none (model.type vae)" : cfg->quantizer);
    meta->data_variance = spec->data_variance;
    meta->image_channels = spec->in_channels;
    meta->image_height = spec->height;
    meta->image_width = spec->width;
    meta->codebook_restarts = st->state_host.restarts;
    meta->adam_step = st->state_host.adam_steps;
    meta->lr = cfg->lr;
    meta->beta1 = cfg->beta1;
    meta->beta2 = cfg->beta2;
    meta->eps = cfg->adam_eps;
    meta->weight_decay = cfg->weight_decay;
}

CheckpointState state_download(Session *s, TrainState *st) {
    Model *m = &s->model;
    OpsContext *ctx = &s->ctx;
    dist_sync(s->dist, ctx);
    CheckpointState hs = train_host_state(s, st);
    ctx->ops->to_host(ctx, hs.values, m->params, m->registry.total_count * sizeof(float));
    ctx->ops->to_host(ctx, hs.exp_avg, m->adam_m, m->registry.trainable_count * sizeof(float));
    ctx->ops->to_host(ctx, hs.exp_avg_sq, m->adam_v, m->registry.trainable_count * sizeof(float));
    return hs;
}

void state_save_checkpoint(Session *s, TrainState *st) {
    train_state_sync(st, s);   // the optimizer step count for the metadata
    int failed = 0;
    if (s->dist->rank == 0) {
        CheckpointState hs = state_download(s, st);
        CheckpointMeta meta;
        state_fill_meta(s, st, &meta);
        char *yaml = config_to_yaml(&s->cfg);
        char path[CONFIG_STRING_MAX + 64], err[1024];
        double t0 = wall_time_seconds();
        if (model_state_save_in_dir(s->cfg.checkpoint_dir, &hs, &meta, yaml, s->cfg.checkpoint_keep, path, sizeof path,
                                   err, sizeof err) != 0) {
            log_warn("writing the checkpoint of step %lld failed: %s", (long long)st->step, err);
            failed = 1;
        } else {
            log_info("checkpoint: %s (step %lld, %.2fs)", path, (long long)st->step, wall_time_seconds() - t0);
        }
        free(yaml);
    }
    // A run that cannot save must not go on: everything after the last good checkpoint would be
    // lost at the next failure.
    if (dist_agree_any(s->dist, failed))
        fatal("stopping because the checkpoint of step %lld could not be written (see rank 0's message); "
              "free disk space or fix checkpoint.dir, then resume with --resume auto", (long long)st->step);
}

// Rank 0: try the candidates in order; returns 0 and fills st/meta on success.
static int load_first_good(const Config *cfg, char **paths, int count, int fall_back, CheckpointState *st,
                           CheckpointMeta *meta, char *chosen, size_t chosen_len, char *err, size_t err_len) {
    for (int i = 0; i < count; i++) {
        char *yaml = NULL;
        int rc = model_state_load(paths[i], st, 1, meta, &yaml, err, err_len);
        if (rc == 0 && yaml) {
            Config stored;
            char cfg_err[1024];
            if (model_state_config(&stored, yaml, paths[i], meta, err, err_len) != 0)
                rc = -1;
            else if (config_same_architecture(&stored, cfg, cfg_err, sizeof cfg_err) != 0)
                rc = set_error(err, err_len, "'%s' does not match this config: %s", paths[i], cfg_err);
        }
        free(yaml);
        if (rc == 0) {
            copy_string(chosen, chosen_len, paths[i]);
            return 0;
        }
        if (!fall_back) return -1;
        log_warn("skipping checkpoint: %s", err);
    }
    if (count > 0) set_error(err, err_len, "none of the %d checkpoints in '%s' could be loaded (reasons above)",
                             count, cfg->checkpoint_dir);
    return -1;
}

// Rank 0: the candidates (auto: checkpoint.dir newest first) and the first one that loads into hs.
// Returns 1 = restored, 0 = nothing to resume (auto, no checkpoint), -1 = failed (reason logged).
static int load_on_rank0(const Config *cfg, const char *resume, CheckpointState *hs, CheckpointMeta *meta,
                         char *chosen, size_t chosen_len) {
    int is_auto = strcmp(resume, "auto") == 0;
    char err[2048] = "";
    char *paths[64];
    int count = 1;
    if (is_auto) count = checkpoint_list_in_dir(cfg->checkpoint_dir, paths, 64);
    else paths[0] = xstrdup(resume);
    int status;
    if (count == 0) {
        log_info("resume: no checkpoint in '%s'; starting from scratch", cfg->checkpoint_dir);
        status = 0;
    } else if (load_first_good(cfg, paths, count, is_auto, hs, meta, chosen, chosen_len, err, sizeof err) == 0) {
        status = 1;
    } else {
        log_warn("cannot resume: %s", err);
        status = -1;
    }
    for (int i = 0; i < count; i++) free(paths[i]);
    return status;
}

// The restored position; a different seed in the file wins, so that the data order continues.
static void apply_meta(Session *s, TrainState *st, const CheckpointMeta *meta) {
    st->step = meta->step;
    st->state_host.adam_steps = (int32_t)meta->adam_step;
    st->state_host.restarts = meta->codebook_restarts > 0 ? meta->codebook_restarts : 0;   // the log's count goes on
    st->samples_seen = meta->samples_seen;
    st->position.epoch = meta->epoch;
    st->position.offset = meta->epoch_offset;
    if (meta->seed != s->cfg.seed) {
        log_warn("the checkpoint was trained with train.seed=%llu, the config says %llu: keeping the checkpoint's "
                 "seed so the data order continues", (unsigned long long)meta->seed, (unsigned long long)s->cfg.seed);
        s->cfg.seed = meta->seed;
        st->sampler.seed = meta->seed;
        st->sampler.epoch = -1;
    }
}

int state_resume(Session *s, TrainState *st, const char *resume) {
    Model *m = &s->model;
    OpsContext *ctx = &s->ctx;
    CheckpointMeta meta;
    checkpoint_meta_init(&meta);
    CheckpointState hs = train_host_state(s, st);
    char chosen[CONFIG_STRING_MAX + 64] = "";
    int status = 0;
    if (s->dist->rank == 0) status = load_on_rank0(&s->cfg, resume, &hs, &meta, chosen, sizeof chosen);
    dist_broadcast_host(s->dist, &status, sizeof status, 0);
    if (status < 0)
        fatal("could not resume (see rank 0's message above); pass another checkpoint with --resume PATH, or "
              "remove --resume to start from scratch");
    if (status == 0) return 0;

    dist_broadcast_host(s->dist, &meta, sizeof meta, 0);
    dist_broadcast_host(s->dist, st->host_state, state_floats(m) * sizeof(float), 0);
    ctx->ops->to_device(ctx, m->params, hs.values, m->registry.total_count * sizeof(float));
    ctx->ops->to_device(ctx, m->adam_m, hs.exp_avg, m->registry.trainable_count * sizeof(float));
    ctx->ops->to_device(ctx, m->adam_v, hs.exp_avg_sq, m->registry.trainable_count * sizeof(float));
    apply_meta(s, st, &meta);
    log_info("resumed from %s: step %lld, epoch %lld (+%lld samples), %lld samples seen%s",
             s->dist->rank == 0 ? chosen : "checkpoint", (long long)meta.step, (long long)meta.epoch,
             (long long)meta.epoch_offset, (long long)meta.samples_seen,
             meta.world_size != s->dist->world ? " (written by another world size; the data order continues)" : "");
    return 1;
}

void state_load_model(Session *s, const char *path, CheckpointMeta *meta) {
    Model *m = &s->model;
    size_t floats = m->registry.total_count;
    float *values = xmalloc(floats * sizeof(float));
    CheckpointState hs = {.registry = &m->registry, .values = values};   // no moments: /model only
    int failed = 0;
    checkpoint_meta_init(meta);
    if (s->dist->rank == 0) {
        char err[2048];
        failed = model_state_load(path, &hs, 0, meta, NULL, err, sizeof err) != 0;   // /optim is not read
        if (failed) log_error("cannot load the weights of '%s': %s", path, err);
    }
    if (dist_agree_any(s->dist, failed))
        fatal("the weights of '%s' could not be loaded (see rank 0's message above); give another checkpoint with "
              "--checkpoint", path);
    dist_broadcast_host(s->dist, meta, sizeof *meta, 0);
    dist_broadcast_host(s->dist, values, floats * sizeof(float), 0);
    s->ctx.ops->to_device(&s->ctx, m->params, values, floats * sizeof(float));
    free(values);
}

void state_lock_checkpoint_dir(const Config *cfg, Dist *dist, CkptDirLock *lock) {
    lock->fd = -1;
    char err[2048];
    if (dist->rank == 0 && checkpoint_dir_lock(cfg->checkpoint_dir, lock, err, sizeof err) != 0) {
        log_error("%s", err);
        dist_abort(dist, EXIT_ERROR);   // every rank: the others are already waiting to start
    }
}
