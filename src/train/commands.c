// commands.c: train, eval, reconstruct, info, debug-step, config-reference.
#include "commands.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/common.h"
#include "../io/h5dump.h"
#include "../io/image_png.h"
#include "trainer.h"

static void apply_overrides(Config *cfg, const CliArgs *args) {
    char err[1024];
    for (int i = 0; i < args->override_count; i++)
        if (config_apply_override(cfg, args->overrides[i], err, sizeof err) != 0) fatal("%s", err);
    if (config_validate(cfg, err, sizeof err) != 0) fatal("%s", err);
}

// The config of a command that trains: defaults, then --config, then overrides.
static void resolve_config(Config *cfg, const CliArgs *args) {
    char err[1024];
    config_defaults(cfg);
    if (args->config_path && config_load_file(cfg, args->config_path, err, sizeof err) != 0) fatal("%s", err);
    apply_overrides(cfg, args);
}

// The config of a command that reads a checkpoint: the stored config, then overrides.
static void config_from_checkpoint(Config *cfg, const CliArgs *args) {
    char err[2048];
    CheckpointMeta meta;
    char *yaml = NULL;
    if (checkpoint_read_meta(args->checkpoint, 0, &meta, &yaml, err, sizeof err) != 0 ||
        model_state_config(cfg, yaml, args->checkpoint, &meta, err, sizeof err) != 0)
        fatal("%s", err);
    free(yaml);
    apply_overrides(cfg, args);
}

static void print_config(const Config *cfg) {
    char *yaml = config_to_yaml(cfg);
    log_info("--- resolved config ---\n%s-----------------------", yaml);
    free(yaml);
}

int command_train(const CliArgs *args, Dist *dist) {
    Config cfg;
    resolve_config(&cfg, args);
    print_config(&cfg);
    CkptDirLock lock;
    trainer_lock_checkpoint_dir(&cfg, dist, &lock);   // before anything is read or written there
    Trainer t;
    trainer_setup(&t, &cfg, dist, args->resume);
    TrainOutcome outcome = trainer_run(&t);
    trainer_free(&t);
    checkpoint_dir_unlock(&lock);
    return outcome == TRAIN_STOPPED_RESUMABLE ? EXIT_RESUMABLE : EXIT_OK;
}

int command_eval(const CliArgs *args, Dist *dist) {
    Config cfg;
    config_from_checkpoint(&cfg, args);
    Trainer t;
    trainer_setup(&t, &cfg, dist, NULL);
    trainer_load_weights(&t, args->checkpoint);
    StepMetrics sm = trainer_evaluate(&t, &t.test_set);
    log_info("eval %s (step %lld): test nmse %.5f | recon mse %.6f | vq loss %.5f | perplexity %.1f | usage %.3f",
             args->checkpoint, (long long)t.step, sm.nmse, sm.recon_mse, sm.vq_loss, sm.perplexity, sm.usage);
    trainer_free(&t);
    return EXIT_OK;
}

int command_reconstruct(const CliArgs *args, Dist *dist) {
    Config cfg;
    config_from_checkpoint(&cfg, args);
    Trainer t;
    trainer_setup(&t, &cfg, dist, NULL);
    trainer_load_weights(&t, args->checkpoint);
    Model *m = &t.model;
    int count = args->count;
    if (count > t.test_set.count) count = (int)t.test_set.count;
    int image = m->in_channels * m->height * m->width;
    float *grid = xmalloc((size_t)2 * count * image * sizeof(float));
    // rows of `columns` originals, then the same rows reconstructed
    for (int done = 0; done < count; done += m->batch) {
        int n = count - done < m->batch ? count - done : m->batch;
        for (int i = 0; i < m->batch; i++) t.batch_indices[i] = (done + (i < n ? i : 0)) % t.test_set.count;
        dataset_fill_batch(&t.test_set, t.batch_indices, m->batch, t.batch_host);
        t.ctx.ops->to_device(&t.ctx, m->input, t.batch_host, model_input_count(m) * sizeof(float));
        model_forward(m);
        memcpy(grid + (size_t)done * image, t.batch_host, (size_t)n * image * sizeof(float));
        t.ctx.ops->to_host(&t.ctx, grid + (size_t)(count + done) * image, m->recon, (size_t)n * image * sizeof(float));
    }
    int rc = EXIT_OK;
    if (dist->rank == 0) {
        char err[512];
        int columns = count < 8 ? count : 8;
        // originals and reconstructions as two blocks: pad the originals to whole rows
        if (png_write_grid(args->out, grid, 2 * count, m->in_channels, m->height, m->width, columns, err, sizeof err) != 0) {
            log_warn("%s", err);
            rc = EXIT_ERROR;
        } else {
            log_info("wrote %s: %d test images (first %d) and their reconstructions (last %d)", args->out, 2 * count,
                     count, count);
        }
    }
    free(grid);
    trainer_free(&t);
    return rc;
}

int command_info(const CliArgs *args, Dist *dist) {
    (void)dist;
    char err[1024];
    if (checkpoint_print_info(args->checkpoint, err, sizeof err) != 0) {
        fprintf(stderr, "error: %s\n", err);
        return EXIT_ERROR;
    }
    return EXIT_OK;
}

int command_config_reference(const CliArgs *args, Dist *dist) {
    (void)args;
    (void)dist;
    config_print_reference(stdout);
    return EXIT_OK;
}

// ---- debug-step: the parity tests' view of one step ------------------------------------------

static void save_state(Trainer *t, const char *path) {
    CheckpointState st = trainer_download_state(t);
    CheckpointMeta meta;
    trainer_fill_meta(t, &meta);
    char *yaml = config_to_yaml(&t->cfg);
    char err[1024];
    if (model_state_save(path, &st, &meta, yaml, err, sizeof err) != 0) fatal("%s", err);
    free(yaml);
}

int command_debug_step(const CliArgs *args, Dist *dist) {
    if (dist->world != 1) fatal("debug-step runs on one rank; start it without mpirun");
    Config cfg;
    resolve_config(&cfg, args);
    mkdir(args->out, 0775);
    Trainer t;
    trainer_setup(&t, &cfg, dist, NULL);
    Model *m = &t.model;
    OpsContext *ctx = &t.ctx;
    char path[1024];

    snprintf(path, sizeof path, "%s/before.h5", args->out);
    save_state(&t, path);
    trainer_load_next_batch(&t);
    H5Dump f;
    snprintf(path, sizeof path, "%s/batch.h5", args->out);
    h5dump_create(&f, path);
    ctx->ops->to_host(ctx, t.batch_host, m->input, model_input_count(m) * sizeof(float));
    int64_t image_dims[4] = {m->batch, m->in_channels, m->height, m->width};
    h5dump_f32(&f, "images", t.batch_host, 4, image_dims);
    h5dump_attr_f64(&f, "data_variance", m->data_variance);
    h5dump_close(&f);

    trainer_compute_gradients(&t);
    StepMetrics sm = trainer_collect_metrics(&t);
    snprintf(path, sizeof path, "%s/step.h5", args->out);
    h5dump_create(&f, path);
    h5dump_attr_f64(&f, "loss", sm.loss);
    h5dump_attr_f64(&f, "recon_loss", sm.nmse);
    h5dump_attr_f64(&f, "vq_loss", sm.vq_loss);
    h5dump_attr_f64(&f, "perplexity", sm.perplexity);
    int latents = model_latent_count(m);
    int32_t *codes = xmalloc((size_t)latents * sizeof(int32_t));
    ctx->ops->to_host(ctx, codes, m->codes, (size_t)latents * sizeof(int32_t));
    int64_t code_dims[1] = {latents};
    h5dump_i32(&f, "codes", codes, 1, code_dims);
    free(codes);
    h5dump_group(&f, "grad");
    float *grads = xmalloc(m->registry.trainable_count * sizeof(float));
    ctx->ops->to_host(ctx, grads, m->grads, m->registry.trainable_count * sizeof(float));
    for (int i = 0; i < m->registry.count; i++) {
        const ParamEntry *e = &m->registry.entries[i];
        if (!e->trainable) continue;
        int64_t dims[PARAM_MAX_DIMS];
        for (int d = 0; d < e->ndim; d++) dims[d] = e->shape[d];
        char name[PARAM_KEY_MAX + 8];
        snprintf(name, sizeof name, "grad/%s", e->key);
        h5dump_f32(&f, name, grads + e->offset, e->ndim, dims);
    }
    free(grads);
    h5dump_close(&f);

    trainer_apply_update(&t);
    trainer_sync_state(&t);
    int finite = t.state_host.finite;
    snprintf(path, sizeof path, "%s/after.h5", args->out);
    save_state(&t, path);
    log_info("debug-step: wrote before.h5, batch.h5, step.h5 and after.h5 to %s (loss %.6f, finite %d)", args->out,
             sm.loss, finite);
    trainer_free(&t);
    return EXIT_OK;
}
