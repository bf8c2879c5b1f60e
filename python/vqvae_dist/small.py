"""`model.arch: small`: the classic MNIST VQ-VAE of the blog, and (`model.type: vae`) the Gaussian
VAE it is compared with. Both share the small conv encoder and decoder; state_dict keys are the
blog modules': encoder.0/2/4, decoder.0/2/4 (.weight/.bias), VectorQuantizer.codebook.weight (and
with `ema` VectorQuantizer.ema_cluster_size / .ema_w), latent_mean.0, latent_logvar.0, latent_dec.0.

With the default widths [16, 32, 64] a 28x28 image becomes 64 channels at 1x1; with D = 8 every
position holds 64 / 8 = 8 code vectors (grouped codes, see quantizer.py).
"""
import torch
import torch.nn as nn

from .base import VQVAEBase, recon_loss
from .quantizer import NAMES, VectorQuantizer


def small_encoder(in_channels, channels):
    c0, c1, c2 = channels
    return nn.Sequential(
        nn.Conv2d(in_channels, c0, kernel_size=3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(c0, c1, kernel_size=3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(c1, c2, kernel_size=7), nn.ReLU())


def small_decoder(out_channels, channels):
    c0, c1, c2 = channels
    return nn.Sequential(
        nn.ConvTranspose2d(c2, c1, kernel_size=7), nn.ReLU(),
        nn.ConvTranspose2d(c1, c0, kernel_size=3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.ConvTranspose2d(c0, out_channels, kernel_size=3, stride=2, padding=1, output_padding=1), nn.Sigmoid())


def _check_channels(channels):
    if len(channels) != 3:
        raise ValueError(f'model.channels lists the widths of the three encoder convs, got {list(channels)}')


class SmallVQVAE(VQVAEBase):
    """forward(x, codes=None) -> (vq_loss, x_recon, perplexity, codes [N*H*W*G])."""

    recon_mode = 'mse'

    def __init__(self, in_channels=1, channels=(16, 32, 64), embedding_dim=8, num_embeddings=16,
                 commitment_cost=0.25, quantizer='vq', decay=0.99, epsilon=1e-5, init='uniform'):
        super().__init__()
        _check_channels(channels)
        if channels[2] % embedding_dim:
            raise ValueError(f'model.channels[2] = {channels[2]} latent channels are not a multiple of '
                             f'model.embedding_dim = {embedding_dim} (groups = latent channels / embedding_dim)')
        self.groups = channels[2] // embedding_dim
        self.encoder = small_encoder(in_channels, channels)
        self.VectorQuantizer = VectorQuantizer(num_embeddings, embedding_dim, commitment_cost, quantizer == 'ema',
                                               decay, epsilon, NAMES['small'], init)
        self.decoder = small_decoder(in_channels, channels)

    @property
    def quantizer(self):
        return self.VectorQuantizer

    def encode(self, x):
        return self.encoder(x)

    def decode(self, quantized):
        return self.decoder(quantized)


class SmallVAE(nn.Module):
    """forward(x, eps=None) -> (x_recon, mean, logvar); eps ~ N(0, I) [N, latent_dim] is drawn when
    not given (vqvae_dist draws it from its counter-based RNG; pass the same eps to compare)."""

    recon_mode = 'sse'
    is_vae = True

    def __init__(self, in_channels=1, channels=(16, 32, 64), latent_dim=16, kl_weight=1.0, recon_weight=1.0):
        super().__init__()
        _check_channels(channels)
        self.latent_dim, self.kl_weight, self.recon_weight = latent_dim, kl_weight, recon_weight
        self.hidden = channels[2]
        self.encoder = small_encoder(in_channels, channels)
        self.latent_mean = nn.Sequential(nn.Linear(channels[2], latent_dim))
        self.latent_logvar = nn.Sequential(nn.Linear(channels[2], latent_dim))
        self.latent_dec = nn.Sequential(nn.Linear(latent_dim, channels[2]), nn.ReLU())
        self.decoder = small_decoder(in_channels, channels)

    def encode(self, x):
        """Images -> (mean, logvar), each [N, latent_dim]."""
        h = self.encoder(x)
        if h.shape[2:] != (1, 1):
            raise ValueError(f'the VAE needs the encoder to reach 1x1 (28x28 images), got {tuple(h.shape[2:])} '
                             f'from images {tuple(x.shape[2:])}')
        h = h.flatten(1)
        return self.latent_mean(h), self.latent_logvar(h)

    def decode(self, z):
        """Latents [N, latent_dim] -> images."""
        return self.decoder(self.latent_dec(z).view(z.shape[0], self.hidden, 1, 1))

    def forward(self, x, eps=None):
        mean, logvar = self.encode(x)
        if eps is None:
            eps = torch.randn_like(mean)
        z = mean + torch.exp(0.5 * logvar) * eps
        return self.decode(z), mean, logvar

    def loss(self, images, mode=None, eps=None, data_variance=1.0):
        """recon_weight * reconstruction (default: sum of squares) + kl_weight * KLD, with
        KLD = -0.5 * mean(1 + logvar - mean^2 - exp(logvar)) over the batch and the latent dims."""
        x_recon, mean, logvar = self(images, eps)
        recon = recon_loss(x_recon, images, mode or self.recon_mode, data_variance)
        kld = -0.5 * torch.mean(1 + logvar - mean.pow(2) - logvar.exp())
        return {'loss': self.recon_weight * recon + self.kl_weight * kld, 'recon_loss': recon, 'kl': kld,
                'mean': mean, 'logvar': logvar, 'recon': x_recon}
