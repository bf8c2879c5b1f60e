// arch_resnet.c: the `resnet` VQ-VAE of van den Oord et al. 2017 as in the PyTorch VQ-VAE
// notebook (DESIGN §2), as layer records with the notebook's state_dict keys:
//   encoder:  Conv(C->h/2,k4s2p1) ReLU Conv(h/2->h,k4s2p1) ReLU Conv(h->h,k3p1) ResidualStack
//   pre-VQ:   Conv1x1(h->D); quantizer (K x D)
//   decoder:  Conv(D->h,k3p1) ResidualStack ConvT(h->h/2,k4s2p1) ReLU ConvT(h/2->C,k4s2p1)
//   ResidualStack = L x [x + Conv1x1(ReLU(Conv3x3(ReLU(x)))) (no biases)] then ReLU
// The notebook's in-place ReLU makes its skip carry ReLU(x); we follow the paper: the skip is x.
#include <stdio.h>

#include "../core/common.h"
#include "layers.h"
#include "model.h"

// On x [N, h, size, size]; returns the stack's output slot.
static int residual_stack(Model *m, const char *prefix, int x, int size) {
    const ModelSpec *sp = &m->spec;
    Net *net = &m->net;
    char name[NET_NAME_MAX];
    int sum = x;
    for (int i = 0; i < sp->residual_layers; i++) {
        snprintf(name, sizeof name, "%s._residual_stack._layers.%d._block.0", prefix, i);
        int t = build_relu(net, name, sum, 0);   // not in place: the skip still needs the sum
        snprintf(name, sizeof name, "%s._residual_stack._layers.%d._block.1", prefix, i);
        int u = build_conv(net, name, t, conv_shape(sp->batch, sp->hiddens, size, size, sp->residual_hiddens, 3, 1, 1, 0, 0));
        snprintf(name, sizeof name, "%s._residual_stack._layers.%d._block.2", prefix, i);
        u = build_relu(net, name, u, 1);
        snprintf(name, sizeof name, "%s._residual_stack._layers.%d._block.3", prefix, i);
        int w = build_conv(net, name, u, conv_shape(sp->batch, sp->residual_hiddens, size, size, sp->hiddens, 1, 1, 0, 0, 0));
        snprintf(name, sizeof name, "%s._residual_stack._layers.%d.skip", prefix, i);
        sum = build_add_inplace(net, name, w, sum);
    }
    snprintf(name, sizeof name, "%s._residual_stack.relu", prefix);
    return build_relu(net, name, sum, 0);
}

void arch_resnet_build(Model *m) {
    const ModelSpec *sp = &m->spec;
    Net *net = &m->net;
    int n = sp->batch, c = sp->in_channels, h = sp->hiddens, half = sp->hiddens / 2, d = sp->embedding_dim;
    int s1 = sp->height / 2, s2 = sp->height / 4;
    CHECK(sp->height == sp->width && sp->height % 4 == 0 && sp->hiddens % 2 == 0,
          "resnet: the spec must have square images of a multiple of 4 and even hiddens (model_spec checks this)");
    m->latent_height = m->latent_width = s2;

    int a = build_conv(net, "_encoder._conv_1", m->input_slot, conv_shape(n, c, sp->height, sp->width, half, 4, 2, 1, 0, 1));
    a = build_relu(net, "_encoder.relu_1", a, 1);
    a = build_conv(net, "_encoder._conv_2", a, conv_shape(n, half, s1, s1, h, 4, 2, 1, 0, 1));
    a = build_relu(net, "_encoder.relu_2", a, 1);
    a = build_conv(net, "_encoder._conv_3", a, conv_shape(n, h, s2, s2, h, 3, 1, 1, 0, 1));
    a = residual_stack(m, "_encoder", a, s2);
    int z = build_conv(net, "_pre_vq_conv", a, conv_shape(n, h, s2, s2, d, 1, 1, 0, 0, 1));
    int q = model_add_quantizer(m, z, "_vq_vae._embedding.weight", "_vq_vae._ema_cluster_size", "_vq_vae._ema_w");
    a = build_conv(net, "_decoder._conv_1", q, conv_shape(n, d, s2, s2, h, 3, 1, 1, 0, 1));
    a = residual_stack(m, "_decoder", a, s2);
    a = build_conv(net, "_decoder._conv_trans_1", a, conv_shape(n, h, s2, s2, half, 4, 2, 1, 1, 1));
    a = build_relu(net, "_decoder.relu_1", a, 1);
    m->recon_slot = build_conv(net, "_decoder._conv_trans_2", a, conv_shape(n, half, s1, s1, c, 4, 2, 1, 1, 1));
}
