// trainer.c: set-up, one training step, and the loop (see trainer.h).
#include "trainer.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "codebook_init.h"
#include "eval.h"
#include "state_io.h"

static void load_data(Trainer *t, const Config *cfg, int world) {
    char err[1024];
    if (dataset_load(cfg, &t->train_set, &t->test_set, err, sizeof err) != 0) fatal("%s", err);
    const Dataset *ds = &t->train_set;
    log_info("data: %s: %lld training images %dx%dx%d (variance %.5f), %lld test images", ds->source,
             (long long)ds->count, ds->channels, ds->height, ds->width, ds->variance, (long long)t->test_set.count);
    int64_t global_batch = (int64_t)cfg->batch_size * world;
    if (global_batch > ds->count)
        fatal("the global batch (train.batch_size %d x %d ranks = %lld) is larger than the training set (%lld "
              "images); lower train.batch_size", cfg->batch_size, world, (long long)global_batch,
              (long long)ds->count);
}

// On the CPU: what runs the convolutions, in which precision, on which instruction set.
static void log_cpu_convs(const OpsContext *ctx) {
    if (ctx->kind != BACKEND_CPU) return;
    int bf16 = ctx->precision == PRECISION_BF16, onednn = ctx->cpu_conv == CPU_CONV_ONEDNN;
    log_info("cpu: %d thread(s), convolutions %s in %s%s%s", ctx->threads, cpu_conv_name(ctx->cpu_conv),
             bf16 ? "bf16" : "fp32", onednn ? ", oneDNN ISA " : "", onednn ? onednn_isa_name() : "");
    // Measured (docs/BENCHMARKS.md): bf16 pays through AMX; with AVX512-BF16 alone it is slower than fp32.
    if (bf16 && strcmp(onednn_isa_name(), "avx512_core_amx") != 0)
        log_warn("train.precision=bf16 without AMX: on AVX512-BF16 alone oneDNN's bf16 convolutions were "
                 "slower than fp32 (0.74x); train.precision=fp32 is likely faster here");
}

void trainer_setup(Trainer *t, const Config *cfg, Dist *dist, const char *resume, const char *metrics_path) {
    memset(t, 0, sizeof *t);
    load_data(t, cfg, dist->world);
    const Dataset *ds = &t->train_set;
    session_open(&t->s, cfg, dist, ds->channels, ds->height, ds->width, ds->variance);
    Session *s = &t->s;
    Model *m = &s->model;
    train_state_init(&t->st, s, &t->train_set);
    // dropout masks: keyed on the step under way and the global sample index (any world size)
    model_set_random(m, cfg->seed, &t->st.state->steps, (int64_t)cfg->batch_size * dist->rank);
    test_hooks_open(&t->hooks, dist->rank);

    char err[1024];
    if (dist->rank == 0 && make_dirs(cfg->checkpoint_dir, err, sizeof err) != 0)
        fatal("cannot create the run folder (checkpoint.dir): %s; check the path and permissions", err);
    if (!(resume && state_resume(s, &t->st, resume))) model_init_params(m, s->cfg.seed);
    // The data-driven inits run when quantization starts (trainer_begin_step); a run resumed past
    // that step has its codebook from the checkpoint.
    int needs_data = m->spec.codebook_init == CODEBOOK_INIT_DATA || m->spec.codebook_init == CODEBOOK_INIT_KMEANS;
    t->st.codebook_ready = !needs_data || t->st.step > s->cfg.pretrain_steps;
    train_state_upload(&t->st, s);
    train_log_open(&t->log, s, metrics_path);
    char what[160];
    if (m->spec.type == MODEL_VAE)
        snprintf(what, sizeof what, "Gaussian VAE, latent %d, kl_weight %g", m->spec.vae_latent_dim, m->spec.kl_weight);
    else
        snprintf(what, sizeof what, "quantizer %s K=%d D=%d, latent %dx%d", cfg->quantizer, m->spec.num_embeddings,
                 m->spec.embedding_dim, m->latent_height, m->latent_width);
    log_info("model: %s, %zu trainable parameters, %s; backend %s, %d ranks, batch %d per rank (global %lld)", cfg->arch,
             m->registry.trainable_count, what, s->ctx.ops->name, dist->world, cfg->batch_size,
             (long long)cfg->batch_size * dist->world);
    log_cpu_convs(&s->ctx);
}

void trainer_free(Trainer *t) {
    train_log_close(&t->log);
    test_hooks_close(&t->hooks);
    train_state_free(&t->st, &t->s);
    session_close(&t->s);
    dataset_free(&t->train_set);
    dataset_free(&t->test_set);
}

void trainer_begin_step(Trainer *t) {
    Session *s = &t->s;
    int64_t start = s->cfg.pretrain_steps;
    model_set_quantizer_bypass(&s->model, t->st.step < start);
    if (t->st.step < start || t->st.codebook_ready) return;
    if (s->model.spec.codebook_init == CODEBOOK_INIT_KMEANS) codebook_init_kmeans(s, &t->st, &t->train_set);
    else codebook_init_from_data(s, &t->st, &t->train_set);
    t->st.codebook_ready = 1;
    if (start > 0) log_info("step %lld: encoder pretraining done; quantizing from here on", (long long)start);
    test_hooks_after_codebook_init(&t->hooks, s);
}

void trainer_load_next_batch(Trainer *t) {
    int64_t start = train_state_next_batch(&t->st, &t->s);
    test_hooks_log_batch(&t->hooks, &t->st, start, t->s.model.spec.batch);
}

void trainer_compute_gradients(Trainer *t) {
    Session *s = &t->s;
    Model *m = &s->model;
    OpsContext *ctx = &s->ctx;
    const Ops *ops = ctx->ops;
    int k = m->spec.num_embeddings;
    size_t n = m->registry.trainable_count;

    model_forward(m);
    model_backward(m);
    // The slot after the gradients: NaN when this rank's losses are not finite. It travels in the
    // gradient all-reduce, so the reduced sum of squares below is not finite on every rank as soon
    // as one rank's loss or gradient is not: all ranks skip together, with no extra collective.
    static_assert(SCALAR_LATENT_LOSS == SCALAR_RECON_MSE + 1, "the loss scalars are adjacent");
    ops->flag_nonfinite(ctx, m->scalars + SCALAR_RECON_MSE, 2, m->grads + n);
    test_hooks_after_backward(&t->hooks, s, t->st.step);
    s->dist->current_step = t->st.step;
    dist_allreduce(s->dist, ctx, m->grads, n + 1, 1);
    if (model_has_codebook(m) && m->spec.quantizer == QUANTIZER_EMA &&
        t->st.step >= s->cfg.pretrain_steps)   // global counts and sums:
                                                                                        // identical EMA updates
        dist_allreduce(s->dist, ctx, m->code_stats, (size_t)k + (size_t)k * m->spec.embedding_dim, 0);
    ops->sum_squares(ctx, m->grads, n + 1, m->scalars + SCALAR_GRAD_SUMSQ);
}

// The verdict, Adam and the EMA update: fixed launches reading the step's values from the
// device, so this and trainer_compute_gradients can be captured in a CUDA graph.
// Dead codes (EMA cluster size below quantizer.dead_code_threshold) get an encoder output of this
// step's global batch: drawn on the device from (seed, step, code), sent by the rank that holds
// it in one all-reduce, applied identically everywhere.
static void restart_dead_codes(Trainer *t) {
    Session *s = &t->s;
    Model *m = &s->model;
    OpsContext *ctx = &s->ctx;
    int k = m->spec.num_embeddings, d = m->spec.embedding_dim;
    int64_t local = model_latent_count(m);
    float threshold = s->cfg.dead_code_threshold;
    ctx->ops->vq_restart_pick(ctx, m->ema_cluster_size, threshold, m->z_flat, (int)local, k, d,
                              local * s->dist->rank, local * s->dist->world, s->cfg.seed, t->st.restart_picks,
                              t->st.state);
    dist_allreduce(s->dist, ctx, t->st.restart_picks, (size_t)k * (d + 1), 0);
    ctx->ops->vq_restart_apply(ctx, m->ema_cluster_size, m->ema_w, m->codebook, t->st.restart_picks, k, d, threshold,
                               t->st.state);
}

static void update_parameters(Trainer *t) {
    Model *m = &t->s.model;
    OpsContext *ctx = &t->s.ctx;
    int quantizing = model_has_codebook(m) && t->st.step >= t->s.cfg.pretrain_steps;
    ctx->ops->step_commit(ctx, t->st.state, m->scalars + SCALAR_GRAD_SUMSQ, &t->st.adam_hyper);
    ctx->ops->adam_update(ctx, m->params, m->grads, m->adam_m, m->adam_v, m->registry.trainable_count, t->st.state);
    if (m->spec.quantizer == QUANTIZER_EMA && quantizing) model_ema_update(m, t->st.state);
    if (t->s.cfg.dead_code_threshold > 0 && quantizing) restart_dead_codes(t);
}

static void finish_step(Trainer *t) {
    int64_t step = t->st.step;
    train_state_finish_step(&t->st, &t->s);
    test_hooks_after_update(&t->hooks, &t->s, step);
}

void trainer_apply_update(Trainer *t) {
    update_parameters(t);
    finish_step(t);
}

// train.cuda_graph: the first step runs eagerly (cuDNN, cuBLAS and NCCL set themselves up), the
// second is captured and replayed from then on. Host-staged MPI collectives cannot be captured.
static int graph_possible(Trainer *t) {
    Session *s = &t->s;
    if (!s->cfg.cuda_graph) return 0;
    const char *why = NULL;
    if (!s->ctx.ops->graph_begin) why = "the backend has no CUDA graphs (device is not cuda)";
    else if (!dist_graph_capturable(s->dist))
        why = "the MPI communicator stages collectives through the host (use dist.backend: nccl)";
    if (why) {
        log_warn("train.cuda_graph is on, but %s: the step runs without a graph", why);
        s->cfg.cuda_graph = 0;
        return 0;
    }
    return 1;
}

void trainer_step(Trainer *t) {
    Session *s = &t->s;
    trainer_begin_step(t);
    trainer_load_next_batch(t);
    int hook_step = test_hooks_at(&t->hooks, t->st.step);
    // Capture a quantized step after the eager one that set everything up (pretraining steps differ).
    int64_t eager = t->st.first_step > s->cfg.pretrain_steps ? t->st.first_step : s->cfg.pretrain_steps;
    if (s->cfg.cuda_graph && s->ctx.graph == NULL && t->st.step > eager && !hook_step && graph_possible(t)) {
        s->ctx.ops->graph_begin(&s->ctx);
        trainer_compute_gradients(t);
        update_parameters(t);
        s->ctx.ops->graph_end(&s->ctx);
        log_info("train.cuda_graph: step %lld captured; later steps replay it", (long long)t->st.step + 1);
    }
    if (s->ctx.graph && !hook_step) {
        s->dist->current_step = t->st.step;
        s->ctx.ops->graph_launch(&s->ctx);
    } else {
        trainer_compute_gradients(t);
        update_parameters(t);
    }
    finish_step(t);
}

// FNV-1a over the bytes: any difference in any bit shows.
static uint64_t checksum_bytes(const void *data, size_t bytes, uint64_t hash) {
    const unsigned char *p = data;
    for (size_t i = 0; i < bytes; i++) hash = (hash ^ p[i]) * 0x100000001b3ull;
    return hash;
}

// Ranks whose hash differs from rank 0's, as "1, 3" in buf; returns how many.
static int differing_ranks(const uint64_t *all, int world, char *buf, size_t len) {
    size_t used = 0;
    int count = 0;
    buf[0] = '\0';
    for (int r = 1; r < world; r++) {
        if (all[r] == all[0]) continue;
        count++;
        if (used < len - 16) used += (size_t)snprintf(buf + used, len - used, "%s%d", count > 1 ? ", " : "", r);
    }
    return count;
}

void trainer_verify_ranks(Trainer *t) {
    Session *s = &t->s;
    CheckpointState hs = state_download(s, &t->st);
    const ParamRegistry *reg = &s->model.registry;
    uint64_t hash = 0xcbf29ce484222325ull;
    hash = checksum_bytes(hs.values, reg->total_count * sizeof(float), hash);
    hash = checksum_bytes(hs.exp_avg, reg->trainable_count * sizeof(float), hash);
    hash = checksum_bytes(hs.exp_avg_sq, reg->trainable_count * sizeof(float), hash);
    int world = s->dist->world;
    uint64_t *all = xmalloc((size_t)world * sizeof(uint64_t));
    dist_allgather_u64(s->dist, hash, all);
    char differ[512];
    int count = differing_ranks(all, world, differ, sizeof differ);
    free(all);
    if (count == 0) {
        log_info("verify: step %lld: all %d ranks hold identical parameters, codebook and Adam moments "
                 "(checksum %016llx)", (long long)t->st.step, world, (unsigned long long)hash);
        return;
    }
    if (s->dist->rank == 0)
        log_error("dist.verify_every: at step %lld the parameters of rank(s) %s differ from rank 0's (checksum of "
                  "parameters, codebook and Adam moments). The ranks have diverged, which should never happen: "
                  "report it with the config; resume from the last checkpoint.", (long long)t->st.step, differ);
    dist_barrier(s->dist);   // rank 0's message first, then every rank ends the same way
    exit(EXIT_ERROR);
}

static void log_progress(Trainer *t) {
    train_state_sync(&t->st, &t->s);
    double now = wall_time_seconds();
    double images = (double)(t->st.step - t->log.last_log_step) * t->s.model.spec.batch * t->s.dist->world;
    double rate = now > t->log.last_log_time ? images / (now - t->log.last_log_time) : 0.0;
    StepMetrics sm = train_log_collect(&t->log, &t->s, &t->st);
    train_log_print(&t->log, &t->s, &t->st, &sm, rate);
    train_log_json(&t->log, &t->st, "train", &sm, rate);
    t->log.last_log_time = now;
    t->log.last_log_step = t->st.step;
}

static void run_eval(Trainer *t) {
    double t0 = wall_time_seconds();
    StepMetrics sm = evaluate(&t->s, &t->test_set, t->s.cfg.eval_batches);
    train_state_sync(&t->st, &t->s);
    sm.restarts = t->st.state_host.restarts;   // the training's count, as on the train lines
    char figures[256];
    metrics_format_eval(&t->s.model.spec, &sm, figures, sizeof figures);
    log_info("eval  step %lld | %s | %lld images | %.1fs", (long long)t->st.step, figures, (long long)sm.images,
             wall_time_seconds() - t0);
    train_log_json(&t->log, &t->st, "eval", &sm, 0.0);
}

// Which signal stopped the run and which rank got it (often not rank 0: Slurm or a user may
// signal any rank); collective.
static void log_stop(Trainer *t) {
    int world = t->s.dist->world;
    uint64_t *signals = xmalloc((size_t)world * sizeof(uint64_t));
    dist_allgather_u64(t->s.dist, (uint64_t)signals_last(), signals);
    int who = 0;
    while (who < world - 1 && signals[who] == 0) who++;
    log_info("stopped by signal %d (received by rank %d) at step %lld; the checkpoint above resumes with "
             "--resume auto (exit code %d)", (int)signals[who], who, (long long)t->st.step, EXIT_RESUMABLE);
    free(signals);
}

// After step: log, verify, evaluate, checkpoint as the config says. Returns 1 when a signal stops the run.
static int after_step(Trainer *t) {
    const Config *cfg = &t->s.cfg;
    int64_t step = t->st.step;
    int last = step == cfg->steps;
    if (step % cfg->log_every == 0 || last || step == t->st.first_step + 1) log_progress(t);
    if (cfg->verify_every > 0 && (step % cfg->verify_every == 0 || last)) trainer_verify_ranks(t);
    // Replayed graphs have no run-ahead limit of their own (dist.h): bound the queue here.
    if (t->s.ctx.graph && step % 64 == 0) dist_sync(t->s.dist, &t->s.ctx);
    if (cfg->eval_every > 0 && step % cfg->eval_every == 0 && !last) run_eval(t);
    int stop = dist_agree_any(t->s.dist, signals_stop_requested());
    if (stop || last || (cfg->checkpoint_every > 0 && step % cfg->checkpoint_every == 0))
        state_save_checkpoint(&t->s, &t->st);
    return stop && !last;
}

TrainOutcome trainer_run(Trainer *t) {
    const Config *cfg = &t->s.cfg;
    signals_install();
    t->log.start_time = t->log.last_log_time = wall_time_seconds();
    t->log.last_log_step = t->st.step;
    int64_t first_step = t->st.first_step = t->st.step;
    if (t->st.step >= cfg->steps)
        log_info("already at step %lld of train.steps=%lld: nothing to train (raise train.steps to continue)",
                 (long long)t->st.step, (long long)cfg->steps);
    while (t->st.step < cfg->steps) {
        trainer_step(t);
        if (after_step(t)) {
            log_stop(t);
            return TRAIN_STOPPED_RESUMABLE;
        }
    }
    run_eval(t);
    train_state_sync(&t->st, &t->s);
    double elapsed = wall_time_seconds() - t->log.start_time;
    double images = (double)(t->st.step - first_step) * t->s.model.spec.batch * t->s.dist->world;
    log_info("done: %lld steps in %.1fs (%.1f images/s overall), %lld skipped", (long long)(t->st.step - first_step),
             elapsed, elapsed > 0 ? images / elapsed : 0.0, (long long)t->st.state_host.skipped);
    return TRAIN_DONE;
}
