// trainer.c: set-up, one training step, and the loop (see trainer.h).
#include "trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/common.h"
#include "../core/rng.h"

static Precision precision_from_name(const char *name) {
    if (strcmp(name, "fp32") == 0) return PRECISION_FP32;
    if (strcmp(name, "bf16") == 0) return PRECISION_BF16;
    return PRECISION_TF32;
}

static void parse_nan_hook(Trainer *t) {
    t->inject_nan_step = -1;
    t->inject_nan_rank = -1;
    const char *hook = getenv("VQ_TEST_INJECT_NAN");
    if (!hook || !*hook) return;
    long long step;
    int rank;
    if (sscanf(hook, "%lld:%d", &step, &rank) != 2)
        fatal("VQ_TEST_INJECT_NAN='%s' is not STEP:RANK (e.g. 5:1)", hook);
    t->inject_nan_step = step;
    t->inject_nan_rank = rank;
}

// mkdir -p for the run folder (rank 0).
static void make_dirs(const char *path) {
    char buf[CONFIG_STRING_MAX];
    copy_string(buf, sizeof buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        mkdir(buf, 0775);
        *p = '/';
    }
    if (mkdir(buf, 0775) != 0) {
        struct stat st;
        if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
            fatal("cannot create the run folder '%s' (checkpoint.dir); check the path and permissions", path);
    }
}

static void open_metrics_file(Trainer *t) {
    if (t->dist->rank != 0) return;
    char path[CONFIG_STRING_MAX + 32];
    if (t->cfg.metrics_file[0]) snprintf(path, sizeof path, "%s", t->cfg.metrics_file);
    else snprintf(path, sizeof path, "%s/metrics.jsonl", t->cfg.checkpoint_dir);
    t->metrics_file = fopen(path, "a");
    if (!t->metrics_file) fatal("cannot open the metrics file '%s' for appending (log.metrics_file)", path);
}

// The 'data' codebook init: K latent vectors of the first global batch, chosen by (seed) among
// all batch x world x h x w latents without replacement (with replacement only if there are
// fewer latents than codes). Each rank contributes the rows it holds and one all-reduce gives
// every rank the same codebook, whatever the world size.
static void init_codebook_from_data(Trainer *t) {
    Model *m = &t->model;
    OpsContext *ctx = &t->ctx;
    int k = m->num_embeddings, d = m->embedding_dim;
    int64_t local = model_latent_count(m);
    int64_t global = local * t->dist->world;
    size_t codebook_floats = (size_t)k * d;

    SamplerPosition first = t->position;   // peek: the first step trains on this same batch
    sampler_next_batch(&t->sampler, &first, m->batch, t->dist->world, t->dist->rank, t->batch_indices);
    dataset_fill_batch(&t->train_set, t->batch_indices, m->batch, t->batch_host);
    ctx->ops->to_device(ctx, m->input, t->batch_host, model_input_count(m) * sizeof(float));
    model_encode(m);

    float *z_host = xmalloc((size_t)local * d * sizeof(float));
    ctx->ops->to_host(ctx, z_host, m->z_flat, (size_t)local * d * sizeof(float));
    int64_t *pool = xmalloc((size_t)global * sizeof(int64_t));
    for (int64_t i = 0; i < global; i++) pool[i] = i;
    Rng rng = rng_stream(t->cfg.seed, RNG_PURPOSE_CODEBOOK, 0, 0);
    float *codebook = xcalloc(codebook_floats, sizeof(float));
    int64_t lo = local * t->dist->rank, hi = lo + local;
    for (int j = 0; j < k; j++) {
        int64_t pick;
        if (global >= k) {   // partial Fisher-Yates: distinct latents
            int64_t r = j + (int64_t)rng_below(&rng, (uint32_t)(global - j));
            int64_t tmp = pool[j];
            pool[j] = pool[r];
            pool[r] = tmp;
            pick = pool[j];
        } else {
            pick = (int64_t)rng_below(&rng, (uint32_t)global);
        }
        if (pick >= lo && pick < hi) memcpy(codebook + (size_t)j * d, z_host + (size_t)(pick - lo) * d, d * sizeof(float));
    }
    float *dev_codebook = m->params + m->codebook;
    ctx->ops->to_device(ctx, dev_codebook, codebook, codebook_floats * sizeof(float));
    dist_allreduce(t->dist, ctx, dev_codebook, codebook_floats, 0);
    if (m->quantizer == QUANTIZER_EMA) {
        ctx->ops->copy(ctx, m->params + m->ema_w, dev_codebook, codebook_floats * sizeof(float));
        ctx->ops->fill(ctx, m->params + m->ema_cluster_size, 1.0f, (size_t)k);
    }
    free(codebook);
    free(pool);
    free(z_host);
}

void trainer_setup(Trainer *t, const Config *cfg, Dist *dist, const char *resume) {
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->dist = dist;
    char err[1024];

    // Device: one GPU per local rank; CPU threads split between the ranks of a node.
    int threads = cfg->threads > 0 ? cfg->threads : 0;
    if (threads == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = (int)(cores > 0 ? cores : 1) / (dist->local_world > 0 ? dist->local_world : 1);
        if (threads < 1) threads = 1;
    }
    int device_index = dist_local_device(dist, cuda_device_count());
    ops_context_init(&t->ctx, cfg->device, device_index, threads, precision_from_name(cfg->precision),
                     cfg->deterministic);
    dist_setup_comm(dist, &t->ctx, cfg->dist_backend, cfg->dist_timeout_s);

    if (dataset_load(cfg, &t->train_set, &t->test_set, err, sizeof err) != 0) fatal("%s", err);
    const Dataset *ds = &t->train_set;
    log_info("data: %s: %lld training images %dx%dx%d (variance %.5f), %lld test images", ds->source,
             (long long)ds->count, ds->channels, ds->height, ds->width, ds->variance,
             (long long)t->test_set.count);
    int64_t global_batch = (int64_t)cfg->batch_size * dist->world;
    if (global_batch > ds->count)
        fatal("the global batch (train.batch_size %d x %d ranks = %lld) is larger than the training set (%lld "
              "images); lower train.batch_size", cfg->batch_size, dist->world, (long long)global_batch,
              (long long)ds->count);

    model_build(&t->model, cfg, &t->ctx, ds->channels, ds->height, ds->width, cfg->batch_size, (float)ds->variance);
    Model *m = &t->model;
    sampler_init(&t->sampler, cfg->seed, ds->count);
    t->batch_indices = xmalloc((size_t)cfg->batch_size * sizeof(int64_t));
    t->batch_host = xmalloc(model_input_count(m) * sizeof(float));
    size_t ring = (size_t)cfg->usage_window * m->num_embeddings;
    t->usage_ring = t->ctx.ops->alloc(&t->ctx, ring * sizeof(float));
    t->host_ring = xmalloc(ring * sizeof(float));
    t->host_counts = xmalloc((size_t)m->num_embeddings * sizeof(float));
    t->host_counts_f64 = xmalloc((size_t)m->num_embeddings * sizeof(double));
    parse_nan_hook(t);
    t->progress_bar = isatty(STDERR_FILENO) && dist->rank == 0;

    if (dist->rank == 0) make_dirs(cfg->checkpoint_dir);
    if (!(resume && trainer_resume(t, resume))) {
        model_init_params(m, cfg, cfg->seed);
        if (model_codebook_init_from_data(cfg)) init_codebook_from_data(t);
    }
    open_metrics_file(t);
    log_info("model: resnet, %zu trainable parameters, quantizer %s K=%d D=%d, latent %dx%d; backend %s, %d ranks, "
             "batch %d per rank (global %lld)", m->registry.trainable_count, cfg->quantizer, m->num_embeddings,
             m->embedding_dim, m->latent_height, m->latent_width, t->ctx.ops->name, dist->world, cfg->batch_size,
             (long long)global_batch);
}

void trainer_free(Trainer *t) {
    if (t->metrics_file) fclose(t->metrics_file);
    t->ctx.ops->release(&t->ctx, t->usage_ring);
    free(t->batch_indices);
    free(t->batch_host);
    free(t->host_ring);
    free(t->host_counts);
    free(t->host_counts_f64);
    free(t->host_state);
    sampler_free(&t->sampler);
    model_free(&t->model);
    dataset_free(&t->train_set);
    dataset_free(&t->test_set);
    ops_context_destroy(&t->ctx);
}

void trainer_load_next_batch(Trainer *t) {
    Model *m = &t->model;
    sampler_next_batch(&t->sampler, &t->position, m->batch, t->dist->world, t->dist->rank, t->batch_indices);
    dataset_fill_batch(&t->train_set, t->batch_indices, m->batch, t->batch_host);
    t->ctx.ops->to_device(&t->ctx, m->input, t->batch_host, model_input_count(m) * sizeof(float));
    t->samples_seen += (int64_t)m->batch * t->dist->world;
}

int trainer_compute_gradients(Trainer *t) {
    Model *m = &t->model;
    OpsContext *ctx = &t->ctx;
    const Ops *ops = ctx->ops;
    int k = m->num_embeddings;

    model_forward(m);
    model_backward(m);
    if (t->step == t->inject_nan_step && t->dist->rank == t->inject_nan_rank) {
        float nan = NAN;
        ops->to_device(ctx, m->grads, &nan, sizeof nan);
    }
    t->dist->current_step = t->step;
    dist_allreduce(t->dist, ctx, m->grads, m->registry.trainable_count, 1);
    if (m->quantizer == QUANTIZER_EMA)   // global counts and sums, so every rank updates identically
        dist_allreduce(t->dist, ctx, m->code_stats, (size_t)k + (size_t)k * m->embedding_dim, 0);

    // Every rank must take the same decision: agree on "not finite anywhere".
    float checks[SCALAR_COUNT];
    ops->sum_squares(ctx, m->grads, m->registry.trainable_count, m->scalars + SCALAR_GRAD_SUMSQ);
    ops->to_host(ctx, checks, m->scalars, sizeof checks);
    int bad = !isfinite(checks[SCALAR_GRAD_SUMSQ]) || !isfinite(checks[SCALAR_RECON_MSE]) ||
              !isfinite(checks[SCALAR_LATENT_MSE]);
    return !dist_agree_any(t->dist, bad);
}

void trainer_apply_update(Trainer *t, int finite) {
    Model *m = &t->model;
    OpsContext *ctx = &t->ctx;
    const Config *cfg = &t->cfg;
    int k = m->num_embeddings;
    int slot = (int)(t->step % cfg->usage_window);
    ctx->ops->copy(ctx, t->usage_ring + (size_t)slot * k, m->code_stats, (size_t)k * sizeof(float));
    t->step++;
    if (!finite) {
        t->skipped_steps++;
        log_warn("step %lld: loss or gradient is not finite on some rank; every rank skips this step "
                 "(%lld skipped so far)", (long long)t->step, (long long)t->skipped_steps);
        return;
    }
    t->adam_step++;
    ctx->ops->adam_update(ctx, m->params, m->grads, m->adam_m, m->adam_v, m->registry.trainable_count, cfg->lr,
                          cfg->beta1, cfg->beta2, cfg->adam_eps, cfg->weight_decay, (long)t->adam_step);
    if (m->quantizer == QUANTIZER_EMA) model_ema_update(m);
}

int trainer_step(Trainer *t) {
    trainer_load_next_batch(t);
    int finite = trainer_compute_gradients(t);
    trainer_apply_update(t, finite);
    return finite;
}

static void log_progress(Trainer *t) {
    double now = wall_time_seconds();
    double images = (double)(t->step - t->last_log_step) * t->model.batch * t->dist->world;
    double rate = now > t->last_log_time ? images / (now - t->last_log_time) : 0.0;
    StepMetrics sm = trainer_collect_metrics(t);
    metrics_print_line(t, &sm, rate);
    metrics_write_json(t, "train", &sm, rate);
    t->last_log_time = now;
    t->last_log_step = t->step;
}

static void run_eval(Trainer *t) {
    if (t->test_set.count < (int64_t)t->model.batch * t->dist->world) {
        log_info("eval: skipped, the test set (%lld images) is smaller than one global batch",
                 (long long)t->test_set.count);
        return;
    }
    double t0 = wall_time_seconds();
    StepMetrics sm = trainer_evaluate(t, &t->test_set);
    log_info("eval  step %lld | test nmse %.5f | recon mse %.6f | perplexity %.1f | usage %.3f | %.1fs",
             (long long)t->step, sm.nmse, sm.recon_mse, sm.perplexity, sm.usage, wall_time_seconds() - t0);
    metrics_write_json(t, "eval", &sm, 0.0);
}

TrainOutcome trainer_run(Trainer *t) {
    const Config *cfg = &t->cfg;
    signals_install();
    t->start_time = t->last_log_time = wall_time_seconds();
    t->last_log_step = t->step;
    int64_t first_step = t->step;
    if (t->step >= cfg->steps)
        log_info("already at step %lld of train.steps=%lld: nothing to train (raise train.steps to continue)",
                 (long long)t->step, (long long)cfg->steps);
    while (t->step < cfg->steps) {
        trainer_step(t);
        int last = t->step == cfg->steps;
        if (t->step % cfg->log_every == 0 || last || t->step == first_step + 1) log_progress(t);
        if (cfg->eval_every > 0 && t->step % cfg->eval_every == 0 && !last) run_eval(t);
        int stop = dist_agree_any(t->dist, signals_stop_requested());
        if (stop || last || (cfg->checkpoint_every > 0 && t->step % cfg->checkpoint_every == 0))
            trainer_save_checkpoint(t);
        if (stop && !last) {
            log_info("stopped by signal %d at step %lld; the checkpoint above resumes with --resume auto "
                     "(exit code %d)", signals_last(), (long long)t->step, EXIT_RESUMABLE);
            return TRAIN_STOPPED_RESUMABLE;
        }
    }
    run_eval(t);
    double elapsed = wall_time_seconds() - t->start_time;
    log_info("done: %lld steps in %.1fs (%.1f images/s overall), %lld skipped", (long long)(t->step - first_step),
             elapsed, elapsed > 0 ? (double)(t->step - first_step) * t->model.batch * t->dist->world / elapsed : 0.0,
             (long long)t->skipped_steps);
    return TRAIN_DONE;
}
