// train_log.c: see train_log.h.
#include "train_log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/common.h"

void train_log_open(TrainLog *log, const Session *s, const char *metrics_path) {
    memset(log, 0, sizeof *log);
    int k = s->model.spec.num_embeddings;
    log->host_counts = xmalloc((size_t)k * sizeof(float));
    log->host_counts_f64 = xmalloc((size_t)k * sizeof(double));
    log->host_ring = xmalloc((size_t)s->cfg.usage_window * k * sizeof(float));
    log->progress_bar = isatty(STDERR_FILENO) && s->dist->rank == 0;
    log->start_time = log->last_log_time = wall_time_seconds();
    log->vae = s->model.spec.type == MODEL_VAE;
    if (s->dist->rank != 0 || !metrics_path) return;
    log->metrics_file = fopen(metrics_path, "a");
    if (!log->metrics_file) fatal("cannot open the metrics file '%s' for appending (log.metrics_file)", metrics_path);
}

void train_log_close(TrainLog *log) {
    if (log->metrics_file) fclose(log->metrics_file);
    free(log->host_counts);
    free(log->host_counts_f64);
    free(log->host_ring);
    memset(log, 0, sizeof *log);
}

// Sums counts over ranks unless they are global already (EMA stats are all-reduced in the step).
static void global_counts(TrainLog *log, Dist *dist, float *counts, int k, int already_global) {
    if (already_global || dist->world == 1) return;
    for (int j = 0; j < k; j++) log->host_counts_f64[j] = counts[j];
    dist_allreduce_host_f64(dist, log->host_counts_f64, (size_t)k);
    for (int j = 0; j < k; j++) counts[j] = (float)log->host_counts_f64[j];
}

StepMetrics train_log_collect(TrainLog *log, Session *s, const TrainState *st) {
    Model *m = &s->model;
    OpsContext *ctx = &s->ctx;
    int k = m->spec.num_embeddings, world = s->dist->world;
    int ema = m->spec.quantizer == QUANTIZER_EMA;
    float scalars[SCALAR_COUNT];
    ctx->ops->to_host(ctx, scalars, m->scalars, sizeof scalars);
    double losses[2] = {scalars[SCALAR_RECON_MSE], scalars[SCALAR_LATENT_LOSS]};
    dist_allreduce_host_f64(s->dist, losses, 2);
    StepMetrics sm;
    memset(&sm, 0, sizeof sm);
    metrics_fill_losses(&sm, &m->spec, losses[0] / world, losses[1] / world);
    sm.grad_norm = sqrt((double)scalars[SCALAR_GRAD_SUMSQ]);
    sm.restarts = st->state_host.restarts;
    if (!model_has_codebook(m)) return sm;

    ctx->ops->to_host(ctx, log->host_counts, m->code_stats, (size_t)k * sizeof(float));
    global_counts(log, s->dist, log->host_counts, k, ema);
    sm.perplexity = perplexity_from_counts(log->host_counts, k);

    // usage: codes hit at least once in the last usage_window steps
    int window = st->usage_window;
    ctx->ops->to_host(ctx, log->host_ring, st->usage_ring, (size_t)window * k * sizeof(float));
    for (int j = 0; j < k; j++) {
        float total = 0.0f;
        for (int w = 0; w < window; w++) total += log->host_ring[(size_t)w * k + j];
        log->host_counts[j] = total;
    }
    global_counts(log, s->dist, log->host_counts, k, ema);
    int used = 0;
    for (int j = 0; j < k; j++) used += log->host_counts[j] > 0.0f;
    sm.usage = (double)used / k;
    sm.dead_codes = k - used;
    return sm;
}

static void format_duration(double seconds, char *buf, size_t len) {
    if (!(seconds >= 0) || seconds > 1e7) {
        snprintf(buf, len, "?");
        return;
    }
    long sec = (long)(seconds + 0.5);
    if (sec >= 3600) snprintf(buf, len, "%ldh%02ldm", sec / 3600, (sec % 3600) / 60);
    else if (sec >= 60) snprintf(buf, len, "%ldm%02lds", sec / 60, sec % 60);
    else snprintf(buf, len, "%lds", sec);
}

// The loss terms of one console line: the quantizer's and the codebook's health, or a VAE's KL.
static void format_terms(const Session *s, const StepMetrics *sm, char *buf, size_t len) {
    const ModelSpec *sp = &s->model.spec;
    if (sp->type == MODEL_VAE) {
        snprintf(buf, len, "loss %.2f | recon %.2f | kl %.4f | mse %.5f", sm->loss, sm->recon_loss, sm->kl,
                 sm->recon_mse);
        return;
    }
    char restarts[48] = "";
    if (s->cfg.dead_code_threshold > 0) snprintf(restarts, sizeof restarts, " | restarts %lld", (long long)sm->restarts);
    // the resnet divides the MSE by the data variance (NMSE); the other archs' term is the plain MSE
    snprintf(buf, len, "loss %.4f | %s %.4f | vq %.4f | perplexity %6.1f | usage %.3f | dead %d%s", sm->loss,
             sp->arch == ARCH_RESNET ? "nmse" : "mse", sm->nmse, sm->vq_loss, sm->perplexity, sm->usage,
             sm->dead_codes, restarts);
}

static void print_progress_bar(const TrainLog *log, const TrainState *st, int64_t total, double now) {
    int width = 30, filled = (int)(width * (double)st->step / (double)total);
    fprintf(stderr, "[");
    for (int i = 0; i < width; i++) fputc(i < filled ? '#' : '.', stderr);
    fprintf(stderr, "] %lld/%lld %.0fs", (long long)st->step, (long long)total, now - log->start_time);
    fflush(stderr);
}

void train_log_print(TrainLog *log, const Session *s, const TrainState *st, const StepMetrics *sm, double rate) {
    if (s->dist->rank != 0) return;
    int64_t total = s->cfg.steps;
    double now = wall_time_seconds();
    int64_t done = st->step - log->last_log_step;
    double per_step = done > 0 ? (now - log->last_log_time) / done : 0.0;
    char eta[32], terms[256];
    format_duration(per_step * (double)(total - st->step), eta, sizeof eta);
    format_terms(s, sm, terms, sizeof terms);
    if (log->progress_bar) fprintf(stderr, "\r\033[K");
    const char *phase = st->step <= s->cfg.pretrain_steps ? " | pretraining" : "";
    printf("step %6lld/%lld | %s | |g| %.3g | %.0f img/s | eta %s%s\n", (long long)st->step, (long long)total, terms,
           sm->grad_norm, rate, eta, phase);
    fflush(stdout);
    if (log->progress_bar) print_progress_bar(log, st, total, now);
}

// A JSON number, or null for NaN and infinities (which JSON cannot express; a skipped step's
// gradient norm is NaN).
static const char *json_number(double v, char *buf, size_t len) {
    if (!isfinite(v)) return "null";
    snprintf(buf, len, "%.9g", v);
    return buf;
}

// The fields of one model type: the codebook's, or a VAE's loss terms.
static void json_terms(FILE *f, const TrainLog *log, const StepMetrics *sm) {
    char v[4][40];
    if (log->vae) {
        fprintf(f, "\"recon_loss\":%s,\"kl\":%s,", json_number(sm->recon_loss, v[0], 40), json_number(sm->kl, v[1], 40));
        return;
    }
    fprintf(f, "\"nmse\":%s,\"vq_loss\":%s,\"perplexity\":%s,\"usage\":%s,\"dead_codes\":%d,\"restarts\":%lld,",
            json_number(sm->nmse, v[0], 40), json_number(sm->vq_loss, v[1], 40), json_number(sm->perplexity, v[2], 40),
            json_number(sm->usage, v[3], 40), sm->dead_codes, (long long)sm->restarts);
}

void train_log_json(TrainLog *log, const TrainState *st, const char *kind, const StepMetrics *sm, double rate) {
    if (!log->metrics_file) return;
    char v[4][40];
    FILE *f = log->metrics_file;
    fprintf(f, "{\"kind\":\"%s\",\"step\":%lld,\"epoch\":%lld,\"samples_seen\":%lld,\"loss\":%s,\"recon_mse\":%s,", kind,
            (long long)st->step, (long long)st->position.epoch, (long long)st->samples_seen,
            json_number(sm->loss, v[0], 40), json_number(sm->recon_mse, v[1], 40));
    json_terms(f, log, sm);
    fprintf(f, "\"grad_norm\":%s,\"images_per_s\":%s,\"skipped_steps\":%lld,\"time_s\":%.3f}\n",
            json_number(sm->grad_norm, v[2], 40), json_number(rate, v[3], 40), (long long)st->state_host.skipped,
            wall_time_seconds() - log->start_time);
    fflush(f);
}
