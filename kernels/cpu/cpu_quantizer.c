// cpu_quantizer.c: the vector quantizer on the CPU backend: nearest code (OpenBLAS sgemm for the
// distances), gather, per-code statistics, the codebook gradient and the EMA codebook update.
// z is [m, d] row-major (channels-last), the codebook [k, d]. Work is split over ctx->threads
// OpenMP threads by rows or by codes, never in a way that changes a sum's order: every result is
// the same for any thread count.
#include <cblas.h>
#include <math.h>
#include <omp.h>

#include "../../src/core/common.h"
#include "cpu_internal.h"

// Rows of z per distance block: a [256, k] block (512 KiB for k = 512) stays in L2 while the argmin
// reads it back. The chunk depends only on m, never on how big the workspace happens to be, so the
// codes are the same whatever else shares the workspace. Each thread has its own block.
enum { VQ_CHUNK_ROWS = 256, VQ_ALIGN_FLOATS = 16 };

static int vq_chunk_rows(int m) { return m < VQ_CHUNK_ROWS ? m : VQ_CHUNK_ROWS; }

// |e_j|^2 and each thread's [chunk, k] distance block, every part rounded up to a 64-byte boundary.
static size_t round_floats(size_t n) { return (n + VQ_ALIGN_FLOATS - 1) / VQ_ALIGN_FLOATS * VQ_ALIGN_FLOATS; }
static size_t vq_norms_floats(int k) { return round_floats((size_t)k); }
static size_t vq_block_floats(int m, int k) { return round_floats((size_t)vq_chunk_rows(m) * (size_t)k); }

size_t cpu_vq_workspace_bytes(OpsContext *ctx, int m, int k, int d) {
    if (m <= 0 || k <= 0) return 0;
    return (vq_norms_floats(k) + (size_t)ctx->threads * vq_block_floats(m, k)) * sizeof(float);
}

// sum(x^2) of one row: squares are exact in double, so this is |x|^2 rounded to float once (PyTorch
// sums the float squares in float; the two agree to an ulp or so).
static float row_sq_norm(const float *x, int d) {
    double s = 0.0;
    for (int t = 0; t < d; t++) s += (double)x[t] * (double)x[t];
    return (float)s;
}

// codes[i] = argmin_j (|z_i|^2 + |e_j|^2) - 2 z_i.e_j in float32, in the order of the PyTorch
// notebook's expression, so that near-ties resolve as there. Ties go to the lowest index and a NaN
// distance wins (its first occurrence), as torch.argmin.
void cpu_vq_nearest(OpsContext *ctx, const float *z, const float *codebook, int m, int k, int d, int32_t *codes) {
    CHECK(m >= 0 && k > 0 && d > 0, "vq_nearest needs m >= 0, k > 0, d > 0; got m=%d k=%d d=%d", m, k, d);
    if (m == 0) return;
    size_t need = cpu_vq_workspace_bytes(ctx, m, k, d);
    CHECK(ctx->workspace && ctx->workspace_bytes >= need,
          "vq_nearest(m=%d, k=%d, d=%d) needs %zu bytes of workspace but the context has %zu; "
          "reserve ops->vq_workspace_bytes() for the largest m at start-up", m, k, d, need, ctx->workspace_bytes);
    float *e_norms = (float *)ctx->workspace;
    for (int j = 0; j < k; j++) e_norms[j] = row_sq_norm(codebook + (size_t)j * d, d);

    int chunk = vq_chunk_rows(m), chunks = (m + chunk - 1) / chunk;
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int c = 0; c < chunks; c++) {
        float *dist = e_norms + vq_norms_floats(k) + (size_t)omp_get_thread_num() * vq_block_floats(m, k);
        int r0 = c * chunk, rows = m - r0 < chunk ? m - r0 : chunk;
        const float *zc = z + (size_t)r0 * d;
        // dist = -2 z e^T: scaling by -2 is exact, so (a + b) + dist equals PyTorch's (a + b) - 2 z.e^T.
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, k, d, -2.0f, zc, d, codebook, d, 0.0f, dist, k);
        for (int i = 0; i < rows; i++) {
            float z_norm = row_sq_norm(zc + (size_t)i * d, d);
            const float *row = dist + (size_t)i * k;
            int best = 0;
            float best_v = (z_norm + e_norms[0]) + row[0];
            for (int j = 1; j < k; j++) {
                float v = (z_norm + e_norms[j]) + row[j];
                if (v < best_v || (isnan(v) && !isnan(best_v))) {
                    best_v = v;
                    best = j;
                }
            }
            codes[r0 + i] = best;
        }
    }
}

static void check_code(int32_t code, int k, int i, const char *op) {
    if (code < 0 || code >= k)
        fatal_at(__FILE__, __LINE__, "%s: code %d at row %d is outside the codebook [0, %d); "
                 "codes must come from vq_nearest with the same k", op, (int)code, i, k);
}

// out[i] = codebook[codes[i]]. Codes are range-checked (one compare per row) because a corrupt code
// would otherwise read outside the codebook. k is not an argument here, so only the sign is checked.
void cpu_vq_gather(OpsContext *ctx, const float *codebook, const int32_t *codes, int m, int d, float *out) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int i = 0; i < m; i++) {
        CHECK(codes[i] >= 0, "vq_gather: negative code %d at row %d; codes must come from vq_nearest", (int)codes[i], i);
        const float *e = codebook + (size_t)codes[i] * d;
        float *o = out + (size_t)i * d;
        for (int t = 0; t < d; t++) o[t] = e[t];
    }
}

// counts[j] = #{i : codes[i] = j}, sums[j] = sum of those z_i, summed in row order: deterministic.
// The threads split the codes (each scans every row and takes its own codes' rows), so every
// code's sum keeps the row order whatever the thread count. Counts are exact in float up to 2^24
// rows.
void cpu_vq_code_stats(OpsContext *ctx, const float *z, const int32_t *codes, int m, int k, int d, float *counts,
                       float *sums) {
    CHECK(m >= 0 && m <= (1 << 24), "vq_code_stats: m=%d rows; float counts are exact only up to 2^24", m);
    for (int i = 0; i < m; i++) check_code(codes[i], k, i, "vq_code_stats");
#pragma omp parallel num_threads(ctx->threads)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int j0 = (int)((int64_t)k * t / n), j1 = (int)((int64_t)k * (t + 1) / n);
        for (int j = j0; j < j1; j++) counts[j] = 0.0f;
        if (sums) {
            for (size_t e = (size_t)j0 * d; e < (size_t)j1 * d; e++) sums[e] = 0.0f;
        }
        for (int i = 0; i < m; i++) {
            int32_t c = codes[i];
            if (c < j0 || c >= j1) continue;
            counts[c] += 1.0f;
            if (sums) {
                const float *zi = z + (size_t)i * d;
                float *s = sums + (size_t)c * d;
                for (int e = 0; e < d; e++) s[e] += zi[e];
            }
        }
    }
}

// dcodebook[j] = scale * (counts[j] e_j - sums[j]): d/de_j of sum_i |e_codes[i] - z_i|^2 is
// 2 (counts_j e_j - sums_j), and scale carries the 2 / (m d) of the mean and any loss weight.
void cpu_vq_codebook_grad(OpsContext *ctx, const float *codebook, const float *counts, const float *sums, int k, int d,
                          float scale, float *dcodebook) {
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int j = 0; j < k; j++) {
        float cnt = counts[j];
        const float *e = codebook + (size_t)j * d;
        const float *s = sums + (size_t)j * d;
        float *g = dcodebook + (size_t)j * d;
        for (int t = 0; t < d; t++) g[t] = scale * (cnt * e[t] - s[t]);
    }
}

// The notebook's VectorQuantizerEMA update, each line in PyTorch's float32 order of operations:
//   N = N * decay + (1 - decay) * counts
//   n = sum(N);  N = (N + eps) / (n + k eps) * n
//   m = m * decay + (1 - decay) * sums
//   e = m / N
// The scalars 1 - decay and k eps are formed in double and rounded once, as Python does.
void cpu_ema_update(OpsContext *ctx, float *cluster_size, float *ema_w, float *codebook, const float *counts,
                    const float *sums, int k, int d, float decay, float epsilon, const StepState *state) {
    CHECK(k > 0 && d > 0, "ema_update needs k > 0 and d > 0; got k=%d d=%d", k, d);
    if (state && !state->finite) return;
    float keep = decay;
    float take = (float)(1.0 - (double)decay);
    for (int j = 0; j < k; j++) cluster_size[j] = cluster_size[j] * keep + take * counts[j];

    double total = 0.0;
    for (int j = 0; j < k; j++) total += (double)cluster_size[j];
    float n = (float)total;
    float denom = n + (float)((double)k * (double)epsilon);
    for (int j = 0; j < k; j++) cluster_size[j] = (cluster_size[j] + epsilon) / denom * n;

    // The k d element-wise lines on the threads (the k-long ones are too short to pay).
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (size_t t = 0; t < (size_t)k * d; t++) ema_w[t] = ema_w[t] * keep + take * sums[t];
#pragma omp parallel for num_threads(ctx->threads) schedule(static)
    for (int j = 0; j < k; j++) {
        float size = cluster_size[j];
        const float *w = ema_w + (size_t)j * d;
        float *e = codebook + (size_t)j * d;
        for (int t = 0; t < d; t++) e[t] = w[t] / size;
    }
}
