// trainer.c: set-up, one training step, and the loop (see trainer.h).
#include "trainer.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/common.h"
#include "../core/rng.h"

static Precision precision_from_name(const char *name) {
    if (strcmp(name, "fp32") == 0) return PRECISION_FP32;
    if (strcmp(name, "bf16") == 0) return PRECISION_BF16;
    return PRECISION_TF32;
}

// A STEP:RANK test hook from the environment (see trainer.h); -1:-1 when unset.
static void parse_step_rank_hook(const char *name, int64_t *step, int *rank) {
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

static void open_test_hooks(Trainer *t) {
    parse_step_rank_hook("VQ_TEST_INJECT_NAN", &t->inject_nan_step, &t->inject_nan_rank);
    parse_step_rank_hook("VQ_TEST_PERTURB", &t->perturb_step, &t->perturb_rank);
    const char *prefix = getenv("VQ_TEST_LOG_SAMPLES");
    if (prefix && *prefix) {
        char path[CONFIG_STRING_MAX + 32];
        snprintf(path, sizeof path, "%s.rank%d", prefix, t->dist->rank);
        t->sample_log = fopen(path, "a");
        if (!t->sample_log) fatal("VQ_TEST_LOG_SAMPLES: cannot open '%s' for appending", path);
    }
}

// The training set on the device, once (on the CPU backend the host array serves as is).
static void upload_train_set(Trainer *t) {
    const Dataset *ds = &t->train_set;
    OpsContext *ctx = &t->ctx;
    CHECK(ds->count <= INT32_MAX, "the training set has %lld images; at most %d are supported",
          (long long)ds->count, INT32_MAX);
    size_t bytes = (size_t)ds->count * ds->channels * ds->height * ds->width;
    if (ctx->kind == BACKEND_CPU) {
        t->pixels_device = ds->pixels;
    } else {
        t->pixels_device = ctx->ops->alloc(ctx, bytes);
        ctx->ops->to_device(ctx, t->pixels_device, ds->pixels, bytes);
    }
    t->perm_device = ctx->ops->alloc(ctx, (size_t)ds->count * sizeof(int32_t));
    t->perm_staging = xmalloc((size_t)ds->count * sizeof(int32_t));
    t->perm_device_epoch = -1;
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
    ops_context_init_with_conv(&t->ctx, cfg->device, device_index, threads, precision_from_name(cfg->precision),
                               cfg->deterministic, cpu_conv_from_name(cfg->cpu_conv));
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
    t->state = t->ctx.ops->alloc(&t->ctx, sizeof(StepState));
    t->adam_hyper = (AdamHyper){cfg->lr, cfg->beta1, cfg->beta2, cfg->adam_eps, cfg->weight_decay};
    upload_train_set(t);
    open_test_hooks(t);
    t->progress_bar = isatty(STDERR_FILENO) && dist->rank == 0;

    if (dist->rank == 0 && make_dirs(cfg->checkpoint_dir, err, sizeof err) != 0)
        fatal("cannot create the run folder (checkpoint.dir): %s; check the path and permissions", err);
    if (!(resume && trainer_resume(t, resume))) {
        model_init_params(m, cfg, cfg->seed);
        if (model_codebook_init_from_data(cfg)) init_codebook_from_data(t);
    }
    // The device counters start from the (restored) host ones.
    CHECK(t->step < INT32_MAX, "step %lld exceeds the device step counter's range", (long long)t->step);
    int32_t adam_steps = t->state_host.adam_steps;
    t->state_host = (StepState){.steps = (int32_t)t->step, .adam_steps = adam_steps,
                                .skipped = (int32_t)t->step - adam_steps, .finite = 1};
    t->ctx.ops->to_device(&t->ctx, t->state, &t->state_host, sizeof t->state_host);
    t->first_step = t->step;
    open_metrics_file(t);
    log_info("model: resnet, %zu trainable parameters, quantizer %s K=%d D=%d, latent %dx%d; backend %s, %d ranks, "
             "batch %d per rank (global %lld)", m->registry.trainable_count, cfg->quantizer, m->num_embeddings,
             m->embedding_dim, m->latent_height, m->latent_width, t->ctx.ops->name, dist->world, cfg->batch_size,
             (long long)global_batch);
}

void trainer_free(Trainer *t) {
    dist_sync(t->dist, &t->ctx);   // nothing may still be queued behind a collective
    if (t->metrics_file) fclose(t->metrics_file);
    if (t->sample_log) fclose(t->sample_log);
    t->ctx.ops->release(&t->ctx, t->usage_ring);
    t->ctx.ops->release(&t->ctx, t->state);
    t->ctx.ops->release(&t->ctx, t->perm_device);
    if (t->ctx.kind != BACKEND_CPU) t->ctx.ops->release(&t->ctx, t->pixels_device);
    free(t->perm_staging);
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
    OpsContext *ctx = &t->ctx;
    Sampler *s = &t->sampler;
    int64_t start = sampler_next_slice(s, &t->position, m->batch, t->dist->world, t->dist->rank);
    if (s->epoch != t->perm_device_epoch) {   // once per epoch: the permutation to the device
        dist_sync(t->dist, ctx);   // the copy may wait for the stream: bound it by the timeout
        for (int64_t i = 0; i < s->count; i++) t->perm_staging[i] = (int32_t)s->perm[i];
        ctx->ops->to_device(ctx, t->perm_device, t->perm_staging, (size_t)s->count * sizeof(int32_t));
        t->perm_device_epoch = s->epoch;
    }
    const Dataset *ds = &t->train_set;
    size_t image_elems = (size_t)ds->channels * ds->height * ds->width;
    ctx->ops->gather_images(ctx, t->pixels_device, t->perm_device, start, m->batch, image_elems, m->input);
    if (t->sample_log) {
        fprintf(t->sample_log, "epoch %lld step %lld", (long long)s->epoch, (long long)t->step);
        for (int i = 0; i < m->batch; i++) fprintf(t->sample_log, " %lld", (long long)s->perm[start + i]);
        fputc('\n', t->sample_log);
        fflush(t->sample_log);
    }
    t->samples_seen += (int64_t)m->batch * t->dist->world;
}

void trainer_compute_gradients(Trainer *t) {
    Model *m = &t->model;
    OpsContext *ctx = &t->ctx;
    const Ops *ops = ctx->ops;
    int k = m->num_embeddings;
    size_t n = m->registry.trainable_count;

    model_forward(m);
    model_backward(m);
    // The slot after the gradients: NaN when this rank's losses are not finite. It travels in the
    // gradient all-reduce, so the reduced sum of squares below is not finite on every rank as soon
    // as one rank's loss or gradient is not: all ranks skip together, with no extra collective.
    static_assert(SCALAR_LATENT_MSE == SCALAR_RECON_MSE + 1, "the loss scalars are adjacent");
    ops->flag_nonfinite(ctx, m->scalars + SCALAR_RECON_MSE, 2, m->grads + n);
    if (t->step == t->inject_nan_step && t->dist->rank == t->inject_nan_rank) {
        float nan = NAN;
        ops->to_device(ctx, m->grads, &nan, sizeof nan);
    }
    t->dist->current_step = t->step;
    dist_allreduce(t->dist, ctx, m->grads, n + 1, 1);
    if (m->quantizer == QUANTIZER_EMA)   // global counts and sums, so every rank updates identically
        dist_allreduce(t->dist, ctx, m->code_stats, (size_t)k + (size_t)k * m->embedding_dim, 0);
    ops->sum_squares(ctx, m->grads, n + 1, m->scalars + SCALAR_GRAD_SUMSQ);
}

// The verdict, Adam and the EMA update: fixed launches reading the step's values from the
// device, so this and trainer_compute_gradients can be captured in a CUDA graph.
static void update_parameters(Trainer *t) {
    Model *m = &t->model;
    OpsContext *ctx = &t->ctx;
    ctx->ops->step_commit(ctx, t->state, m->scalars + SCALAR_GRAD_SUMSQ, &t->adam_hyper);
    ctx->ops->adam_update(ctx, m->params, m->grads, m->adam_m, m->adam_v, m->registry.trainable_count, t->state);
    if (m->quantizer == QUANTIZER_EMA) model_ema_update(m, t->state);
}

// After the update: this step's code counts into the usage window, the perturbation test hook,
// the host step counter.
static void finish_step(Trainer *t) {
    Model *m = &t->model;
    OpsContext *ctx = &t->ctx;
    int k = m->num_embeddings;
    int slot = (int)(t->step % t->cfg.usage_window);
    ctx->ops->copy(ctx, t->usage_ring + (size_t)slot * k, m->code_stats, (size_t)k * sizeof(float));
    if (t->step == t->perturb_step && t->dist->rank == t->perturb_rank) {
        dist_sync(t->dist, ctx);
        float value;
        ctx->ops->to_host(ctx, &value, m->params, sizeof value);
        value += 1e-3f;
        ctx->ops->to_device(ctx, m->params, &value, sizeof value);
    }
    t->step++;
}

void trainer_apply_update(Trainer *t) {
    update_parameters(t);
    finish_step(t);
}

// train.cuda_graph: the first step runs eagerly (cuDNN, cuBLAS and NCCL set themselves up), the
// second is captured and replayed from then on. Host-staged MPI collectives cannot be captured.
static int graph_possible(Trainer *t) {
    if (!t->cfg.cuda_graph) return 0;
    const char *why = NULL;
    if (!t->ctx.ops->graph_begin) why = "the backend has no CUDA graphs (device is not cuda)";
    else if (!dist_graph_capturable(t->dist))
        why = "the MPI communicator stages collectives through the host (use dist.backend: nccl)";
    if (why) {
        log_warn("train.cuda_graph is on, but %s: the step runs without a graph", why);
        t->cfg.cuda_graph = 0;
        return 0;
    }
    return 1;
}

void trainer_step(Trainer *t) {
    trainer_load_next_batch(t);
    int hook_step = t->step == t->inject_nan_step || t->step == t->perturb_step;
    if (t->cfg.cuda_graph && t->ctx.graph == NULL && t->step > t->first_step && !hook_step && graph_possible(t)) {
        t->ctx.ops->graph_begin(&t->ctx);
        trainer_compute_gradients(t);
        update_parameters(t);
        t->ctx.ops->graph_end(&t->ctx);
        log_info("train.cuda_graph: step %lld captured; later steps replay it", (long long)t->step + 1);
    }
    if (t->ctx.graph && !hook_step) {
        t->dist->current_step = t->step;
        t->ctx.ops->graph_launch(&t->ctx);
    } else {
        trainer_compute_gradients(t);
        update_parameters(t);
    }
    finish_step(t);
}

void trainer_sync_state(Trainer *t) {
    int32_t skipped_before = t->state_host.skipped;
    dist_sync(t->dist, &t->ctx);   // a hung collective ends the job here instead of blocking to_host
    t->ctx.ops->to_host(&t->ctx, &t->state_host, t->state, sizeof t->state_host);
    CHECK(t->state_host.steps == t->step, "the device step counter (%d) disagrees with the host's (%lld)",
          t->state_host.steps, (long long)t->step);
    int32_t new_skips = t->state_host.skipped - skipped_before;
    if (new_skips > 0)   // every rank says so: the verdict is the same everywhere by construction
        log_warn("%lld step(s) skipped since the last report, the last one step %d: the loss or the gradient was "
                 "not finite on some rank, so every rank skipped the update (%lld skipped in all)",
                 (long long)new_skips, t->state_host.last_skipped, (long long)t->state_host.skipped);
}

// FNV-1a over the bytes: any difference in any bit shows.
static uint64_t checksum_bytes(const void *data, size_t bytes, uint64_t hash) {
    const unsigned char *p = data;
    for (size_t i = 0; i < bytes; i++) hash = (hash ^ p[i]) * 0x100000001b3ull;
    return hash;
}

void trainer_verify_ranks(Trainer *t) {
    CheckpointState st = trainer_download_state(t);
    const ParamRegistry *reg = &t->model.registry;
    uint64_t hash = 0xcbf29ce484222325ull;
    hash = checksum_bytes(st.values, reg->total_count * sizeof(float), hash);
    hash = checksum_bytes(st.exp_avg, reg->trainable_count * sizeof(float), hash);
    hash = checksum_bytes(st.exp_avg_sq, reg->trainable_count * sizeof(float), hash);
    int world = t->dist->world;
    uint64_t *all = xmalloc((size_t)world * sizeof(uint64_t));
    dist_allgather_u64(t->dist, hash, all);
    char differ[512] = "";
    size_t used = 0;
    int count = 0;
    for (int r = 1; r < world; r++) {
        if (all[r] == all[0]) continue;
        count++;
        if (used < sizeof differ - 16) used += (size_t)snprintf(differ + used, sizeof differ - used, "%s%d",
                                                                count > 1 ? ", " : "", r);
    }
    free(all);
    if (count == 0) {
        log_info("verify: step %lld: all %d ranks hold identical parameters, codebook and Adam moments "
                 "(checksum %016llx)", (long long)t->step, world, (unsigned long long)hash);
        return;
    }
    if (t->dist->rank == 0)
        log_error("dist.verify_every: at step %lld the parameters of rank(s) %s differ from rank 0's (checksum of "
                  "parameters, codebook and Adam moments). The ranks have diverged, which should never happen: "
                  "report it with the config; resume from the last checkpoint.", (long long)t->step, differ);
    dist_barrier(t->dist);   // rank 0's message first, then every rank ends the same way
    exit(EXIT_ERROR);
}

static void log_progress(Trainer *t) {
    trainer_sync_state(t);
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
    dist_sync(t->dist, &t->ctx);
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

// Which signal stopped the run and which rank got it (often not rank 0: Slurm or a user may
// signal any rank); collective.
static void log_stop(Trainer *t) {
    int world = t->dist->world;
    uint64_t *signals = xmalloc((size_t)world * sizeof(uint64_t));
    dist_allgather_u64(t->dist, (uint64_t)signals_last(), signals);
    int who = 0;
    while (who < world - 1 && signals[who] == 0) who++;
    log_info("stopped by signal %d (received by rank %d) at step %lld; the checkpoint above resumes with "
             "--resume auto (exit code %d)", (int)signals[who], who, (long long)t->step, EXIT_RESUMABLE);
    free(signals);
}

TrainOutcome trainer_run(Trainer *t) {
    const Config *cfg = &t->cfg;
    signals_install();
    t->start_time = t->last_log_time = wall_time_seconds();
    t->last_log_step = t->step;
    int64_t first_step = t->first_step = t->step;
    if (t->step >= cfg->steps)
        log_info("already at step %lld of train.steps=%lld: nothing to train (raise train.steps to continue)",
                 (long long)t->step, (long long)cfg->steps);
    while (t->step < cfg->steps) {
        trainer_step(t);
        int last = t->step == cfg->steps;
        if (t->step % cfg->log_every == 0 || last || t->step == first_step + 1) log_progress(t);
        if (cfg->verify_every > 0 && (t->step % cfg->verify_every == 0 || last)) trainer_verify_ranks(t);
        // Replayed graphs have no run-ahead limit of their own (dist.h): bound the queue here.
        if (t->ctx.graph && t->step % 64 == 0) dist_sync(t->dist, &t->ctx);
        if (cfg->eval_every > 0 && t->step % cfg->eval_every == 0 && !last) run_eval(t);
        int stop = dist_agree_any(t->dist, signals_stop_requested());
        if (stop || last || (cfg->checkpoint_every > 0 && t->step % cfg->checkpoint_every == 0))
            trainer_save_checkpoint(t);
        if (stop && !last) {
            log_stop(t);
            return TRAIN_STOPPED_RESUMABLE;
        }
    }
    run_eval(t);
    trainer_sync_state(t);
    double elapsed = wall_time_seconds() - t->start_time;
    log_info("done: %lld steps in %.1fs (%.1f images/s overall), %lld skipped", (long long)(t->step - first_step),
             elapsed, elapsed > 0 ? (double)(t->step - first_step) * t->model.batch * t->dist->world / elapsed : 0.0,
             (long long)t->state_host.skipped);
    return TRAIN_DONE;
}
