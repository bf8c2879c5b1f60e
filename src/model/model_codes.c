// model_codes.c: the model seen through its codes (`vqvae_dist encode` and `decode`): the encoder
// and quantizer alone, and the decoder alone, fed with given codes; for a VAE the same through its
// latents (and `sample`'s z ~ N(0, I)). See model.h.
#include "model.h"

#include "../core/common.h"

int model_code_groups(const Model *m) {
    const QuantizeArgs *a = &m->net.layers[m->quant_layer].quant;
    int positions = m->spec.batch * m->latent_height * m->latent_width;
    CHECK(positions > 0 && a->m % positions == 0, "the quantizer's %d codes are not whole groups of %d positions",
          a->m, positions);
    return a->m / positions;
}

void model_encode_codes(Model *m) { net_forward_range(&m->net, 0, m->quant_layer + 1); }

// The last layer that writes the reconstruction (the losses after it are not needed).
static int last_recon_writer(const Net *net, int recon_slot) {
    for (int i = net->layer_count - 1; i >= 0; i--)
        if (net->layers[i].out == recon_slot) return i;
    fatal_at(__FILE__, __LINE__, "no layer writes the reconstruction");
}

void model_decode_codes(Model *m) {
    Net *net = &m->net;
    const Layer *q = &net->layers[m->quant_layer];
    const Slot *out = &net->slots[q->out];   // q [N, G D, h, w]; codes in channel-slice order
    const Ops *ops = m->ctx->ops;
    float *q_flat = net->slots[q->quant.q_flat].data;
    ops->vq_gather(m->ctx, m->codebook, m->codes, q->quant.m, q->quant.d, q_flat);
    ops->nhwc_to_nchw(m->ctx, q_flat, q->y, out->dims[0], out->dims[1], out->dims[2] * out->dims[3]);
    net_forward_range(net, m->quant_layer + 1, last_recon_writer(net, m->recon_slot) + 1);
}

// ---- model.type vae: the latents instead of codes ---------------------------------------------

void model_encode_latent(Model *m) {
    CHECK(m->kl_layer >= 0, "model_encode_latent: not a VAE");
    net_forward_range(&m->net, 0, m->kl_layer);
}

void model_decode_latent(Model *m) {
    CHECK(m->reparam_layer >= 0, "model_decode_latent: not a VAE");
    net_forward_range(&m->net, m->reparam_layer + 1, last_recon_writer(&m->net, m->recon_slot) + 1);
}
