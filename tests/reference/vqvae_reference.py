"""PyTorch reference VQ-VAE: the oracle for vqvae_dist's parity tests.

The model of the widely copied PyTorch VQ-VAE notebook (van den Oord et al. 2017, CIFAR-10 setup),
with the same state_dict keys and layouts, so one of our HDF5 checkpoints loads into it with
load_state_dict(strict=True). Two deliberate differences from the notebook:
  - the residual skip uses x itself (non-inplace ReLU), as in the paper (DESIGN.md section 2);
  - the EMA statistics are buffers, updated without autograd, and the EMA codebook is not
    trainable (our C trainer does not optimize it).
The decoder's output channels follow the input channels (the notebook hard-codes 3).
"""
import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


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


def _nearest_codes(flat, codebook):
    """argmin_k ||z - e_k||^2 per row of flat [M, D], with the notebook's expansion of the distance."""
    distances = (torch.sum(flat ** 2, dim=1, keepdim=True) + torch.sum(codebook ** 2, dim=1)
                 - 2 * torch.matmul(flat, codebook.t()))
    return torch.argmin(distances, dim=1)


def _perplexity(encodings):
    p = torch.mean(encodings, dim=0)
    return torch.exp(-torch.sum(p * torch.log(p + 1e-10)))


class VectorQuantizer(nn.Module):
    """`vq`: the codebook is a parameter; loss = ||sg(z) - e||^2 + beta ||z - sg(e)||^2."""

    def __init__(self, num_embeddings, embedding_dim, commitment_cost):
        super().__init__()
        self._embedding_dim = embedding_dim
        self._num_embeddings = num_embeddings
        self._commitment_cost = commitment_cost
        self._embedding = nn.Embedding(num_embeddings, embedding_dim)
        self._embedding.weight.data.uniform_(-1 / num_embeddings, 1 / num_embeddings)

    def forward(self, inputs, codes=None):
        """inputs [N, D, H, W]. codes (optional, [M] in NHWC-flattened order) replaces the argmin,
        so a caller can follow another implementation's choice at a near-tie."""
        inputs = inputs.permute(0, 2, 3, 1).contiguous()
        flat = inputs.view(-1, self._embedding_dim)
        if codes is None:
            codes = _nearest_codes(flat.detach(), self._embedding.weight.detach())
        encodings = F.one_hot(codes, self._num_embeddings).to(flat.dtype)
        quantized = torch.matmul(encodings, self._embedding.weight).view(inputs.shape)
        e_latent_loss = F.mse_loss(quantized.detach(), inputs)
        q_latent_loss = F.mse_loss(quantized, inputs.detach())
        loss = q_latent_loss + self._commitment_cost * e_latent_loss
        quantized = inputs + (quantized - inputs).detach()
        return loss, quantized.permute(0, 3, 1, 2).contiguous(), _perplexity(encodings), codes


class VectorQuantizerEMA(nn.Module):
    """`ema`: codebook = ema_w / smoothed ema_cluster_size, updated in training mode during the
    forward (after the codes and the quantized vectors are taken); loss = beta ||z - sg(e)||^2."""

    def __init__(self, num_embeddings, embedding_dim, commitment_cost, decay, epsilon=1e-5):
        super().__init__()
        self._embedding_dim = embedding_dim
        self._num_embeddings = num_embeddings
        self._commitment_cost = commitment_cost
        self._decay = decay
        self._epsilon = epsilon
        self._embedding = nn.Embedding(num_embeddings, embedding_dim)
        self._embedding.weight.data.normal_()
        self._embedding.weight.requires_grad_(False)
        self.register_buffer('_ema_cluster_size', torch.zeros(num_embeddings))
        self.register_buffer('_ema_w', torch.randn(num_embeddings, embedding_dim))

    def forward(self, inputs, codes=None):
        inputs = inputs.permute(0, 2, 3, 1).contiguous()
        flat = inputs.view(-1, self._embedding_dim)
        if codes is None:
            codes = _nearest_codes(flat.detach(), self._embedding.weight)
        encodings = F.one_hot(codes, self._num_embeddings).to(flat.dtype)
        quantized = torch.matmul(encodings, self._embedding.weight).view(inputs.shape)
        if self.training:
            with torch.no_grad():
                d, eps, k = self._decay, self._epsilon, self._num_embeddings
                size = self._ema_cluster_size * d + (1 - d) * torch.sum(encodings, 0)
                n = torch.sum(size)
                size = (size + eps) / (n + k * eps) * n
                self._ema_cluster_size.copy_(size)
                dw = torch.matmul(encodings.t(), flat)
                self._ema_w.mul_(d).add_((1 - d) * dw)
                self._embedding.weight.copy_(self._ema_w / self._ema_cluster_size.unsqueeze(1))
        e_latent_loss = F.mse_loss(quantized.detach(), inputs)
        loss = self._commitment_cost * e_latent_loss
        quantized = inputs + (quantized - inputs).detach()
        return loss, quantized.permute(0, 3, 1, 2).contiguous(), _perplexity(encodings), codes


class Model(nn.Module):
    def __init__(self, in_channels=3, num_hiddens=128, num_residual_hiddens=32, num_residual_layers=2,
                 num_embeddings=512, embedding_dim=64, commitment_cost=0.25, quantizer='ema', decay=0.99,
                 epsilon=1e-5):
        super().__init__()
        self._encoder = Encoder(in_channels, num_hiddens, num_residual_layers, num_residual_hiddens)
        self._pre_vq_conv = nn.Conv2d(num_hiddens, embedding_dim, kernel_size=1, stride=1)
        if quantizer == 'ema':
            self._vq_vae = VectorQuantizerEMA(num_embeddings, embedding_dim, commitment_cost, decay, epsilon)
        elif quantizer == 'vq':
            self._vq_vae = VectorQuantizer(num_embeddings, embedding_dim, commitment_cost)
        else:
            raise ValueError(f"quantizer must be 'ema' or 'vq', not {quantizer!r}")
        self._decoder = Decoder(embedding_dim, num_hiddens, num_residual_layers, num_residual_hiddens, in_channels)

    def forward(self, x, codes=None):
        """Returns (vq_loss, x_recon, perplexity, codes)."""
        z = self._pre_vq_conv(self._encoder(x))
        vq_loss, quantized, perplexity, codes = self._vq_vae(z, codes)
        return vq_loss, self._decoder(quantized), perplexity, codes


def training_loss(model, images, data_variance, codes=None):
    """One forward: dict of the total loss (a tensor to backpropagate) and its parts."""
    vq_loss, x_recon, perplexity, codes = model(images, codes)
    recon_loss = F.mse_loss(x_recon, images) / data_variance
    return {'loss': recon_loss + vq_loss, 'recon_loss': recon_loss, 'vq_loss': vq_loss,
            'perplexity': perplexity, 'codes': codes}


# ---- our HDF5 checkpoint (src/io/checkpoint.h) ------------------------------------------------

def parse_config_yaml(text):
    """The resolved config (sectioned YAML, as config_to_yaml writes it) as a flat dict
    {'section.key': value}. Uses PyYAML when it is importable, else a tiny parser that is enough
    for two levels of `key: value`."""
    try:
        import yaml
    except ImportError:
        return parse_config_yaml_tiny(text)
    flat = {}
    for section, entries in (yaml.safe_load(text) or {}).items():
        for key, value in (entries or {}).items():
            flat[f'{section}.{key}'] = value
    return flat


def _scalar(text):
    if len(text) >= 2 and text[0] == text[-1] and text[0] in '"\'':
        return text[1:-1]
    if text in ('true', 'false'):
        return text == 'true'
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_config_yaml_tiny(text):
    flat, section = {}, None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith('#') or stripped == '---':
            continue
        key, _, value = stripped.partition(':')
        value = value.split(' #')[0].strip()
        if not line[0].isspace():
            section = key.strip()
            if value:
                raise ValueError(f'config: expected a section, got {line!r}')
        elif section is None:
            raise ValueError(f'config: key outside a section: {line!r}')
        else:
            flat[f'{section}.{key.strip()}'] = _scalar(value)
    return flat


def _attr_text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def read_state_dict(h5, group='model'):
    """{key: float32 tensor} of every dataset in /<group> of an open h5py File."""
    return {key: torch.from_numpy(np.asarray(h5[group][key], dtype=np.float32)) for key in h5[group]}


def model_from_config(cfg, in_channels):
    if cfg.get('model.arch', 'resnet') != 'resnet':
        raise ValueError(f"the reference model is arch 'resnet', the checkpoint has {cfg['model.arch']!r}")
    return Model(in_channels=in_channels,
                 num_hiddens=int(cfg['model.num_hiddens']),
                 num_residual_hiddens=int(cfg['model.num_residual_hiddens']),
                 num_residual_layers=int(cfg['model.num_residual_layers']),
                 num_embeddings=int(cfg['quantizer.num_embeddings']),
                 embedding_dim=int(cfg['model.embedding_dim']),
                 commitment_cost=float(cfg['quantizer.commitment_cost']),
                 quantizer=str(cfg['quantizer.type']),
                 decay=float(cfg['quantizer.decay']),
                 epsilon=float(cfg['quantizer.epsilon']))


def load_from_checkpoint(path):
    """(model, cfg): the reference model built from the checkpoint's config, with /model loaded
    strictly. in_channels is not a model key (it comes from the dataset), so it is read from the
    first convolution's weight [h/2, C, 4, 4]."""
    with h5py.File(path, 'r') as h5:
        cfg = parse_config_yaml(_attr_text(h5.attrs['config']))
        state = read_state_dict(h5)
    model = model_from_config(cfg, in_channels=state['_encoder._conv_1.weight'].shape[1])
    model.load_state_dict(state, strict=True)
    return model, cfg
