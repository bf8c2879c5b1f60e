// cmd_codes.c: encode (the images of a split -> a codes file) and decode (a codes file -> a PNG of
// the decoder's images); the file's layout is docs/CODES.md (src/io/codes_file.h).
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
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
    int positions;     // codes per image: h x w x G
    int dim;           // D, the channels of one code's vector
    int32_t *codes;    // [images of the shard, positions]
    float *latents;    // [images of the shard, positions, D], or NULL
} Encoded;

// The shard's images through the encoder and quantizer. The last batch is padded with its first
// image, and only its real images' codes are kept.
static void encode_shard(Session *s, const Dataset *ds, Shard sh, Encoded *e) {
    Model *m = &s->model;
    OpsContext *ctx = &s->ctx;
    int batch = m->spec.batch;
    size_t per_image = (size_t)e->positions;
    int64_t *indices = xmalloc((size_t)batch * sizeof(int64_t));
    float *host = xmalloc(model_input_count(m) * sizeof(float));
    for (int64_t done = 0; done < sh.count; done += batch) {
        int n = sh.count - done < batch ? (int)(sh.count - done) : batch;
        for (int i = 0; i < batch; i++) indices[i] = sh.first + done + (i < n ? i : 0);
        dataset_fill_batch(ds, indices, batch, host);
        ctx->ops->to_device(ctx, m->input, host, model_input_count(m) * sizeof(float));
        model_encode_codes(m);
        ctx->ops->to_host(ctx, e->codes + done * per_image, m->codes, n * per_image * sizeof(int32_t));
        if (e->latents)
            ctx->ops->to_host(ctx, e->latents + done * per_image * e->dim, m->z_flat,
                              n * per_image * e->dim * sizeof(float));
    }
    free(indices);
    free(host);
}

// Rank 0: the codes file of every image (codes and latents are taken over and freed).
static int write_codes_file(const CliArgs *args, const Session *s, const Dataset *ds, int64_t images, int64_t step,
                            int32_t *codes, float *latents, char *err, size_t err_len) {
    const Model *m = &s->model;
    CodesFile cf = {.checkpoint = xstrdup(args->checkpoint), .split = xstrdup(args->split),
                    .model_type = xstrdup("vqvae"), .step = step, .num_embeddings = m->spec.num_embeddings,
                    .image_channels = m->spec.in_channels, .image_height = m->spec.height,
                    .image_width = m->spec.width, .count = images, .height = m->latent_height,
                    .width = m->latent_width, .groups = model_code_groups(m), .dim = m->spec.embedding_dim,
                    .codes = codes, .latents = latents};
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

// model.type vae (to come): a VAE's session writes /mean and /logvar instead of /codes (CodesFile
// has the fields, codes_file_write writes them), encoded by its own encode_shard.
int command_encode(const CliArgs *args, Dist *dist) {
    DatasetSplit split = strcmp(args->split, "train") == 0 ? SPLIT_TRAIN : SPLIT_TEST;
    Session s;
    Dataset ds;
    CheckpointMeta meta;
    open_from_checkpoint(&s, &ds, split, args, dist, &meta);
    Model *m = &s.model;
    int64_t images = args->count && args->count < ds.count ? args->count : ds.count;
    Encoded e = {.positions = m->latent_height * m->latent_width * model_code_groups(m),
                 .dim = m->spec.embedding_dim};
    Shard mine = rank_shard(images, m->spec.batch, dist->world, dist->rank);
    e.codes = xmalloc((size_t)mine.count * e.positions * sizeof(int32_t) + 1);
    if (args->latents) e.latents = xmalloc((size_t)mine.count * e.positions * e.dim * sizeof(float) + 1);
    dist_sync(dist, &s.ctx);
    encode_shard(&s, &ds, mine, &e);
    int32_t *codes = gather_images(dist, e.codes, e.positions * sizeof(int32_t), images, m->spec.batch);
    float *latents = args->latents ? gather_images(dist, e.latents, (size_t)e.positions * e.dim * sizeof(float),
                                                   images, m->spec.batch)
                                   : NULL;
    int failed = 0;
    char err[2048];
    if (dist->rank == 0) {   // the file is written once, by rank 0, from every rank's codes
        failed = write_codes_file(args, &s, &ds, images, meta.step, codes, latents, err, sizeof err) != 0;
        if (failed) log_error("%s", err);
        else log_info("wrote %s: %lld %s images of %s (step %lld), codes %dx%dx%d of %d%s%s", args->out,
                      (long long)images, args->split, args->checkpoint, (long long)meta.step, m->latent_height,
                      m->latent_width, model_code_groups(m), m->spec.num_embeddings, ds.labels ? ", labels" : "",
                      args->latents ? ", latents" : "");
    }
    failed = dist_agree_any(dist, failed);
    free(e.codes);
    free(e.latents);
    session_close(&s);
    dataset_free(&ds);
    return failed ? EXIT_ERROR : EXIT_OK;
}

// ---- decode ------------------------------------------------------------------------------------

// The codes must come from this checkpoint (same stored config and step) and fit this model.
static void check_codes_belong(const CodesFile *cf, const CliArgs *args, const Model *m, int64_t step) {
    char err[2048];
    char *yaml = NULL;
    CheckpointMeta meta;
    if (checkpoint_read_meta(args->checkpoint, 0, &meta, &yaml, err, sizeof err) != 0) fatal("%s", err);
    int groups = model_code_groups(m);
    int same = strcmp(yaml, cf->config) == 0 && cf->step == step && cf->num_embeddings == m->spec.num_embeddings &&
               cf->height == m->latent_height && cf->width == m->latent_width && cf->groups == groups;
    free(yaml);
    if (!same)
        fatal("codes file '%s' was written from checkpoint '%s' (step %lld, K %lld, codes %dx%dx%d), not from '%s' "
              "(step %lld, K %d, codes %dx%dx%d)%s: its codes mean nothing for this codebook; encode again with "
              "`vqvae_dist encode --checkpoint %s --out CODES.h5`", args->codes, cf->checkpoint, (long long)cf->step,
              (long long)cf->num_embeddings, cf->height, cf->width, cf->groups, args->checkpoint, (long long)step,
              m->spec.num_embeddings, m->latent_height, m->latent_width, groups,
              cf->step == step ? " with another config" : "", args->checkpoint);
    size_t n = (size_t)cf->count * cf->height * cf->width * cf->groups;
    for (size_t i = 0; i < n; i++)
        if (cf->codes[i] < 0 || cf->codes[i] >= m->spec.num_embeddings)
            fatal("codes file '%s': code %d at position %zu of /codes is outside 0..%d; the file is damaged, encode "
                  "again", args->codes, (int)cf->codes[i], i, m->spec.num_embeddings - 1);
}

// The decoder's images of the first count codes (host, count images). The last batch is padded
// with its first image's codes, as reconstruct pads with its first image.
static float *decode_images(Session *s, const int32_t *codes, int count) {
    Model *m = &s->model;
    OpsContext *ctx = &s->ctx;
    int batch = m->spec.batch;
    size_t positions = (size_t)m->latent_height * m->latent_width * model_code_groups(m);
    size_t image = model_input_count(m) / (size_t)batch;
    float *out = xmalloc((size_t)count * image * sizeof(float));
    int32_t *host = xmalloc((size_t)batch * positions * sizeof(int32_t));
    for (int done = 0; done < count; done += batch) {
        int n = count - done < batch ? count - done : batch;
        for (int i = 0; i < batch; i++)
            memcpy(host + i * positions, codes + (size_t)(done + (i < n ? i : 0)) * positions,
                   positions * sizeof(int32_t));
        ctx->ops->to_device(ctx, m->codes, host, (size_t)batch * positions * sizeof(int32_t));
        model_decode_codes(m);
        ctx->ops->to_host(ctx, out + (size_t)done * image, m->recon, (size_t)n * image * sizeof(float));
    }
    free(host);
    return out;
}

// model.type vae (to come): decode the file's /mean instead (codes_file_read reads /codes only).
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
    float *images = decode_images(&s, cf.codes, tiles.count);
    int rc = EXIT_OK;
    if (dist->rank == 0) {
        const float *blocks[1] = {images};
        if (tile_grid_write(&tiles, args->out, blocks, sp->in_channels, sp->height, sp->width, err, sizeof err) != 0) {
            log_error("%s", err);
            rc = EXIT_ERROR;
        } else {
            log_info("wrote %s: the first %d of %lld images of %s decoded, %d x %d tiles of %dx%d px", args->out,
                     tiles.count, (long long)cf.count, args->codes, tiles.rows, tiles.cols, sp->width * tiles.scale,
                     sp->height * tiles.scale);
        }
    }
    free(images);
    codes_file_free(&cf);
    session_close(&s);
    return rc;
}
