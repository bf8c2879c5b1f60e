// metrics.c: reducing, printing and logging the training metrics.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../core/common.h"
#include "trainer.h"

double perplexity_from_counts(const float *counts, int k) {
    double total = 0.0;
    for (int j = 0; j < k; j++) total += counts[j];
    if (total <= 0.0) return 0.0;
    double entropy = 0.0;
    for (int j = 0; j < k; j++) {
        double p = counts[j] / total;
        entropy -= p * log(p + 1e-10);   // the notebook's epsilon
    }
    return exp(entropy);
}

static double quantizer_loss(const Model *m, double latent_mse) {
    // vq: codebook loss + beta * commitment loss, both equal to mean((q - z)^2) in value
    double weight = m->spec.quantizer == QUANTIZER_VQ ? 1.0 + m->spec.commitment_cost : m->spec.commitment_cost;
    return weight * latent_mse;
}

// Sums counts over ranks unless they are global already (EMA stats are all-reduced in the step).
static void global_counts(Trainer *t, float *counts, int already_global) {
    int k = t->model.spec.num_embeddings;
    if (already_global || t->dist->world == 1) return;
    for (int j = 0; j < k; j++) t->host_counts_f64[j] = counts[j];
    dist_allreduce_host_f64(t->dist, t->host_counts_f64, (size_t)k);
    for (int j = 0; j < k; j++) counts[j] = (float)t->host_counts_f64[j];
}

StepMetrics trainer_collect_metrics(Trainer *t) {
    Model *m = &t->model;
    OpsContext *ctx = &t->ctx;
    int k = m->spec.num_embeddings;
    int ema = m->spec.quantizer == QUANTIZER_EMA;
    float scalars[SCALAR_COUNT];
    ctx->ops->to_host(ctx, scalars, m->scalars, sizeof scalars);
    double losses[2] = {scalars[SCALAR_RECON_MSE], scalars[SCALAR_LATENT_MSE]};
    dist_allreduce_host_f64(t->dist, losses, 2);
    StepMetrics sm;
    memset(&sm, 0, sizeof sm);
    sm.recon_mse = losses[0] / t->dist->world;
    sm.nmse = sm.recon_mse * m->spec.recon_weight;
    sm.vq_loss = quantizer_loss(m, losses[1] / t->dist->world);
    sm.loss = sm.nmse + sm.vq_loss;
    sm.grad_norm = sqrt((double)scalars[SCALAR_GRAD_SUMSQ]);

    ctx->ops->to_host(ctx, t->host_counts, m->code_stats, (size_t)k * sizeof(float));
    global_counts(t, t->host_counts, ema);
    sm.perplexity = perplexity_from_counts(t->host_counts, k);

    // usage: codes hit at least once in the last usage_window steps
    int window = t->cfg.usage_window;
    ctx->ops->to_host(ctx, t->host_ring, t->usage_ring, (size_t)window * k * sizeof(float));
    for (int j = 0; j < k; j++) {
        float total = 0.0f;
        for (int s = 0; s < window; s++) total += t->host_ring[(size_t)s * k + j];
        t->host_counts[j] = total;
    }
    global_counts(t, t->host_counts, ema);
    int used = 0;
    for (int j = 0; j < k; j++) used += t->host_counts[j] > 0.0f;
    sm.usage = (double)used / k;
    return sm;
}

static void format_duration(double seconds, char *buf, size_t len) {
    if (!(seconds >= 0) || seconds > 1e7) {
        snprintf(buf, len, "?");
        return;
    }
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, len, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
    else if (s >= 60) snprintf(buf, len, "%ldm%02lds", s / 60, s % 60);
    else snprintf(buf, len, "%lds", s);
}

void metrics_print_line(Trainer *t, const StepMetrics *sm, double images_per_s) {
    if (t->dist->rank != 0) return;
    double elapsed = wall_time_seconds() - t->start_time;
    int64_t done = t->step - t->last_log_step;
    double per_step = done > 0 ? (wall_time_seconds() - t->last_log_time) / done : 0.0;
    char eta[32];
    format_duration(per_step * (double)(t->cfg.steps - t->step), eta, sizeof eta);
    if (t->progress_bar) fprintf(stderr, "\r\033[K");
    printf("step %6lld/%lld | loss %.4f | nmse %.4f | vq %.4f | perplexity %6.1f | usage %.3f | |g| %.3g | "
           "%.0f img/s | eta %s\n",
           (long long)t->step, (long long)t->cfg.steps, sm->loss, sm->nmse, sm->vq_loss, sm->perplexity, sm->usage,
           sm->grad_norm, images_per_s, eta);
    fflush(stdout);
    if (t->progress_bar) {
        int width = 30, filled = (int)(width * (double)t->step / (double)t->cfg.steps);
        fprintf(stderr, "[");
        for (int i = 0; i < width; i++) fputc(i < filled ? '#' : '.', stderr);
        fprintf(stderr, "] %lld/%lld %.0fs", (long long)t->step, (long long)t->cfg.steps, elapsed);
        fflush(stderr);
    }
}

// A JSON number, or null for NaN and infinities (which JSON cannot express; a skipped step's
// gradient norm is NaN).
static const char *json_number(double v, char *buf, size_t len) {
    if (!isfinite(v)) return "null";
    snprintf(buf, len, "%.9g", v);
    return buf;
}

void metrics_write_json(Trainer *t, const char *kind, const StepMetrics *sm, double images_per_s) {
    if (!t->metrics_file) return;
    char v[8][40];
    fprintf(t->metrics_file,
            "{\"kind\":\"%s\",\"step\":%lld,\"epoch\":%lld,\"samples_seen\":%lld,\"loss\":%s,\"recon_mse\":%s,"
            "\"nmse\":%s,\"vq_loss\":%s,\"perplexity\":%s,\"usage\":%s,\"grad_norm\":%s,"
            "\"images_per_s\":%s,\"skipped_steps\":%lld,\"time_s\":%.3f}\n",
            kind, (long long)t->step, (long long)t->position.epoch, (long long)t->samples_seen,
            json_number(sm->loss, v[0], 40), json_number(sm->recon_mse, v[1], 40), json_number(sm->nmse, v[2], 40),
            json_number(sm->vq_loss, v[3], 40), json_number(sm->perplexity, v[4], 40),
            json_number(sm->usage, v[5], 40), json_number(sm->grad_norm, v[6], 40),
            json_number(images_per_s, v[7], 40), (long long)t->state_host.skipped, wall_time_seconds() - t->start_time);
    fflush(t->metrics_file);
}
