// codes_file.h: codes files (docs/CODES.md, version 1): what an encoder makes of the images of one
// split, written by `vqvae_dist encode` and read by `vqvae_dist decode` (and by python/vqvae_dist):
//   /codes    [N, H, W, G]     code indices, the smallest unsigned type that holds K - 1 (gzip)
//   /latents  [N, H, W, G, D]  float32 quantizer inputs, optional
//   /mean, /logvar [N, L]      float32, a VAE's (instead of /codes)
//   /labels   [N]              uint8, when the dataset has them
//   /         attrs: format, version, checkpoint, step, config, split, model_type, num_embeddings
//             (VQ only), image_channels, image_height, image_width
// The file's bytes depend only on its contents (no times are recorded), so the same codes give the
// same file whoever computed them.
#pragma once
#include <stddef.h>
#include <stdint.h>

#define CODES_FORMAT_NAME "vqvae_dist_codes"
enum { CODES_FORMAT_VERSION = 1 };

typedef struct {
    // attributes
    char *checkpoint;          // the checkpoint's path, as given
    char *config;              // the checkpoint's config attribute, unchanged
    char *split;               // "train" or "test"
    char *model_type;          // "vqvae" or "vae"
    int64_t step;              // the checkpoint's step
    int64_t num_embeddings;    // K (vqvae)
    int image_channels, image_height, image_width;
    // the arrays' shapes
    int64_t count;             // N images
    int height, width;         // the latent grid H x W (vqvae)
    int groups, dim;           // G codes per position, D channels each
    int latent_size;           // L (vae)
    // the arrays, NULL when absent
    int32_t *codes;            // N H W G (vqvae)
    float *latents;            // N H W G D (vqvae, optional)
    float *mean, *logvar;      // N L each (vae)
    uint8_t *labels;           // N
} CodesFile;

// Writes path atomically (path.tmp, fsync, rename), refusing a full disk before anything is
// written. The codes must lie in [0, K). 0, or -1 with err naming the file.
int codes_file_write(const char *path, const CodesFile *cf, char *err, size_t err_len);

// Reads the attributes, /codes (as int32) and /labels of path into out (malloc'd; free with
// codes_file_free); for model_type vae /mean instead of /codes. /latents and /logvar are not read. 0, or -1 with err naming the file
// and what is wrong with it (missing, not HDF5, a checkpoint, another format version).
int codes_file_read(const char *path, CodesFile *out, char *err, size_t err_len);
void codes_file_free(CodesFile *cf);
