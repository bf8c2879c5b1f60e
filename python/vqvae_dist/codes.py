"""Codes files (docs/CODES.md): what `vqvae_dist encode` writes, and the same file produced here from
a checkpoint with the PyTorch module (python3 -m vqvae_dist encode), for the plots and for training
a prior. read() refuses a file written from another checkpoint than the one given."""
import os

import h5py
import numpy as np

from . import config as C
from . import data as D
from .checkpoint import Checkpoint

FORMAT, VERSION = 'vqvae_dist_codes', 1


class CodesError(ValueError):
    """A codes file that is missing, malformed, or belongs to another checkpoint."""


def code_dtype(num_embeddings):
    """The smallest unsigned integer type that holds the codes 0 .. K-1."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if num_embeddings - 1 <= np.iinfo(dtype).max:
            return dtype
    return np.uint64


def encode_arrays(model, images, batch=500):
    """Run the encoder over float images [N, C, H, W] (numpy): a dict of numpy arrays, codes
    [N, H, W, G] int64 and latents [N, H, W, G, D] for a VQ model, mean and logvar for a VAE."""
    import torch
    parts = {}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch]))
            if model.is_vae:
                mean, logvar = model.encode(x)
                out = {'mean': mean, 'logvar': logvar}
            else:
                codes, z = model.encode_codes(x)
                d = model.quantizer.embedding_dim
                out = {'codes': codes, 'latents': z.permute(0, 2, 3, 1).reshape(*codes.shape, d)}
            for k, v in out.items():
                parts.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def write(path, ckpt, split, arrays, labels=None, with_latents=False):
    """The codes file of `arrays` (encode_arrays' output) for Checkpoint `ckpt`."""
    tmp = path + '.tmp'
    with h5py.File(tmp, 'w') as h5:
        h5.attrs.update({'format': FORMAT, 'version': np.int64(VERSION), 'checkpoint': ckpt.path,
                         'step': np.int64(ckpt.step), 'config': ckpt.config_text, 'split': split,
                         'model_type': C.model_type(ckpt.cfg)})
        for name, v in zip(('image_channels', 'image_height', 'image_width'), ckpt.image_shape):
            h5.attrs[name] = np.int64(v)
        if ckpt.is_vae:
            for name in ('mean', 'logvar'):
                h5.create_dataset(name, data=arrays[name].astype(np.float32))
        else:
            k = C.get_int(ckpt.cfg, 'quantizer.num_embeddings')
            h5.attrs['num_embeddings'] = np.int64(k)
            h5.create_dataset('codes', data=arrays['codes'].astype(code_dtype(k)), compression='gzip')
            if with_latents:
                h5.create_dataset('latents', data=arrays['latents'].astype(np.float32))
        if labels is not None:
            h5.create_dataset('labels', data=np.asarray(labels, np.uint8))
    os.replace(tmp, path)
    return path


def encode_checkpoint(checkpoint_path, out, split='test', count=None, with_latents=False):
    """Encode the first `count` images (default all) of a split with the checkpoint's PyTorch module
    and write the codes file `out`."""
    ckpt = Checkpoint(checkpoint_path)
    images, labels = D.load_split(ckpt.cfg, split)
    if count:
        images, labels = images[:count], labels[:count]
    arrays = encode_arrays(ckpt.model(), D.to_float(images, C.data_range(ckpt.cfg)))
    return write(out, ckpt, split, arrays, labels, with_latents)


def read(path, ckpt=None):
    """{'attrs', 'codes' | 'mean'+'logvar', 'labels' (or None), 'latents' (or None)}. With `ckpt`
    (a Checkpoint), the file must have been written from it (same config and step)."""
    if not os.path.exists(path):
        raise CodesError(f'{path}: no such codes file; write one with `vqvae_dist encode --checkpoint CKPT --out '
                         f'{path}` (or python3 -m vqvae_dist encode CKPT {path})')
    try:
        h5 = h5py.File(path, 'r')
    except OSError as e:
        raise CodesError(f'{path}: not an HDF5 file ({e})') from None
    with h5:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()}
        if attrs.get('format') != FORMAT:
            hint = ': that is a checkpoint, pass it as the checkpoint' if attrs.get('format') == 'vqvae_dist' else ''
            raise CodesError(f"{path}: not a vqvae_dist codes file (format {attrs.get('format')!r}){hint}")
        out = {'attrs': attrs}
        for name in ('codes', 'mean', 'logvar', 'labels', 'latents'):
            out[name] = np.asarray(h5[name]) if name in h5 else None
    if ckpt is not None and (attrs.get('config') != ckpt.config_text or int(attrs.get('step', -1)) != ckpt.step):
        raise CodesError(f"{path} was written from checkpoint {attrs.get('checkpoint')!r} (step "
                         f"{attrs.get('step')}), not from {ckpt.path} (step {ckpt.step}): its codes mean nothing "
                         'for this codebook; encode again with this checkpoint')
    return out
