"""`model.arch: resnet`: the model of the widely copied PyTorch VQ-VAE notebook (van den Oord et al.
2017, CIFAR-10 setup), with the same state_dict keys and layouts, so one of our HDF5 checkpoints
loads into it with load_state_dict(strict=True). Two deliberate differences from the notebook:
  - the residual skip uses x itself (non-inplace ReLU), as in the paper (DESIGN.md section 2);
  - the EMA statistics are buffers, updated without autograd, and the EMA codebook is not
    trainable (our C trainer does not optimize it).
The decoder's output channels follow the input channels (the notebook hard-codes 3).
"""
import torch.nn as nn
import torch.nn.functional as F

from .base import VQVAEBase
from .quantizer import NAMES, VectorQuantizer


class Residual(nn.Module):
    def __init__(self, in_channels, num_hiddens, num_residual_hiddens):
        super().__init__()
        self._block = nn.Sequential(
            nn.ReLU(),  # not inplace: the skip below must see x, not relu(x)
            nn.Conv2d(in_channels, num_residual_hiddens, kernel_size=3, stride=1, padding=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(num_residual_hiddens, num_hiddens, kernel_size=1, stride=1, bias=False),
        )

    def forward(self, x):
        return x + self._block(x)


class ResidualStack(nn.Module):
    def __init__(self, in_channels, num_hiddens, num_residual_layers, num_residual_hiddens):
        super().__init__()
        self._layers = nn.ModuleList(
            [Residual(in_channels, num_hiddens, num_residual_hiddens) for _ in range(num_residual_layers)])

    def forward(self, x):
        for layer in self._layers:
            x = layer(x)
        return F.relu(x)


class Encoder(nn.Module):
    def __init__(self, in_channels, num_hiddens, num_residual_layers, num_residual_hiddens):
        super().__init__()
        self._conv_1 = nn.Conv2d(in_channels, num_hiddens // 2, kernel_size=4, stride=2, padding=1)
        self._conv_2 = nn.Conv2d(num_hiddens // 2, num_hiddens, kernel_size=4, stride=2, padding=1)
        self._conv_3 = nn.Conv2d(num_hiddens, num_hiddens, kernel_size=3, stride=1, padding=1)
        self._residual_stack = ResidualStack(num_hiddens, num_hiddens, num_residual_layers, num_residual_hiddens)

    def forward(self, x):
        x = F.relu(self._conv_1(x))
        x = F.relu(self._conv_2(x))
        x = self._conv_3(x)
        return self._residual_stack(x)


class Decoder(nn.Module):
    def __init__(self, in_channels, num_hiddens, num_residual_layers, num_residual_hiddens, out_channels):
        super().__init__()
        self._conv_1 = nn.Conv2d(in_channels, num_hiddens, kernel_size=3, stride=1, padding=1)
        self._residual_stack = ResidualStack(num_hiddens, num_hiddens, num_residual_layers, num_residual_hiddens)
        self._conv_trans_1 = nn.ConvTranspose2d(num_hiddens, num_hiddens // 2, kernel_size=4, stride=2, padding=1)
        self._conv_trans_2 = nn.ConvTranspose2d(num_hiddens // 2, out_channels, kernel_size=4, stride=2, padding=1)

    def forward(self, x):
        x = self._conv_1(x)
        x = self._residual_stack(x)
        x = F.relu(self._conv_trans_1(x))
        return self._conv_trans_2(x)


class ResNetVQVAE(VQVAEBase):
    """The notebook's `Model`. forward(x, codes=None) -> (vq_loss, x_recon, perplexity, codes)."""

    recon_mode = 'nmse'

    def __init__(self, in_channels=3, num_hiddens=128, num_residual_hiddens=32, num_residual_layers=2,
                 num_embeddings=512, embedding_dim=64, commitment_cost=0.25, quantizer='ema', decay=0.99,
                 epsilon=1e-5, init='auto'):
        super().__init__()
        if quantizer not in ('ema', 'vq'):
            raise ValueError(f"quantizer must be 'ema' or 'vq', not {quantizer!r}")
        self._encoder = Encoder(in_channels, num_hiddens, num_residual_layers, num_residual_hiddens)
        self._pre_vq_conv = nn.Conv2d(num_hiddens, embedding_dim, kernel_size=1, stride=1)
        self._vq_vae = VectorQuantizer(num_embeddings, embedding_dim, commitment_cost, quantizer == 'ema', decay,
                                       epsilon, NAMES['resnet'], init)
        self._decoder = Decoder(embedding_dim, num_hiddens, num_residual_layers, num_residual_hiddens, in_channels)

    @property
    def quantizer(self):
        return self._vq_vae

    def encode(self, x):
        return self._pre_vq_conv(self._encoder(x))

    def decode(self, quantized):
        return self._decoder(quantized)
