"""What every VQ network shares: encode -> quantize -> decode, the loss, decoding from codes."""
import torch.nn as nn
import torch.nn.functional as F

from .quantizer import nearest_codes


def recon_loss(recon, images, mode, data_variance=1.0):
    """The reconstruction term of the loss (config key loss.recon): nmse = MSE / data variance,
    mse = MSE (mean over every element), sse = sum of squared errors over the batch."""
    if mode == 'nmse':
        return F.mse_loss(recon, images) / data_variance
    if mode == 'mse':
        return F.mse_loss(recon, images)
    if mode == 'sse':
        return F.mse_loss(recon, images, reduction='sum')
    raise ValueError(f"reconstruction loss {mode!r}: expected nmse, mse or sse")


class VQVAEBase(nn.Module):
    """A subclass defines encode(x) -> z (the quantizer's input), decode(q) -> images and the
    `quantizer` property; `recon_mode` is the default reconstruction loss."""

    recon_mode = 'mse'
    is_vae = False

    def forward(self, x, codes=None):
        """Returns (vq_loss, x_recon, perplexity, codes [N*H*W*G])."""
        vq_loss, quantized, perplexity, codes = self.quantizer(self.encode(x), codes)
        return vq_loss, self.decode(quantized), perplexity, codes

    def loss(self, images, mode=None, data_variance=1.0, codes=None):
        """One forward: dict of the total loss (a tensor to backpropagate) and its parts. mode: a
        reconstruction loss of recon_loss(), default the network's (from the config)."""
        vq_loss, x_recon, perplexity, codes = self(images, codes)
        recon = recon_loss(x_recon, images, mode or self.recon_mode, data_variance)
        return {'loss': recon + vq_loss, 'recon_loss': recon, 'vq_loss': vq_loss, 'perplexity': perplexity,
                'codes': codes, 'recon': x_recon}

    def code_shape(self, z):
        """(H, W, G) of the codes of one image, from the quantizer input z [N, G*D, H, W]."""
        return (z.shape[2], z.shape[3], z.shape[1] // self.quantizer.embedding_dim)

    def encode_codes(self, x):
        """Images -> (codes [N, H, W, G] int64, z [N, G*D, H, W]) without any EMA update."""
        z = self.encode(x)
        _, flat = self.quantizer.rows(z)
        codes = nearest_codes(flat, self.quantizer.weight)
        return codes.view(z.shape[0], *self.code_shape(z)), z

    def decode_codes(self, codes):
        """codes [N, H, W, G] -> images."""
        return self.decode(self.quantizer.lookup(codes))
