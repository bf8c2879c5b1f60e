// arch_small.c: the `small` VQ-VAE, the classic MNIST one of the blog (python/vqvae_dist/small.py,
// SmallVQVAE), as layer records with its state_dict keys:
//   encoder:  Conv(C->c0,k3s2p1) ReLU Conv(c0->c1,k3s2p1) ReLU Conv(c1->c2,k7) ReLU   (28x28 -> 1x1)
//   quantizer on [N, c2, h, w]: c2 / D code vectors of D dims at every position (grouped codes)
//   decoder:  ConvT(c2->c1,k7) ReLU ConvT(c1->c0,k3s2p1op1) ReLU ConvT(c0->C,k3s2p1op1) Sigmoid
#include "../core/common.h"
#include "layers.h"
#include "model.h"

static int conv(Net *net, const char *name, int x, int out, int k, int stride, int pad, int transposed, int op) {
    const Slot *s = &net->slots[x];
    ConvShape shape = conv_shape(s->dims[0], s->dims[1], s->dims[2], s->dims[3], out, k, stride, pad, transposed, 1);
    if (op) conv_shape_set_output_padding(&shape, op);
    return build_conv(net, name, x, shape);
}

void arch_small_build(Model *m) {
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
    a = model_add_quantizer(m, a, "VectorQuantizer.codebook.weight", "VectorQuantizer.ema_cluster_size",
                            "VectorQuantizer.ema_w");
    a = conv(net, "decoder.0", a, c[1], 7, 1, 0, 1, 0);
    a = build_relu(net, "decoder.1", a, 1);
    a = conv(net, "decoder.2", a, c[0], 3, 2, 1, 1, 1);
    a = build_relu(net, "decoder.3", a, 1);
    a = conv(net, "decoder.4", a, sp->in_channels, 3, 2, 1, 1, 1);
    m->recon_slot = build_sigmoid(net, "decoder.5", a, 1);
}
