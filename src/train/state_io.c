// state_io.c: saving and restoring the full training state (model_state.c, src/io/checkpoint.h).
// Rank 0 reads and writes files; the other ranks receive the state by broadcast, and every
// outcome (written, failed, restored) is agreed so no rank goes on alone.
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "trainer.h"

static size_t state_floats(const Model *m) { return m->registry.total_count + 2 * m->registry.trainable_count; }

static CheckpointState host_state(Trainer *t) {
    Model *m = &t->model;
    if (!t->host_state) t->host_state = xmalloc(state_floats(m) * sizeof(float));
    CheckpointState st = {
        .registry = &m->registry,
        .values = t->host_state,
        .exp_avg = t->host_state + m->registry.total_count,
        .exp_avg_sq = t->host_state + m->registry.total_count + m->registry.trainable_count,
    };
    return st;
}

void trainer_fill_meta(const Trainer *t, CheckpointMeta *meta) {
    checkpoint_meta_init(meta);
    meta->step = t->step;
    meta->epoch = t->position.epoch;
    meta->epoch_offset = t->position.offset;
    meta->samples_seen = t->samples_seen;
    meta->seed = t->cfg.seed;
    meta->world_size = t->dist->world;
    copy_string(meta->arch, sizeof meta->arch, t->cfg.arch);
    copy_string(meta->quantizer, sizeof meta->quantizer, t->cfg.quantizer);
    meta->data_variance = t->model.data_variance;
    meta->image_channels = t->model.in_channels;
    meta->image_height = t->model.height;
    meta->image_width = t->model.width;
    meta->adam_step = t->state_host.adam_steps;
    meta->lr = t->cfg.lr;
    meta->beta1 = t->cfg.beta1;
    meta->beta2 = t->cfg.beta2;
    meta->eps = t->cfg.adam_eps;
    meta->weight_decay = t->cfg.weight_decay;
}

CheckpointState trainer_download_state(Trainer *t) {
    Model *m = &t->model;
    OpsContext *ctx = &t->ctx;
    dist_sync(t->dist, ctx);
    CheckpointState st = host_state(t);
    ctx->ops->to_host(ctx, st.values, m->params, m->registry.total_count * sizeof(float));
    ctx->ops->to_host(ctx, st.exp_avg, m->adam_m, m->registry.trainable_count * sizeof(float));
    ctx->ops->to_host(ctx, st.exp_avg_sq, m->adam_v, m->registry.trainable_count * sizeof(float));
    return st;
}

void trainer_save_checkpoint(Trainer *t) {
    trainer_sync_state(t);   // the optimizer step count for the metadata
    int failed = 0;
    if (t->dist->rank == 0) {
        CheckpointState st = trainer_download_state(t);
        CheckpointMeta meta;
        trainer_fill_meta(t, &meta);
        char *yaml = config_to_yaml(&t->cfg);
        char path[CONFIG_STRING_MAX + 64], err[1024];
        double t0 = wall_time_seconds();
        if (model_state_save_in_dir(t->cfg.checkpoint_dir, &st, &meta, yaml, t->cfg.checkpoint_keep, path, sizeof path,
                                   err, sizeof err) != 0) {
            log_warn("writing the checkpoint of step %lld failed: %s", (long long)t->step, err);
            failed = 1;
        } else {
            log_info("checkpoint: %s (step %lld, %.2fs)", path, (long long)t->step, wall_time_seconds() - t0);
        }
        free(yaml);
    }
    // A run that cannot save must not go on: everything after the last good checkpoint would be
    // lost at the next failure.
    if (dist_agree_any(t->dist, failed))
        fatal("stopping because the checkpoint of step %lld could not be written (see rank 0's message); "
              "free disk space or fix checkpoint.dir, then resume with --resume auto", (long long)t->step);
}

// Rank 0: try the candidates in order; returns 0 and fills st/meta on success.
static int load_first_good(Trainer *t, char **paths, int count, int fall_back, CheckpointState *st,
                           CheckpointMeta *meta, char *chosen, size_t chosen_len, char *err, size_t err_len) {
    for (int i = 0; i < count; i++) {
        char *yaml = NULL;
        int rc = model_state_load(paths[i], st, 1, meta, &yaml, err, err_len);
        if (rc == 0 && yaml) {
            Config stored;
            char cfg_err[1024];
            if (model_state_config(&stored, yaml, paths[i], meta, err, err_len) != 0)
                rc = -1;
            else if (config_same_architecture(&stored, &t->cfg, cfg_err, sizeof cfg_err) != 0)
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
                             count, t->cfg.checkpoint_dir);
    return -1;
}

int trainer_resume(Trainer *t, const char *resume) {
    Model *m = &t->model;
    OpsContext *ctx = &t->ctx;
    int is_auto = strcmp(resume, "auto") == 0;
    // status: 0 = nothing to resume (auto, empty folder), 1 = restored, -1 = failed
    int status = 0;
    CheckpointMeta meta;
    memset(&meta, 0, sizeof meta);
    CheckpointState st = {0};
    char chosen[CONFIG_STRING_MAX + 64] = "";
    if (t->dist->rank == 0) {
        st = host_state(t);
        char err[2048] = "";
        char *paths[64];
        int count;
        if (is_auto) {
            count = checkpoint_list_in_dir(t->cfg.checkpoint_dir, paths, 64);
        } else {
            paths[0] = xstrdup(resume);
            count = 1;
        }
        if (count == 0) {
            log_info("resume: no checkpoint in '%s'; starting from scratch", t->cfg.checkpoint_dir);
        } else if (load_first_good(t, paths, count, is_auto, &st, &meta, chosen, sizeof chosen, err, sizeof err) == 0) {
            status = 1;
        } else {
            log_warn("cannot resume: %s", err);
            status = -1;
        }
        for (int i = 0; i < count; i++) free(paths[i]);
    }
    dist_broadcast_host(t->dist, &status, sizeof status, 0);
    if (status < 0)
        fatal("could not resume (see rank 0's message above); pass another checkpoint with --resume PATH, or "
              "remove --resume to start from scratch");
    if (status == 0) return 0;

    dist_broadcast_host(t->dist, &meta, sizeof meta, 0);
    if (t->dist->rank != 0) st = host_state(t);
    dist_broadcast_host(t->dist, t->host_state, state_floats(m) * sizeof(float), 0);
    ctx->ops->to_device(ctx, m->params, st.values, m->registry.total_count * sizeof(float));
    ctx->ops->to_device(ctx, m->adam_m, st.exp_avg, m->registry.trainable_count * sizeof(float));
    ctx->ops->to_device(ctx, m->adam_v, st.exp_avg_sq, m->registry.trainable_count * sizeof(float));

    t->step = meta.step;
    t->state_host.adam_steps = (int32_t)meta.adam_step;
    t->samples_seen = meta.samples_seen;
    t->position.epoch = meta.epoch;
    t->position.offset = meta.epoch_offset;
    if (meta.seed != t->cfg.seed) {
        log_warn("the checkpoint was trained with train.seed=%llu, the config says %llu: keeping the checkpoint's "
                 "seed so the data order continues", (unsigned long long)meta.seed, (unsigned long long)t->cfg.seed);
        t->cfg.seed = meta.seed;
        t->sampler.seed = meta.seed;
        t->sampler.epoch = -1;
    }
    log_info("resumed from %s: step %lld, epoch %lld (+%lld samples), %lld samples seen%s",
             t->dist->rank == 0 ? chosen : "checkpoint", (long long)meta.step, (long long)meta.epoch,
             (long long)meta.epoch_offset, (long long)meta.samples_seen,
             meta.world_size != t->dist->world ? " (written by another world size; the data order continues)" : "");
    return 1;
}

void trainer_load_weights(Trainer *t, const char *path) {
    Model *m = &t->model;
    int failed = 0;
    CheckpointMeta meta;
    checkpoint_meta_init(&meta);
    CheckpointState st = host_state(t);
    if (t->dist->rank == 0) {
        CheckpointState values = {st.registry, st.values, NULL, NULL};   // /optim is not read
        char err[2048];
        failed = model_state_load(path, &values, 0, &meta, NULL, err, sizeof err) != 0;
        if (failed) log_error("cannot load the weights of '%s': %s", path, err);
    }
    if (dist_agree_any(t->dist, failed))
        fatal("the weights of '%s' could not be loaded (see rank 0's message above); give another checkpoint with "
              "--checkpoint", path);
    dist_broadcast_host(t->dist, &meta, sizeof meta, 0);
    dist_broadcast_host(t->dist, st.values, m->registry.total_count * sizeof(float), 0);
    t->ctx.ops->to_device(&t->ctx, m->params, st.values, m->registry.total_count * sizeof(float));
    t->step = meta.step;
    t->samples_seen = meta.samples_seen;
}

void trainer_lock_checkpoint_dir(const Config *cfg, Dist *dist, CkptDirLock *lock) {
    lock->fd = -1;
    char err[2048];
    if (dist->rank == 0 && checkpoint_dir_lock(cfg->checkpoint_dir, lock, err, sizeof err) != 0) {
        log_error("%s", err);
        dist_abort(dist, EXIT_ERROR);   // every rank: the others are already waiting to start
    }
}
