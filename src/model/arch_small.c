// arch_small.c: the `small` VQ-VAE, the classic MNIST one of the blog (python/vqvae_dist/small.py,
// SmallVQVAE), as layer records with its state_dict keys:
//   encoder:  Conv(C->c0,k3s2p1) ReLU Conv(c0->c1,k3s2p1) ReLU Conv(c1->c2,k7) ReLU   (28x28 -> 1x1)
//   quantizer on [N, c2, h, w]: c2 / D code vectors of D dims at every position (grouped codes)
//   decoder:  ConvT(c2->c1,k7) ReLU ConvT(c1->c0,k3s2p1op1) ReLU ConvT(c0->C,k3s2p1op1) Sigmoid
// and the Gaussian VAE on the same encoder and decoder (arch_small_vae_build, model.type vae).
#include "../core/common.h"
#include "layers.h"
#include "model.h"

static int conv(Net *net, const char *name, int x, int out, int k, int stride, int pad, int transposed, int op) {
    const Slot *s = &net->slots[x];
    ConvShape shape = conv_shape(s->dims[0], s->dims[1], s->dims[2], s->dims[3], out, k, stride, pad, transposed, 1);
    if (op) conv_shape_set_output_padding(&shape, op);
    return build_conv(net, name, x, shape);
}

// The encoder: C x H x W -> c2 channels at (H/4 - 6) x (W/4 - 6); returns its last slot.
static int small_encoder(Model *m) {
    const ModelSpec *sp = &m->spec;
    Net *net = &m->net;
    const int *c = sp->small_channels;
    CHECK(sp->height % 4 == 0 && sp->width % 4 == 0 && sp->height >= 28 && sp->width >= 28,
          "small: %dx%d images (model_spec checks that both are multiples of 4 and at least 28)", sp->height,
          sp->width);
    int a = conv(net, "encoder.0", m->input_slot, c[0], 3, 2, 1, 0, 0);
    a = build_relu(net, "encoder.1", a, 1);
    a = conv(net, "encoder.2", a, c[1], 3, 2, 1, 0, 0);
    a = build_relu(net, "encoder.3", a, 1);
    a = conv(net, "encoder.4", a, c[2], 7, 1, 0, 0, 0);
    a = build_relu(net, "encoder.5", a, 1);
    m->latent_height = net->slots[a].dims[2];
    m->latent_width = net->slots[a].dims[3];
    return a;
}

// The decoder from slot a [N, c2, h, w]; sets the reconstruction slot.
static void small_decoder(Model *m, int a) {
    Net *net = &m->net;
    const int *c = m->spec.small_channels;
    a = conv(net, "decoder.0", a, c[1], 7, 1, 0, 1, 0);
    a = build_relu(net, "decoder.1", a, 1);
    a = conv(net, "decoder.2", a, c[0], 3, 2, 1, 1, 1);
    a = build_relu(net, "decoder.3", a, 1);
    a = conv(net, "decoder.4", a, m->spec.in_channels, 3, 2, 1, 1, 1);
    m->recon_slot = build_sigmoid(net, "decoder.5", a, 1);
}

void arch_small_build(Model *m) {
    int a = small_encoder(m);
    a = model_add_quantizer(m, a, "VectorQuantizer.codebook.weight", "VectorQuantizer.ema_cluster_size",
                            "VectorQuantizer.ema_w");
    small_decoder(m, a);
}

// model.type vae (python/vqvae_dist/small.py, SmallVAE): the encoder's c2 x 1 x 1 output, then
//   latent_mean.0 = Linear(c2 -> L), latent_logvar.0 = Linear(c2 -> L), the KL term,
//   z = mean + exp(logvar / 2) eps, latent_dec.0 = Linear(L -> c2) + ReLU, viewed as [N, c2, 1, 1],
//   and the decoder. The KL layer comes before the reparam so that the backward pass meets the
//   reparam first (it writes the mean's and logvar's gradients, the KL adds to them).
void arch_small_vae_build(Model *m) {
    Net *net = &m->net;
    int h = small_encoder(m);
    CHECK(m->latent_height == 1 && m->latent_width == 1, "vae: the encoder reaches %dx%d, not 1x1 (model_spec "
          "checks for 28x28 images)", m->latent_height, m->latent_width);
    int mean = build_linear(net, "latent_mean.0", h, m->spec.vae_latent_dim);
    int logvar = build_linear(net, "latent_logvar.0", h, m->spec.vae_latent_dim);
    build_kl_loss(net, "kl_loss", mean, logvar, m->spec.kl_weight, m->scalars_slot, SCALAR_LATENT_LOSS);
    m->kl_layer = net->layer_count - 1;
    int z = build_reparam(net, "reparam", mean, logvar);
    m->reparam_layer = net->layer_count - 1;
    int a = build_linear(net, "latent_dec.0", z, m->spec.small_channels[2]);
    a = build_relu(net, "latent_dec.1", a, 1);
    small_decoder(m, a);
}
