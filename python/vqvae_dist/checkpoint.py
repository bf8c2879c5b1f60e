"""vqvae_dist HDF5 checkpoints (docs/CHECKPOINT.md) <-> PyTorch modules.

    model, cfg = vqvae_dist.load('runs/x/ckpt_00001000.h5')     # strict load_state_dict
    vqvae_dist.export('runs/x/ckpt_00001000.h5', 'model.pt')   # torch.load()-able state_dict + config
"""
import datetime
import os

import h5py
import numpy as np

from . import config as C

FORMAT, VERSION = 'vqvae_dist', 1
CODEBOOK_KEYS = {'resnet': '_vq_vae._embedding.weight', 'small': 'VectorQuantizer.codebook.weight',
                 'groupnorm': 'quantize.embedding.weight'}


class CheckpointError(ValueError):
    """A file that is not a usable vqvae_dist checkpoint; the message names the file."""


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


class Checkpoint:
    """What a checkpoint file holds: state (key -> float32 numpy array, in the file's creation
    order), cfg (nested dict), config_text, attrs (root attributes), step, image_shape (C, H, W).
    Reading it needs h5py and PyYAML only; model() needs torch."""

    def __init__(self, path):
        self.path = path
        if not os.path.exists(path):
            raise CheckpointError(f'{path}: no such file; pass a checkpoint (e.g. runs/NAME/ckpt_00001000.h5, or '
                                  'the file runs/NAME/latest names)')
        try:
            h5 = h5py.File(path, 'r')
        except OSError as e:
            raise CheckpointError(f'{path}: not an HDF5 file HDF5 can open ({e}); is it truncated?') from None
        with h5:
            self.attrs = {k: (_text(v) if isinstance(v, (str, bytes)) else v) for k, v in h5.attrs.items()}
            if self.attrs.get('format') != FORMAT:
                kind = ' (a codes file: give the checkpoint it names)' if 'codes' in h5 or 'mean' in h5 else ''
                raise CheckpointError(f"{path}: not a vqvae_dist checkpoint (format attribute "
                                      f"{self.attrs.get('format')!r}){kind}")
            if int(self.attrs.get('version', -1)) != VERSION:
                raise CheckpointError(f"{path}: checkpoint format version {self.attrs.get('version')}, this package "
                                      f"reads version {VERSION}; use the release that wrote it "
                                      f"({self.attrs.get('program_version', '?')}) or newer")
            if 'model' not in h5 or 'config' not in self.attrs:
                raise CheckpointError(f'{path}: has no /model group or no config attribute; the file is incomplete')
            self.state = {}
            for key, d in _ordered(h5['model']):
                if d.dtype != np.float32:
                    raise CheckpointError(f'{path}: /model/{key} is {d.dtype}, expected float32')
                self.state[key] = np.asarray(d[()])
        self.config_text = self.attrs['config']
        self.cfg = C.parse(self.config_text, f'{path} (config attribute)')
        self.step = int(self.attrs.get('step', 0))
        self.image_shape = C.image_shape(self.cfg, self.attrs)

    @property
    def is_vae(self):
        return C.model_type(self.cfg) == 'vae'

    def codebook(self):
        """The K x D codebook (numpy) of a VQ checkpoint."""
        if self.is_vae:
            raise CheckpointError(f'{self.path} is a VAE checkpoint (model.type: vae): it has no codebook')
        key = CODEBOOK_KEYS[C.arch(self.cfg)]
        if key not in self.state:
            raise CheckpointError(f'{self.path}: /model has no {key}, the codebook of arch {C.arch(self.cfg)}')
        return self.state[key]

    def model(self):
        """The config's module with /model loaded strictly, in eval mode."""
        import torch
        from .models import build_model
        model = build_model(self.cfg, self.image_shape)
        try:
            model.load_state_dict({k: torch.from_numpy(v) for k, v in self.state.items()}, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f'{self.path}: /model does not match the {C.arch(self.cfg)} network its config '
                                  f'describes (load_state_dict strict): {e}') from None
        return model.eval()


def _ordered(group):
    """(name, dataset) in creation order when the group records it (the C writer does), else by name."""
    names = []
    try:
        group.id.links.iterate(names.append, idx_type=h5py.h5.INDEX_CRT_ORDER)
        names = [n.decode() for n in names]
    except (ValueError, KeyError, RuntimeError):  # no creation-order index
        names = sorted(group.keys())
    return [(n, group[n]) for n in names]


def load(path):
    """(torch.nn.Module in eval mode, config dict) of a vqvae_dist checkpoint."""
    ckpt = Checkpoint(path)
    return ckpt.model(), ckpt.cfg


def export(path, out_pt):
    """Write a torch.save file: {'state_dict', 'config' (dict), 'config_yaml', 'step', 'image_shape',
    'format'}; rebuild with vqvae_dist.build_model(d['config'], d['image_shape']).load_state_dict(...)."""
    import torch
    ckpt = Checkpoint(path)
    model = ckpt.model()  # refuses a file that does not load strictly
    torch.save({'format': 'vqvae_dist.export/1', 'state_dict': model.state_dict(), 'config': ckpt.cfg,
                'config_yaml': ckpt.config_text, 'step': ckpt.step, 'image_shape': tuple(ckpt.image_shape),
                'source': os.path.abspath(path)}, out_pt)
    return out_pt


def write(path, model, config_text, step=0, image_shape=None, optim=None):
    """A checkpoint laid out as docs/CHECKPOINT.md: /model/<key> float32 (chunked, fletcher32) in
    state_dict order, the root attributes, and /optim when `optim` ({key: (exp_avg, exp_avg_sq)}) is
    given. For tests and for handing a PyTorch-trained model to vqvae_dist."""
    cfg = C.parse(config_text)
    with h5py.File(path, 'w', libver=('v110', 'v110')) as h5:
        root = {'format': FORMAT, 'version': np.int64(VERSION), 'step': np.int64(step), 'epoch': np.int64(0),
                'epoch_offset': np.int64(0), 'samples_seen': np.int64(0),
                'seed': np.uint64(C.get(cfg, 'train.seed', 1234)), 'world_size': np.int64(1),
                'arch': str(C.get(cfg, 'model.arch')), 'quantizer': str(C.get(cfg, 'quantizer.type')),
                'created': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
                'program_version': 'python', 'config': config_text}
        if image_shape is not None:
            for name, v in zip(('image_channels', 'image_height', 'image_width'), image_shape):
                root[name] = np.int64(v)
        h5.attrs.update(root)
        group = h5.create_group('model', track_order=True)
        for key, value in model.state_dict().items():
            group.create_dataset(key, data=value.detach().cpu().numpy().astype(np.float32), chunks=True,
                                 fletcher32=True)
        for key, (exp_avg, exp_avg_sq) in (optim or {}).items():
            for name, v in (('exp_avg', exp_avg), ('exp_avg_sq', exp_avg_sq)):
                h5.create_dataset(f'optim/{key}/{name}', data=np.asarray(v, np.float32), chunks=True,
                                  fletcher32=True)
    return path
