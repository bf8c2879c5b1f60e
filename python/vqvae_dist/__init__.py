"""vqvae_dist's checkpoints in PyTorch: one definition of each network vqvae_dist trains.

    import sys; sys.path.insert(0, 'python')          # from the repository root
    import vqvae_dist
    model, cfg = vqvae_dist.load('runs/fashion_mnist/ckpt_00003000.h5')

load() builds the module the checkpoint's config describes (resnet, small, small VAE, groupnorm)
and loads /model with load_state_dict(strict=True). Nothing here needs the C program built.
torch is imported on first use of a model, so config, data, codes files and checkpoint reading
(vqvae_dist.checkpoint.Checkpoint) work with h5py, PyYAML and numpy alone.
"""
from .checkpoint import Checkpoint, CheckpointError, export, load, write as write_checkpoint
from .config import ConfigError

__all__ = ['Checkpoint', 'CheckpointError', 'ConfigError', 'build_model', 'export', 'load', 'write_checkpoint']


def build_model(cfg, image_shape):
    """The untrained module of a config (see models.build_model)."""
    from .models import build_model as build
    return build(cfg, image_shape)
