// cmd_codes.c: encode (the images of a split -> a codes file), decode (a codes file -> a PNG of
// the decoder's images) and sample (a VAE's decoder on z ~ N(0, I) -> a PNG); the file's layout
// is docs/CODES.md (src/io/codes_file.h).
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../core/rng.h"
#include "../io/codes_file.h"
#include "cmd_common.h"

// The images one rank encodes: whole global batches of batch images (batch b = images [b B, (b+1) B)),
// rank r taking batches [r nb / W, (r+1) nb / W). Every image then sits at the same place of the
// same batch whatever the world size, so its codes are the same bits, and the ranks' shards in
// rank order are the images in file order.
typedef struct {
    int64_t first, count;
} Shard;

static Shard rank_shard(int64_t images, int batch, int world, int rank) {
    int64_t batches = (images + batch - 1) / batch;
    int64_t first = batches * rank / world * batch, end = batches * (rank + 1) / world * batch;
    if (end > images) end = images;
    return (Shard){first, end > first ? end - first : 0};
}

// Rank 0: every rank's part of an array of item_bytes per image, whole (malloc'd); the others: NULL.
static void *gather_images(Dist *dist, const void *mine, size_t item_bytes, int64_t images, int batch) {
    size_t *bytes = xmalloc((size_t)dist->world * sizeof(size_t));
    for (int r = 0; r < dist->world; r++)
        bytes[r] = (size_t)rank_shard(images, batch, dist->world, r).count * item_bytes;
    void *all = dist->rank == 0 ? xmalloc((size_t)images * item_bytes + 1) : NULL;
    dist_gather_host(dist, mine, all, bytes);
    free(bytes);
    return all;
}

typedef struct {
    int positions;     // codes per image: h x w x G (0 for a VAE)
    int dim;           // D, the channels of one code's vector
    int latent;        // L, a VAE's latent size (0 for a VQ-VAE)
    int32_t *codes;    // [images, positions]
    float *latents;    // [images, positions, D], or NULL
    float *mean, *logvar;   // a VAE's [images, L]
} Encoded;

// The shard's images through the encoder and quantizer (a VAE: to its mean and logvar). The last
// batch is padded with its first image, and only its real images' outputs are kept.
static void encode_shard(Session *s, const Dataset *ds, Shard sh, Encoded *e) {
    Model *m = &s->model;
    OpsContext *ctx = &s->ctx;
    int batch = m->spec.batch;
    size_t per_image = (size_t)e->positions, L = (size_t)e->latent;
    int64_t *indices = xmalloc((size_t)batch * sizeof(int64_t));
    float *host = xmalloc(model_input_count(m) * sizeof(float));
    for (int64_t done = 0; done < sh.count; done += batch) {
        int n = sh.count - done < batch ? (int)(sh.count - done) : batch;
        for (int i = 0; i < batch; i++) indices[i] = sh.first + done + (i < n ? i : 0);
        dataset_fill_batch(ds, indices, batch, host);
        ctx->ops->to_device(ctx, m->input, host, model_input_count(m) * sizeof(float));
        if (e->latent) {
            model_encode_latent(m);
            ctx->ops->to_host(ctx, e->mean + done * L, m->vae_mean, n * L * sizeof(float));
            ctx->ops->to_host(ctx, e->logvar + done * L, m->vae_logvar, n * L * sizeof(float));
            continue;
        }
        model_encode_codes(m);
        ctx->ops->to_host(ctx, e->codes + done * per_image, m->codes, n * per_image * sizeof(int32_t));
        if (e->latents)
            ctx->ops->to_host(ctx, e->latents + done * per_image * e->dim, m->z_flat,
                              n * per_image * e->dim * sizeof(float));
    }
    free(indices);
    free(host);
}

// Rank 0: the codes file of every image (the arrays of all are taken over and freed).
static int write_codes_file(const CliArgs *args, const Session *s, const Dataset *ds, int64_t images, int64_t step,
                            Encoded *all, char *err, size_t err_len) {
    const Model *m = &s->model;
    int vae = all->latent > 0;
    CodesFile cf = {.checkpoint = xstrdup(args->checkpoint), .split = xstrdup(args->split),
                    .model_type = xstrdup(vae ? "vae" : "vqvae"), .step = step,
                    .num_embeddings = vae ? 0 : m->spec.num_embeddings, .image_channels = m->spec.in_channels,
                    .image_height = m->spec.height, .image_width = m->spec.width, .count = images,
                    .height = m->latent_height, .width = m->latent_width, .groups = vae ? 0 : model_code_groups(m),
                    .dim = m->spec.embedding_dim, .latent_size = all->latent, .codes = all->codes,
                    .latents = all->latents, .mean = all->mean, .logvar = all->logvar};
    memset(all, 0, sizeof *all);
    if (ds->labels) {
        cf.labels = xmalloc((size_t)images);
        memcpy(cf.labels, ds->labels, (size_t)images);
    }
    CheckpointMeta meta;   // the config attribute exactly as the checkpoint stores it
    int rc = checkpoint_read_meta(args->checkpoint, 0, &meta, &cf.config, err, err_len);
    if (rc == 0) rc = codes_file_write(args->out, &cf, err, err_len);
    codes_file_free(&cf);
    return rc;
}

static void free_encoded(Encoded *e) {
    free(e->codes);
    free(e->latents);
    free(e->mean);
    free(e->logvar);
}

// What each image's entry holds, in bytes, for the shard buffers and the gather.
static Encoded encoded_layout(const Model *m, int with_latents, size_t *code_bytes, size_t *latent_bytes) {
    Encoded e = {0};
    if (!model_has_codebook(m)) {
        e.latent = m->spec.vae_latent_dim;
        *code_bytes = *latent_bytes = (size_t)e.latent * sizeof(float);   // mean, logvar
        return e;
    }
    e.positions = m->latent_height * m->latent_width * model_code_groups(m);
    e.dim = m->spec.embedding_dim;
    *code_bytes = (size_t)e.positions * sizeof(int32_t);
    *latent_bytes = with_latents ? (size_t)e.positions * e.dim * sizeof(float) : 0;
    return e;
}

static void log_encoded(const CliArgs *args, const Model *m, const Dataset *ds, int64_t images, int64_t step) {
    char what[96];
    if (model_has_codebook(m))
        snprintf(what, sizeof what, "codes %dx%dx%d of %d", m->latent_height, m->latent_width, model_code_groups(m),
                 m->spec.num_embeddings);
    else
        snprintf(what, sizeof what, "VAE mean and logvar of %d dims", m->spec.vae_latent_dim);
    log_info("wrote %s: %lld %s images of %s (step %lld), %s%s%s", args->out, (long long)images, args->split,
             args->checkpoint, (long long)step, what, ds->labels ? ", labels" : "", args->latents ? ", latents" : "");
}

// A VQ-VAE's file has /codes (and /latents with --latents), a VAE's /mean and /logvar.
int command_encode(const CliArgs *args, Dist *dist) {
    DatasetSplit split = strcmp(args->split, "train") == 0 ? SPLIT_TRAIN : SPLIT_TEST;
    Session s;
    Dataset ds;
    CheckpointMeta meta;
    open_from_checkpoint(&s, &ds, split, args, dist, &meta);
    Model *m = &s.model;
    if (args->latents && !model_has_codebook(m))
        log_warn("--latents: a VAE's codes file holds its mean and logvar already; nothing more is written");
    int64_t images = args->count && args->count < ds.count ? args->count : ds.count;
    size_t first_bytes, second_bytes;   // per image: codes | mean, latents | logvar
    Encoded e = encoded_layout(m, args->latents, &first_bytes, &second_bytes);
    Shard mine = rank_shard(images, m->spec.batch, dist->world, dist->rank);
    void *first = xmalloc((size_t)mine.count * first_bytes + 1);
    void *second = second_bytes ? xmalloc((size_t)mine.count * second_bytes + 1) : NULL;
    if (e.latent) e.mean = first, e.logvar = second;
    else e.codes = first, e.latents = second;
    dist_sync(dist, &s.ctx);
    encode_shard(&s, &ds, mine, &e);
    Encoded all = e;
    all.codes = NULL, all.latents = all.mean = all.logvar = NULL;
    void *first_all = gather_images(dist, first, first_bytes, images, m->spec.batch);
    void *second_all = second ? gather_images(dist, second, second_bytes, images, m->spec.batch) : NULL;
    if (e.latent) all.mean = first_all, all.logvar = second_all;
    else all.codes = first_all, all.latents = second_all;
    int failed = 0;
    char err[2048];
    if (dist->rank == 0) {   // the file is written once, by rank 0, from every rank's outputs
        failed = write_codes_file(args, &s, &ds, images, meta.step, &all, err, sizeof err) != 0;
        if (failed) log_error("%s", err);
        else log_encoded(args, m, &ds, images, meta.step);
    }
    failed = dist_agree_any(dist, failed);
    free_encoded(&e);
    free_encoded(&all);
    session_close(&s);
    dataset_free(&ds);
    return failed ? EXIT_ERROR : EXIT_OK;
}

// ---- decode ------------------------------------------------------------------------------------

// The file must come from this checkpoint (same stored config and step) and fit this model: the
// codes within K and of its grid, a VAE's means of its latent size.
static void check_codes_belong(const CodesFile *cf, const CliArgs *args, const Model *m, int64_t step) {
    char err[2048];
    char *yaml = NULL;
    CheckpointMeta meta;
    if (checkpoint_read_meta(args->checkpoint, 0, &meta, &yaml, err, sizeof err) != 0) fatal("%s", err);
    int vae = !model_has_codebook(m), file_vae = strcmp(cf->model_type, "vae") == 0;
    int groups = vae ? 0 : model_code_groups(m);
    int fits = vae ? file_vae && cf->latent_size == m->spec.vae_latent_dim
                   : !file_vae && cf->num_embeddings == m->spec.num_embeddings && cf->height == m->latent_height &&
                         cf->width == m->latent_width && cf->groups == groups;
    int same = strcmp(yaml, cf->config) == 0 && cf->step == step && fits;
    free(yaml);
    char file[128], mine[128];
    if (strcmp(cf->model_type, "vae") == 0) snprintf(file, sizeof file, "a VAE's latents of %d", cf->latent_size);
    else snprintf(file, sizeof file, "K %lld, codes %dx%dx%d", (long long)cf->num_embeddings, cf->height, cf->width,
                  cf->groups);
    if (vae) snprintf(mine, sizeof mine, "a VAE's latents of %d", m->spec.vae_latent_dim);
    else snprintf(mine, sizeof mine, "K %d, codes %dx%dx%d", m->spec.num_embeddings, m->latent_height, m->latent_width,
                  groups);
    if (!same)
        fatal("codes file '%s' was written from checkpoint '%s' (step %lld, %s), not from '%s' (step %lld, %s)%s: its "
              "codes mean nothing for this model; encode again with `vqvae_dist encode --checkpoint %s --out "
              "CODES.h5`", args->codes, cf->checkpoint, (long long)cf->step, file, args->checkpoint, (long long)step,
              mine, cf->step == step ? " with another config" : "", args->checkpoint);
    if (vae) return;
    size_t n = (size_t)cf->count * cf->height * cf->width * cf->groups;
    for (size_t i = 0; i < n; i++)
        if (cf->codes[i] < 0 || cf->codes[i] >= m->spec.num_embeddings)
            fatal("codes file '%s': code %d at position %zu of /codes is outside 0..%d; the file is damaged, encode "
                  "again", args->codes, (int)cf->codes[i], i, m->spec.num_embeddings - 1);
}

// The decoder's images of the first count entries (host, count images): codes (int32, positions
// per image) or a VAE's latents (float, L per image). The last batch is padded with its first
// entry, as reconstruct pads with its first image.
static float *decode_images(Session *s, const void *entries, int count) {
    Model *m = &s->model;
    OpsContext *ctx = &s->ctx;
    int batch = m->spec.batch, vae = !model_has_codebook(m);
    size_t entry = vae ? (size_t)m->spec.vae_latent_dim * sizeof(float)
                       : (size_t)m->latent_height * m->latent_width * model_code_groups(m) * sizeof(int32_t);
    size_t image = model_input_count(m) / (size_t)batch;
    float *out = xmalloc((size_t)count * image * sizeof(float));
    unsigned char *host = xmalloc((size_t)batch * entry);
    for (int done = 0; done < count; done += batch) {
        int n = count - done < batch ? count - done : batch;
        for (int i = 0; i < batch; i++)
            memcpy(host + i * entry, (const unsigned char *)entries + (size_t)(done + (i < n ? i : 0)) * entry, entry);
        ctx->ops->to_device(ctx, vae ? (void *)m->vae_z : (void *)m->codes, host, (size_t)batch * entry);
        if (vae) model_decode_latent(m);
        else model_decode_codes(m);
        ctx->ops->to_host(ctx, out + (size_t)done * image, m->recon, (size_t)n * image * sizeof(float));
    }
    free(host);
    return out;
}

// Rank 0 writes count decoded images (host, the model's data range) as the grid's PNG; what and
// source describe them in the log line. Collective only in its return value.
static int write_decoded(const TileGrid *tiles, const CliArgs *args, Session *s, float *images, const char *what,
                         const char *source) {
    const ModelSpec *sp = &s->model.spec;
    images_to_centered(images, (size_t)tiles->count * sp->in_channels * sp->height * sp->width,
                       dataset_range_of(&s->cfg));
    if (s->dist->rank != 0) return EXIT_OK;
    char err[1024];
    const float *blocks[1] = {images};
    if (tile_grid_write(tiles, args->out, blocks, sp->in_channels, sp->height, sp->width, err, sizeof err) != 0) {
        log_error("%s", err);
        return EXIT_ERROR;
    }
    log_info("wrote %s: %d %s%s, %d x %d tiles of %dx%d px", args->out, tiles->count, what, source, tiles->rows,
             tiles->cols, sp->width * tiles->scale, sp->height * tiles->scale);
    return EXIT_OK;
}

// A VAE's file: its /mean decoded (as reconstruct decodes the mean).
int command_decode(const CliArgs *args, Dist *dist) {
    TileGrid tiles = tile_grid_plan(args, 1, 16, "decoded images");
    CodesFile cf;
    char err[2048];
    if (codes_file_read(args->codes, &cf, err, sizeof err) != 0) fatal("%s", err);
    Session s;
    CheckpointMeta meta;
    open_from_checkpoint(&s, NULL, SPLIT_TEST, args, dist, &meta);
    const ModelSpec *sp = &s.model.spec;
    check_codes_belong(&cf, args, &s.model, meta.step);
    tile_grid_fit(&tiles, args, cf.count, sp->height, sp->width);
    float *images = decode_images(&s, cf.mean ? (const void *)cf.mean : (const void *)cf.codes, tiles.count);
    char source[1200];
    snprintf(source, sizeof source, " (the first of %lld) of %s", (long long)cf.count, args->codes);
    int rc = write_decoded(&tiles, args, &s, images, "decoded images", source);
    free(images);
    codes_file_free(&cf);
    session_close(&s);
    return rc;
}

// ---- sample: a VAE's decoder on z ~ N(0, I) ------------------------------------------------------

// z of sample i is drawn from the stream (train.seed, SAMPLE, i): the same images for any --count
// prefix, world size or batch size; change train.seed=N for others.
int command_sample(const CliArgs *args, Dist *dist) {
    TileGrid tiles = tile_grid_plan(args, 1, 64, "samples");
    Session s;
    CheckpointMeta meta;
    open_from_checkpoint(&s, NULL, SPLIT_TEST, args, dist, &meta);
    const ModelSpec *sp = &s.model.spec;
    if (model_has_codebook(&s.model))
        fatal("sample draws z ~ N(0, I) through a VAE's decoder, but %s is a VQ-VAE (model.type vqvae): its codes "
              "need a learned prior; write them with `vqvae_dist encode` to train one, or give a model.type vae "
              "checkpoint", args->checkpoint);
    tile_grid_fit(&tiles, args, tiles.count, sp->height, sp->width);
    int L = sp->vae_latent_dim;
    float *z = xmalloc((size_t)tiles.count * L * sizeof(float));
    for (int i = 0; i < tiles.count; i++) {
        Rng rng = rng_stream(s.cfg.seed, RNG_PURPOSE_SAMPLE, (uint64_t)i, 0);
        for (int j = 0; j < L; j++) z[(size_t)i * L + j] = rng_normal(&rng);
    }
    float *images = decode_images(&s, z, tiles.count);
    char source[1200];
    snprintf(source, sizeof source, " of %s (step %lld, train.seed %llu)", args->checkpoint, (long long)meta.step,
             (unsigned long long)s.cfg.seed);
    int rc = write_decoded(&tiles, args, &s, images, "samples z ~ N(0, I)", source);
    free(z);
    free(images);
    session_close(&s);
    return rc;
}
