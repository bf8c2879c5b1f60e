// arch_groupnorm.c: the `groupnorm` VQ-VAE, the layout of diffusers' VQModel with
// DownEncoderBlock2D / UpDecoderBlock2D blocks and act_fn silu, as layer records with VQModel's
// state_dict keys (docs/MODELS.md says which VQModel arguments it corresponds to):
//   encoder:  conv_in, per block b: layers_per_block ResnetBlock2D (+ Downsample2D but after the
//             last), mid block (resnet, attention, resnet), conv_norm_out, SiLU, conv_out
//   quant_conv (1x1), quantize, post_quant_conv (1x1)
//   decoder:  conv_in, mid block, per reversed block: layers_per_block + 1 resnets (+ Upsample2D
//             but after the last), conv_norm_out, SiLU, conv_out
//   ResnetBlock2D = conv2(dropout(SiLU(norm2(conv1(SiLU(norm1(x))))))) + (conv_shortcut(x) or x)
#include <stdio.h>

#include "../core/common.h"
#include "layers.h"
#include "model.h"

// A slot and its NCHW size, as the builder walks down and up.
typedef struct {
    int slot, c, h, w;
} Act;

static Act conv3x3(Net *net, const char *name, Act x, int out, int stride, int pad) {
    ConvShape s = conv_shape(net->slots[x.slot].dims[0], x.c, x.h, x.w, out, 3, stride, pad, 0, 1);
    return (Act){build_conv(net, name, x.slot, s), out, s.out_height, s.out_width};
}

static Act norm_silu(Model *m, const char *norm, const char *act, Act x) {
    Net *net = &m->net;
    int y = build_groupnorm(net, norm, x.slot, m->spec.gn_groups, m->spec.gn_eps);
    return (Act){build_silu(net, act, y), x.c, x.h, x.w};
}

static Act resnet_block(Model *m, const char *prefix, Act x, int out) {
    Net *net = &m->net;
    char a[NET_NAME_MAX], b[NET_NAME_MAX];
    snprintf(a, sizeof a, "%s.norm1", prefix);
    snprintf(b, sizeof b, "%s.silu1", prefix);
    Act h = norm_silu(m, a, b, x);
    snprintf(a, sizeof a, "%s.conv1", prefix);
    h = conv3x3(net, a, h, out, 1, 1);
    snprintf(a, sizeof a, "%s.norm2", prefix);
    snprintf(b, sizeof b, "%s.silu2", prefix);
    h = norm_silu(m, a, b, h);
    snprintf(a, sizeof a, "%s.dropout", prefix);
    h.slot = build_dropout_inplace(net, a, h.slot, m->spec.gn_dropout);
    snprintf(a, sizeof a, "%s.conv2", prefix);
    h = conv3x3(net, a, h, out, 1, 1);
    int skip = x.slot;
    if (x.c != out) {
        snprintf(a, sizeof a, "%s.conv_shortcut", prefix);
        skip = build_conv(net, a, x.slot, conv_shape(net->slots[x.slot].dims[0], x.c, x.h, x.w, out, 1, 1, 0, 0, 1));
    }
    snprintf(a, sizeof a, "%s.residual", prefix);
    h.slot = build_add_inplace(net, a, h.slot, skip);
    return h;
}

// UNetMidBlock2D: resnets.0, attentions.0 (unless mid_attention is off), resnets.1.
static Act mid_block(Model *m, const char *prefix, Act x) {
    char name[NET_NAME_MAX];
    snprintf(name, sizeof name, "%s.mid_block.resnets.0", prefix);
    x = resnet_block(m, name, x, x.c);
    if (m->spec.gn_mid_attention) {
        snprintf(name, sizeof name, "%s.mid_block.attentions.0", prefix);
        x.slot = build_attention_block(&m->net, name, x.slot, m->spec.gn_groups, m->spec.gn_eps);
    }
    snprintf(name, sizeof name, "%s.mid_block.resnets.1", prefix);
    return resnet_block(m, name, x, x.c);
}

// conv_norm_out, SiLU, conv_out.
static Act head(Model *m, const char *prefix, Act x, int out) {
    char a[NET_NAME_MAX], b[NET_NAME_MAX];
    snprintf(a, sizeof a, "%s.conv_norm_out", prefix);
    snprintf(b, sizeof b, "%s.conv_act", prefix);
    x = norm_silu(m, a, b, x);
    snprintf(a, sizeof a, "%s.conv_out", prefix);
    return conv3x3(&m->net, a, x, out, 1, 1);
}

static Act encoder(Model *m, Act x) {
    const ModelSpec *sp = &m->spec;
    Net *net = &m->net;
    char name[NET_NAME_MAX];
    x = conv3x3(net, "encoder.conv_in", x, sp->gn_block_channels[0], 1, 1);
    for (int b = 0; b < sp->gn_blocks; b++) {
        for (int i = 0; i < sp->gn_layers_per_block; i++) {
            snprintf(name, sizeof name, "encoder.down_blocks.%d.resnets.%d", b, i);
            x = resnet_block(m, name, x, sp->gn_block_channels[b]);
        }
        if (b == sp->gn_blocks - 1) break;
        // diffusers' Downsample2D with padding 0: pad right and bottom by 1, conv3x3 stride 2
        snprintf(name, sizeof name, "encoder.down_blocks.%d.downsamplers.0.pad", b);
        Act padded = {build_pad(net, name, x.slot, 0, 1, 0, 1), x.c, x.h + 1, x.w + 1};
        snprintf(name, sizeof name, "encoder.down_blocks.%d.downsamplers.0.conv", b);
        x = conv3x3(net, name, padded, x.c, 2, 0);
    }
    x = mid_block(m, "encoder", x);
    return head(m, "encoder", x, sp->gn_latent_channels);
}

static Act decoder(Model *m, Act x) {
    const ModelSpec *sp = &m->spec;
    Net *net = &m->net;
    char name[NET_NAME_MAX];
    x = conv3x3(net, "decoder.conv_in", x, sp->gn_block_channels[sp->gn_blocks - 1], 1, 1);
    x = mid_block(m, "decoder", x);
    for (int b = 0; b < sp->gn_blocks; b++) {
        int out = sp->gn_block_channels[sp->gn_blocks - 1 - b];
        for (int i = 0; i < sp->gn_layers_per_block + 1; i++) {
            snprintf(name, sizeof name, "decoder.up_blocks.%d.resnets.%d", b, i);
            x = resnet_block(m, name, x, out);
        }
        if (b == sp->gn_blocks - 1) break;
        snprintf(name, sizeof name, "decoder.up_blocks.%d.upsamplers.0.upsample", b);
        Act up = {build_upsample2x(net, name, x.slot), x.c, 2 * x.h, 2 * x.w};
        snprintf(name, sizeof name, "decoder.up_blocks.%d.upsamplers.0.conv", b);
        x = conv3x3(net, name, up, x.c, 1, 1);
    }
    return head(m, "decoder", x, sp->in_channels);
}

void arch_groupnorm_build(Model *m) {
    const ModelSpec *sp = &m->spec;
    Net *net = &m->net;
    int n = sp->batch, d = sp->embedding_dim, lc = sp->gn_latent_channels, f = 1 << (sp->gn_blocks - 1);
    CHECK(sp->gn_blocks >= 1 && sp->gn_blocks <= GN_MAX_BLOCKS && sp->height % f == 0 && sp->width % f == 0,
          "groupnorm: %d blocks on %dx%d images (model_spec checks that the size divides by 2^(blocks-1))",
          sp->gn_blocks, sp->height, sp->width);
    m->latent_height = sp->height / f;
    m->latent_width = sp->width / f;
    Act x = {m->input_slot, sp->in_channels, sp->height, sp->width};
    x = encoder(m, x);
    int z = build_conv(net, "quant_conv", x.slot, conv_shape(n, lc, x.h, x.w, d, 1, 1, 0, 0, 1));
    int q = model_add_quantizer(m, z, "quantize.embedding.weight", "quantize.ema_cluster_size", "quantize.ema_w");
    int p = build_conv(net, "post_quant_conv", q, conv_shape(n, d, x.h, x.w, lc, 1, 1, 0, 0, 1));
    m->recon_slot = decoder(m, (Act){p, lc, x.h, x.w}).slot;
}
