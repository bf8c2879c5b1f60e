// test_model_codes.c: the model seen through its codes (src/model/model_codes.c) on the CPU
// backend, a small resnet VQ-VAE with random weights:
// - model_code_groups is 1 for the resnet (one code per latent position);
// - model_encode_codes gives the codes and z_flat of the full forward, bit for bit;
// - model_decode_codes of those codes gives the full forward's reconstruction, bit for bit, after
//   the quantizer's and decoder's buffers were overwritten;
// - it decodes the codes it is given: image i given image j's codes becomes image j's
//   reconstruction, and other codes give another image.
#include <string.h>

#include "../../src/core/common.h"
#include "../../src/core/rng.h"
#include "../../src/model/model.h"
#include "test_util.h"

enum { BATCH = 4, CHANNELS = 3, SIDE = 8, K = 16, D = 4 };

static void build(Model *m, OpsContext *ctx) {
    ops_context_init(ctx, "cpu", 0, 1, PRECISION_FP32, 1);
    ModelSpec spec = {.arch = ARCH_RESNET, .batch = BATCH, .in_channels = CHANNELS, .height = SIDE, .width = SIDE,
                      .hiddens = 8, .residual_hiddens = 4, .residual_layers = 1, .quantizer = QUANTIZER_EMA,
                      .num_embeddings = K, .embedding_dim = D, .commitment_cost = 0.25f, .decay = 0.99f,
                      .epsilon = 1e-5f, .codebook_init = CODEBOOK_INIT_NORMAL, .recon_weight = 1.0f,
                      .data_variance = 1.0};
    model_build(m, &spec, ctx);
    model_init_params(m, 7);
    Rng rng = rng_stream(3, RNG_PURPOSE_TEST, 0, 0);
    for (size_t i = 0; i < model_input_count(m); i++) m->input[i] = rng_uniform_range(&rng, -0.5f, 0.5f);
    // the codebook from encoder outputs (the data init), so that the images use many codes
    model_encode(m);
    CHECK(model_latent_count(m) >= K, "the test needs at least K latents");
    memcpy(m->codebook, m->z_flat, (size_t)K * D * sizeof(float));
}

int main(void) {
    TestCounts c = {0, 0};
    OpsContext ctx;
    Model m;
    build(&m, &ctx);
    int positions = m.latent_height * m.latent_width, latents = model_latent_count(&m);
    size_t image = model_input_count(&m) / BATCH, recon_bytes = model_input_count(&m) * sizeof(float);
    EXPECT(&c, model_code_groups(&m) == 1, "the resnet has %d codes per position, expected 1", model_code_groups(&m));
    EXPECT(&c, latents == BATCH * positions, "%d codes for %d images of %d positions", latents, BATCH, positions);

    model_forward(&m);
    int32_t *codes = xmalloc((size_t)latents * sizeof(int32_t));
    float *z = xmalloc((size_t)latents * D * sizeof(float)), *recon = xmalloc(recon_bytes);
    memcpy(codes, m.codes, (size_t)latents * sizeof(int32_t));
    memcpy(z, m.z_flat, (size_t)latents * D * sizeof(float));
    memcpy(recon, m.recon, recon_bytes);
    int used = 0;
    for (int j = 0; j < K; j++)
        for (int i = 0; i < latents; i++)
            if (codes[i] == j) {
                used++;
                break;
            }
    EXPECT(&c, used > 1, "the random model uses %d codes: the checks below could not see a wrong code", used);

    memset(m.codes, 0xff, (size_t)latents * sizeof(int32_t));
    memset(m.z_flat, 0, (size_t)latents * D * sizeof(float));
    model_encode_codes(&m);
    EXPECT(&c, memcmp(m.codes, codes, (size_t)latents * sizeof(int32_t)) == 0, "encode_codes: other codes");
    EXPECT(&c, memcmp(m.z_flat, z, (size_t)latents * D * sizeof(float)) == 0, "encode_codes: another z_flat");

    memset(m.recon, 0, recon_bytes);
    memset(m.net.slots[m.net.layers[m.quant_layer].out].data, 0, (size_t)latents * D * sizeof(float));
    model_decode_codes(&m);
    EXPECT(&c, memcmp(m.recon, recon, recon_bytes) == 0, "decode_codes of the forward's codes: another image "
           "(max rel error %.3g)", test_max_rel_error(m.recon, recon, model_input_count(&m)));

    // images in reverse order: image i decodes image BATCH-1-i's codes
    for (int i = 0; i < BATCH; i++)
        memcpy(m.codes + i * positions, codes + (BATCH - 1 - i) * positions, (size_t)positions * sizeof(int32_t));
    model_decode_codes(&m);
    for (int i = 0; i < BATCH; i++) {
        double err = test_max_rel_error(m.recon + i * image, recon + (BATCH - 1 - i) * image, image);
        EXPECT(&c, err <= 1e-6, "image %d decoded from image %d's codes: max rel error %.3g", i, BATCH - 1 - i, err);
    }
    for (int i = 0; i < latents; i++) m.codes[i] = (codes[i] + 1) % K;
    model_decode_codes(&m);
    EXPECT(&c, test_max_rel_error(m.recon, recon, model_input_count(&m)) > 1e-3,
           "other codes decode to the same images (max rel error %.3g)",
           test_max_rel_error(m.recon, recon, model_input_count(&m)));
    free(codes);
    free(z);
    free(recon);
    model_free(&m);
    ops_context_destroy(&ctx);
    return test_finish("test_model_codes", &c);
}
