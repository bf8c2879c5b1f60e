"""`model.arch: groupnorm`: the layout of diffusers' VQModel with DownEncoderBlock2D / UpDecoderBlock2D
blocks and act_fn silu, written from its description (docs/MODELS.md says which VQModel arguments it
corresponds to and what differs). The state_dict keys are VQModel's: encoder.conv_in.weight,
encoder.down_blocks.0.resnets.0.norm1.weight, encoder.down_blocks.0.downsamplers.0.conv.weight,
encoder.mid_block.attentions.0.to_q.weight, quant_conv.weight, quantize.embedding.weight,
post_quant_conv.weight, decoder.up_blocks.0.upsamplers.0.conv.weight, ...
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import VQVAEBase
from .quantizer import NAMES, VectorQuantizer


def group_norm(channels, groups, eps):
    if channels % groups:
        raise ValueError(f'GroupNorm: {channels} channels are not divisible by model.norm_num_groups = {groups}; '
                         'choose block_out_channels that are multiples of it')
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=eps, affine=True)


class ResnetBlock2D(nn.Module):
    """norm1 -> SiLU -> conv1 -> norm2 -> SiLU -> dropout -> conv2, plus the input (through a 1x1
    conv_shortcut when the channel count changes)."""

    def __init__(self, in_channels, out_channels, groups, eps, dropout):
        super().__init__()
        self.norm1 = group_norm(in_channels, groups, eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = group_norm(out_channels, groups, eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels \
            else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Attention(nn.Module):
    """Single-head self-attention over the H*W positions, GroupNorm first, with a residual connection."""

    def __init__(self, channels, groups, eps):
        super().__init__()
        self.group_norm = group_norm(channels, groups, eps)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x):
        n, c, h, w = x.shape
        tokens = self.group_norm(x).view(n, c, h * w).transpose(1, 2)          # [N, HW, C]
        q, k, v = self.to_q(tokens), self.to_k(tokens), self.to_v(tokens)
        weights = torch.softmax(torch.bmm(q, k.transpose(1, 2)) / math.sqrt(c), dim=-1)
        out = self.to_out[0](torch.bmm(weights, v))
        return out.transpose(1, 2).reshape(n, c, h, w) + x


class Downsample2D(nn.Module):
    """Zero-pad right and bottom by 1, then conv 3x3 stride 2 (diffusers' downsample_padding=0)."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2D(nn.Module):
    """Nearest-neighbour x2, then conv 3x3."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest'))


class Block2D(nn.Module):
    """DownEncoderBlock2D (sampler = Downsample2D, under `downsamplers`) or UpDecoderBlock2D
    (Upsample2D, under `upsamplers`): resnets, then the optional sampler."""

    def __init__(self, in_channels, out_channels, num_layers, norm, sampler=None, sampler_name='downsamplers'):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, *norm)
                                      for i in range(num_layers)])
        self.sampler_name = sampler_name
        if sampler is not None:
            setattr(self, sampler_name, nn.ModuleList([sampler(out_channels)]))

    def forward(self, x):
        for resnet in self.resnets:
            x = resnet(x)
        samplers = getattr(self, self.sampler_name, None)
        return x if samplers is None else samplers[0](x)


class MidBlock2D(nn.Module):
    """UNetMidBlock2D: resnets.0, attentions.0 (unless mid_attention is false), resnets.1."""

    def __init__(self, channels, norm, attention):
        super().__init__()
        self.attentions = nn.ModuleList([Attention(channels, norm[0], norm[1])] if attention else [])
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, *norm) for _ in range(2)])

    def forward(self, x):
        x = self.resnets[0](x)
        for attn in self.attentions:
            x = attn(x)
        return self.resnets[1](x)


class Encoder(nn.Module):
    def __init__(self, in_channels, out_channels, block_out_channels, layers_per_block, norm, attention):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        blocks, previous = [], block_out_channels[0]
        for i, channels in enumerate(block_out_channels):
            last = i == len(block_out_channels) - 1
            blocks.append(Block2D(previous, channels, layers_per_block, norm, None if last else Downsample2D))
            previous = channels
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = MidBlock2D(block_out_channels[-1], norm, attention)
        self.conv_norm_out = group_norm(block_out_channels[-1], norm[0], norm[1])
        self.conv_out = nn.Conv2d(block_out_channels[-1], out_channels, kernel_size=3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, in_channels, out_channels, block_out_channels, layers_per_block, norm, attention):
        super().__init__()
        reversed_channels = list(reversed(block_out_channels))
        self.conv_in = nn.Conv2d(in_channels, reversed_channels[0], kernel_size=3, padding=1)
        blocks, previous = [], reversed_channels[0]
        for i, channels in enumerate(reversed_channels):
            last = i == len(reversed_channels) - 1
            blocks.append(Block2D(previous, channels, layers_per_block + 1, norm, None if last else Upsample2D,
                                  'upsamplers'))
            previous = channels
        self.up_blocks = nn.ModuleList(blocks)  # before mid_block, as diffusers registers them (state_dict order)
        self.mid_block = MidBlock2D(reversed_channels[0], norm, attention)
        self.conv_norm_out = group_norm(block_out_channels[0], norm[0], norm[1])
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, kernel_size=3, padding=1)

    def forward(self, x):
        x = self.mid_block(self.conv_in(x))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class GroupNormVQModel(VQVAEBase):
    """encoder -> quant_conv (1x1) -> quantize -> post_quant_conv (1x1) -> decoder.
    forward(x, codes=None) -> (vq_loss, x_recon, perplexity, codes)."""

    recon_mode = 'mse'

    def __init__(self, in_channels=3, block_out_channels=(64, 128), layers_per_block=1, norm_num_groups=32,
                 norm_eps=1e-6, dropout=0.0, latent_channels=0, embedding_dim=64, mid_attention=True,
                 num_embeddings=512, commitment_cost=0.25, quantizer='ema', decay=0.99, epsilon=1e-5, init='auto'):
        super().__init__()
        latent_channels = latent_channels or embedding_dim
        norm = (norm_num_groups, norm_eps, dropout)
        self.encoder = Encoder(in_channels, latent_channels, block_out_channels, layers_per_block, norm,
                               mid_attention)
        self.quant_conv = nn.Conv2d(latent_channels, embedding_dim, kernel_size=1)
        self.quantize = VectorQuantizer(num_embeddings, embedding_dim, commitment_cost, quantizer == 'ema', decay,
                                        epsilon, NAMES['groupnorm'], init)
        self.post_quant_conv = nn.Conv2d(embedding_dim, latent_channels, kernel_size=1)
        self.decoder = Decoder(latent_channels, in_channels, block_out_channels, layers_per_block, norm,
                               mid_attention)

    @property
    def quantizer(self):
        return self.quantize

    def encode(self, x):
        return self.quant_conv(self.encoder(x))

    def decode(self, quantized):
        return self.decoder(self.post_quant_conv(quantized))
