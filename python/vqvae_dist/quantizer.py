"""The vector quantizer of every VQ network, `vq` and `ema` (DESIGN.md section 2).

One implementation; the attribute names differ per architecture only so that each network's
state_dict keys are those of the PyTorch code it comes from:

    resnet     _vq_vae.          _embedding.weight, _ema_cluster_size, _ema_w   (the notebook)
    small      VectorQuantizer.  codebook.weight,   ema_cluster_size,  ema_w    (the MNIST blog)
    groupnorm  quantize.         embedding.weight,  ema_cluster_size,  ema_w    (diffusers VQModel)

Grouped codes: the input [N, C, H, W] is permuted to NHWC and viewed as rows of D = embedding_dim,
so with C = G * D every position holds G consecutive slices, each quantized with the one codebook.
Codes are in that row order: [N, H, W, G] flattened.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

NAMES = {
    'resnet': ('_embedding', '_ema_cluster_size', '_ema_w'),
    'small': ('codebook', 'ema_cluster_size', 'ema_w'),
    'groupnorm': ('embedding', 'ema_cluster_size', 'ema_w'),
}


def nearest_codes(flat, codebook):
    """argmin_k ||z - e_k||^2 per row of flat [M, D], with the notebook's expansion of the distance."""
    distances = (torch.sum(flat ** 2, dim=1, keepdim=True) + torch.sum(codebook ** 2, dim=1)
                 - 2 * torch.matmul(flat, codebook.t()))
    return torch.argmin(distances, dim=1)


def perplexity(encodings):
    p = torch.mean(encodings, dim=0)
    return torch.exp(-torch.sum(p * torch.log(p + 1e-10)))


class VectorQuantizer(nn.Module):
    """`vq`: the codebook is a parameter; loss = ||sg(z) - e||^2 + beta ||z - sg(e)||^2.
    `ema` (ema=True): codebook = ema_w / smoothed ema_cluster_size, updated in training mode during
    the forward (after the codes and the quantized vectors are taken), not trainable (our trainer
    does not optimize it); loss = beta ||z - sg(e)||^2."""

    def __init__(self, num_embeddings, embedding_dim, commitment_cost, ema=False, decay=0.99, epsilon=1e-5,
                 names=NAMES['groupnorm'], init='auto'):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.commitment_cost, self.ema, self.decay, self.epsilon = commitment_cost, ema, decay, epsilon
        self._names = names
        setattr(self, names[0], nn.Embedding(num_embeddings, embedding_dim))
        if init == 'normal' or (init in ('auto', 'data') and ema):
            self.weight.data.normal_()      # the notebook's EMA init (data init needs the data: C does it)
        else:
            self.weight.data.uniform_(-1 / num_embeddings, 1 / num_embeddings)
        if ema:
            self.weight.requires_grad_(False)
            self.register_buffer(names[1], torch.zeros(num_embeddings))
            self.register_buffer(names[2], torch.randn(num_embeddings, embedding_dim))

    @property
    def weight(self):
        """The K x D codebook."""
        return getattr(self, self._names[0]).weight

    @property
    def cluster_size(self):
        return getattr(self, self._names[1])

    @property
    def ema_sum(self):
        return getattr(self, self._names[2])

    def rows(self, inputs):
        """[N, G*D, H, W] -> NHWC [N, H, W, G*D] and its rows [N*H*W*G, D]."""
        if inputs.dim() != 4 or inputs.shape[1] % self.embedding_dim:
            raise ValueError(f'quantizer input {tuple(inputs.shape)}: expected [N, C, H, W] with C a multiple of '
                             f'embedding_dim {self.embedding_dim}')
        nhwc = inputs.permute(0, 2, 3, 1).contiguous()
        return nhwc, nhwc.view(-1, self.embedding_dim)

    def lookup(self, codes):
        """codes [N, H, W, G] -> the quantized latent [N, G*D, H, W]."""
        n, h, w, g = codes.shape
        return self.weight[codes.long()].reshape(n, h, w, g * self.embedding_dim).permute(0, 3, 1, 2).contiguous()

    def forward(self, inputs, codes=None):
        """inputs [N, C, H, W]. codes (optional, in row order) replaces the argmin, so a caller can
        follow another implementation's choice at a near-tie. Returns (loss, quantized NCHW with the
        straight-through gradient, perplexity, codes [M])."""
        nhwc, flat = self.rows(inputs)
        if codes is None:
            codes = nearest_codes(flat.detach(), self.weight.detach())
        codes = codes.reshape(-1)
        encodings = F.one_hot(codes, self.num_embeddings).to(flat.dtype)
        quantized = torch.matmul(encodings, self.weight).view(nhwc.shape)
        if self.ema and self.training:
            self._ema_update(encodings, flat.detach())
        commitment = F.mse_loss(quantized.detach(), nhwc)
        if self.ema:
            loss = self.commitment_cost * commitment
        else:
            loss = F.mse_loss(quantized, nhwc.detach()) + self.commitment_cost * commitment
        quantized = nhwc + (quantized - nhwc).detach()
        return loss, quantized.permute(0, 3, 1, 2).contiguous(), perplexity(encodings), codes

    @torch.no_grad()
    def _ema_update(self, encodings, flat):
        d, eps, k = self.decay, self.epsilon, self.num_embeddings
        size = self.cluster_size * d + (1 - d) * torch.sum(encodings, 0)
        n = torch.sum(size)
        size = (size + eps) / (n + k * eps) * n
        self.cluster_size.copy_(size)
        dw = torch.matmul(encodings.t(), flat)
        self.ema_sum.mul_(d).add_((1 - d) * dw)
        self.weight.copy_(self.ema_sum / self.cluster_size.unsqueeze(1))
