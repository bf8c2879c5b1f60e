// commands.c: train, eval, reconstruct, info, debug-step, config-reference (encode, decode:
// cmd_codes.c).
#include "commands.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/common.h"
#include "../io/h5dump.h"
#include "cmd_common.h"
#include "eval.h"
#include "state_io.h"
#include "trainer.h"

void usage_error(const char *fmt, ...) {
    if (launcher_rank() == 0) {   // every rank sees the same command line: one message is enough
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "error: ");
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nrun `vqvae_dist --help` for the commands and options\n");
    }
    exit(EXIT_USAGE);
}

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
// Fills *meta with the file's attributes (every rank reads them: they are small).
static void config_from_checkpoint(Config *cfg, const CliArgs *args, CheckpointMeta *meta) {
    char err[2048];
    char *yaml = NULL;
    if (checkpoint_read_meta(args->checkpoint, 0, meta, &yaml, err, sizeof err) != 0 ||
        model_state_config(cfg, yaml, args->checkpoint, meta, err, sizeof err) != 0)
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
    state_lock_checkpoint_dir(&cfg, dist, &lock);   // before anything is read or written there
    char metrics[CONFIG_STRING_MAX + 32];
    if (cfg.metrics_file[0]) snprintf(metrics, sizeof metrics, "%s", cfg.metrics_file);
    else snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", cfg.checkpoint_dir);
    Trainer t;
    trainer_setup(&t, &cfg, dist, args->resume, metrics);
    TrainOutcome outcome = trainer_run(&t);
    trainer_free(&t);
    checkpoint_dir_unlock(&lock);
    return outcome == TRAIN_STOPPED_RESUMABLE ? EXIT_RESUMABLE : EXIT_OK;
}

// The variance of the training set the checkpoint was trained on (the resnet's loss weight):
// stored in the file; files written before 0.2 do not have it, so it is computed again.
static double training_variance(const Config *cfg, const CheckpointMeta *meta) {
    if (!isnan(meta->data_variance)) return meta->data_variance;
    log_warn("the checkpoint does not store the training set's variance (an older file): reading the training set");
    char err[1024];
    Dataset train;
    if (dataset_load_split(cfg, SPLIT_TRAIN, &train, err, sizeof err) != 0) fatal("%s", err);
    double variance = train.variance;
    dataset_free(&train);
    return variance;
}

void open_from_checkpoint(Session *s, Dataset *ds, DatasetSplit split, const CliArgs *args, Dist *dist,
                          CheckpointMeta *meta) {
    Config cfg;
    config_from_checkpoint(&cfg, args, meta);
    double variance = training_variance(&cfg, meta);
    char err[1024];
    int channels, height, width;
    dataset_shape(&cfg, &channels, &height, &width);
    if (ds) {
        if (dataset_load_split(&cfg, split, ds, err, sizeof err) != 0) fatal("%s", err);
        channels = ds->channels;
        height = ds->height;
        width = ds->width;
    }
    session_open(s, &cfg, dist, channels, height, width, variance);
    state_load_model(s, args->checkpoint, meta);
    model_set_training(&s->model, 0);   // every command on a checkpoint evaluates: no dropout, z = mean
}

int command_eval(const CliArgs *args, Dist *dist) {
    Session s;
    Dataset test;
    CheckpointMeta meta;
    open_from_checkpoint(&s, &test, SPLIT_TEST, args, dist, &meta);
    StepMetrics sm = evaluate(&s, &test, s.cfg.eval_batches);
    char figures[256];
    metrics_format_eval(&s.model.spec, &sm, figures, sizeof figures);
    log_info("eval %s (step %lld): %s | %lld images", args->checkpoint, (long long)meta.step, figures,
             (long long)sm.images);
    session_close(&s);
    dataset_free(&test);
    return EXIT_OK;
}

// The first `count` test images and their reconstructions, originals first (host, [2 count] images).
static float *reconstruct_images(Session *s, const Dataset *test, int count) {
    Model *m = &s->model;
    int batch = m->spec.batch;
    size_t image = model_input_count(m) / (size_t)batch;
    float *grid = xmalloc((size_t)2 * count * image * sizeof(float));
    int64_t *indices = xmalloc((size_t)batch * sizeof(int64_t));
    float *host = xmalloc(model_input_count(m) * sizeof(float));
    model_set_training(m, 0);   // dropout off
    for (int done = 0; done < count; done += batch) {
        int n = count - done < batch ? count - done : batch;
        for (int i = 0; i < batch; i++) indices[i] = (done + (i < n ? i : 0)) % test->count;
        dataset_fill_batch(test, indices, batch, host);
        s->ctx.ops->to_device(&s->ctx, m->input, host, model_input_count(m) * sizeof(float));
        model_forward(m);
        memcpy(grid + (size_t)done * image, host, (size_t)n * image * sizeof(float));
        s->ctx.ops->to_host(&s->ctx, grid + (size_t)(count + done) * image, m->recon, (size_t)n * image * sizeof(float));
    }
    free(indices);
    free(host);
    return grid;
}

int command_reconstruct(const CliArgs *args, Dist *dist) {
    TileGrid tiles = tile_grid_plan(args, 2, 16, "test images and their reconstructions");
    Session s;
    Dataset test;
    CheckpointMeta meta;
    open_from_checkpoint(&s, &test, SPLIT_TEST, args, dist, &meta);
    const ModelSpec *sp = &s.model.spec;
    tile_grid_fit(&tiles, args, test.count, sp->height, sp->width);
    int count = tiles.count;
    float *grid = reconstruct_images(&s, &test, count);
    images_to_centered(grid, (size_t)2 * count * sp->in_channels * sp->height * sp->width, test.range);
    int rc = EXIT_OK;
    if (dist->rank == 0) {
        char err[512];
        // originals and reconstructions as two blocks of whole rows: each reconstruction under its original
        const float *blocks[2] = {grid, grid + (size_t)count * sp->in_channels * sp->height * sp->width};
        if (tile_grid_write(&tiles, args->out, blocks, sp->in_channels, sp->height, sp->width, err, sizeof err) != 0) {
            log_warn("%s", err);
            rc = EXIT_ERROR;
        } else {
            log_info("wrote %s: %d test images over their reconstructions, %d x %d tiles of %dx%d px", args->out,
                     count, 2 * tiles.rows, tiles.cols, sp->width * tiles.scale, sp->height * tiles.scale);
        }
    }
    free(grid);
    session_close(&s);
    dataset_free(&test);
    return rc;
}

int command_info(const CliArgs *args, Dist *dist) {
    (void)dist;
    char err[1024];
    if (checkpoint_print_info(args->checkpoint, err, sizeof err) != 0) {
        log_error("%s", err);
        return EXIT_ERROR;
    }
    return EXIT_OK;
}

int command_layout(const CliArgs *args, Dist *dist) {
    Config cfg;
    resolve_config(&cfg, args);
    int channels, height, width;
    dataset_shape(&cfg, &channels, &height, &width);
    Session s;
    session_open(&s, &cfg, dist, channels, height, width, 1.0);   // the variance changes no buffer
    if (dist->rank == 0) {
        const Model *m = &s.model;
        printf("%s: %s, batch %d per rank, images %dx%dx%d, %zu trainable parameters (%zu floats with buffers)\n\n",
               args->config_path ? args->config_path : "(defaults)", cfg.arch, cfg.batch_size, channels, height,
               width, m->registry.trainable_count, m->registry.total_count);
        net_print_layout(&m->net, stdout);
        fflush(stdout);
    }
    session_close(&s);
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
    CheckpointState st = state_download(&t->s, &t->st);
    CheckpointMeta meta;
    state_fill_meta(&t->s, &t->st, &meta);
    char *yaml = config_to_yaml(&t->s.cfg);
    char err[1024];
    if (model_state_save(path, &st, &meta, yaml, err, sizeof err) != 0) fatal("%s", err);
    free(yaml);
}

// A VQ-VAE's loss terms and codes; a VAE's loss terms, mean, logvar and the eps it drew (so the
// reference runs with the same noise).
static void dump_step_outputs(H5Dump *f, const Model *m, OpsContext *ctx, const StepMetrics *sm) {
    h5dump_attr_f64(f, "loss", sm->loss);
    if (!model_has_codebook(m)) {
        h5dump_attr_f64(f, "recon_loss", sm->recon_loss);
        h5dump_attr_f64(f, "kl", sm->kl);
        int64_t dims[2] = {m->spec.batch, m->spec.vae_latent_dim};
        size_t count = (size_t)dims[0] * (size_t)dims[1];
        float *host = xmalloc(count * sizeof(float));
        const Layer *r = &m->net.layers[m->reparam_layer];
        const float *arrays[3] = {m->vae_mean, m->vae_logvar, (const float *)m->net.slots[r->sp.aux[0]].data};
        const char *names[3] = {"mean", "logvar", "eps"};
        for (int i = 0; i < 3; i++) {
            ctx->ops->to_host(ctx, host, arrays[i], count * sizeof(float));
            h5dump_f32(f, names[i], host, 2, dims);
        }
        free(host);
        return;
    }
    h5dump_attr_f64(f, "recon_loss", sm->nmse);
    h5dump_attr_f64(f, "vq_loss", sm->vq_loss);
    h5dump_attr_f64(f, "perplexity", sm->perplexity);
    int latents = model_latent_count(m);
    int32_t *codes = xmalloc((size_t)latents * sizeof(int32_t));
    ctx->ops->to_host(ctx, codes, m->codes, (size_t)latents * sizeof(int32_t));
    int64_t code_dims[1] = {latents};
    h5dump_i32(f, "codes", codes, 1, code_dims);
    free(codes);
}

int command_debug_step(const CliArgs *args, Dist *dist) {
    if (dist->world != 1) fatal("debug-step runs on one rank; start it without mpirun");
    Config cfg;
    resolve_config(&cfg, args);
    mkdir(args->out, 0775);
    Trainer t;
    trainer_setup(&t, &cfg, dist, NULL, NULL);
    Model *m = &t.s.model;
    OpsContext *ctx = &t.s.ctx;
    char path[1024];

    trainer_begin_step(&t);   // the codebook init of step 0, if any, belongs to the state before the step
    snprintf(path, sizeof path, "%s/before.h5", args->out);
    save_state(&t, path);
    trainer_load_next_batch(&t);
    H5Dump f;
    snprintf(path, sizeof path, "%s/batch.h5", args->out);
    h5dump_create(&f, path);
    ctx->ops->to_host(ctx, t.st.batch_host, m->input, model_input_count(m) * sizeof(float));
    int64_t image_dims[4] = {m->spec.batch, m->spec.in_channels, m->spec.height, m->spec.width};
    h5dump_f32(&f, "images", t.st.batch_host, 4, image_dims);
    h5dump_attr_f64(&f, "data_variance", (float)t.train_set.variance);
    h5dump_close(&f);

    trainer_compute_gradients(&t);
    StepMetrics sm = train_log_collect(&t.log, &t.s, &t.st);
    snprintf(path, sizeof path, "%s/step.h5", args->out);
    h5dump_create(&f, path);
    dump_step_outputs(&f, m, ctx, &sm);
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
    train_state_sync(&t.st, &t.s);
    int finite = t.st.state_host.finite;
    snprintf(path, sizeof path, "%s/after.h5", args->out);
    save_state(&t, path);
    log_info("debug-step: wrote before.h5, batch.h5, step.h5 and after.h5 to %s (loss %.6f, finite %d)", args->out,
             sm.loss, finite);
    trainer_free(&t);
    return EXIT_OK;
}
