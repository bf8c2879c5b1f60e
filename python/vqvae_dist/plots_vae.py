"""The VAE figures of tools/plot.py: the latent means by class, the decoded class means, and an
interpolation grid between four class means (see plots.py for the shared helpers)."""
import os

import numpy as np

from . import config as C
from . import data as D
from .checkpoint import Checkpoint
from .plots import PlotError, _encoded, _figure, _need, _project, _sample, _save, _scatter_by_label, _show


def _means(ckpt_path, codes_path, split, count, command):
    ckpt = Checkpoint(ckpt_path)
    _need(ckpt, True, command)
    arrays = _encoded(ckpt, codes_path, split, count)
    if arrays.get('mean') is None:
        raise PlotError(f'{codes_path}: has no /mean; it was not written from a VAE checkpoint')
    return ckpt, arrays['mean'], arrays.get('labels')


def _class_means(ckpt, means, labels, source):
    if labels is None:
        raise PlotError(f'{source} has no labels: class means need a labelled dataset (mnist, fashion_mnist, cifar10)')
    classes = np.unique(labels)
    return classes, np.stack([means[labels == c].mean(axis=0) for c in classes])


def _decode(ckpt, z):
    import torch
    model = ckpt.model()
    with torch.no_grad():
        images = model.decode(torch.from_numpy(np.ascontiguousarray(z, np.float32))).numpy()
    return D.to_unit(images, C.data_range(ckpt.cfg))


def _name(ckpt, c):
    names = D.class_names(ckpt.cfg)
    return names[c] if names and c < len(names) else str(c)


def latent(ckpt_path, out, size=(1200, 550), dpi=100, codes_path=None, split='test', count=5000, sample=2000,
           seed=0):
    """The latent means coloured by class: as they are when latent_dim is 2, else PCA and t-SNE."""
    ckpt, means, labels = _means(ckpt_path, codes_path, split, count, 'latent')
    pick = _sample(len(means), sample, seed)
    points = means[pick].astype(np.float64)
    views = [('latent dims 0, 1', points)] if points.shape[1] == 2 else \
        [(m, _project(points, m, seed)) for m in ('PCA', 't-SNE')]
    fig = _figure(size, dpi)
    axes = fig.subplots(1, len(views), squeeze=False)[0]
    for ax, (title, xy) in zip(axes, views):
        _scatter_by_label(ax, xy, None if labels is None else labels[pick], D.class_names(ckpt.cfg))
        ax.set_title(f'{title}: {len(pick)} latent means', fontsize=10)
    axes[-1].legend(fontsize=7, markerscale=3, loc='center left', bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f'{os.path.basename(ckpt_path)} (step {ckpt.step}): VAE latent means '
                 f'(latent_dim {means.shape[1]}) by class, {codes_path or split + " split"}', fontsize=11)
    fig.tight_layout()
    return _save(fig, out, dpi)


def class_means(ckpt_path, out, size=(1200, 250), dpi=100, codes_path=None, split='test', count=0):
    """The decoder's image of each class's mean latent."""
    ckpt, means, labels = _means(ckpt_path, codes_path, split, count, 'class-means')
    classes, centres = _class_means(ckpt, means, labels, codes_path or f'the {split} split')
    images = _decode(ckpt, centres)
    fig = _figure(size, dpi)
    axes = fig.subplots(1, len(classes), squeeze=False)[0]
    for ax, c, image in zip(axes, classes, images):
        _show(ax, image, _name(ckpt, int(c)), fontsize=8)
    fig.suptitle(f'{os.path.basename(ckpt_path)} (step {ckpt.step}): decoded mean latent of each class '
                 f'({len(means)} {split} images)', fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return _save(fig, out, dpi)


def interpolate(ckpt_path, out, size=(900, 950), dpi=100, codes_path=None, split='test', count=0,
                classes=(0, 1, 7, 9), steps=11):
    """A steps x steps grid decoded from latents interpolated bilinearly between four class means at
    the corners (top-left, top-right, bottom-left, bottom-right)."""
    ckpt, means, labels = _means(ckpt_path, codes_path, split, count, 'interpolate')
    known, centres = _class_means(ckpt, means, labels, codes_path or f'the {split} split')
    missing = [c for c in classes if c not in known]
    if len(classes) != 4 or missing:
        raise PlotError(f'--classes needs four class numbers present in the data ({", ".join(map(str, known))}); '
                        f'got {list(classes)}')
    corner = {c: centres[list(known).index(c)] for c in classes}
    a, b, c, d = (corner[k] for k in classes)
    t = np.linspace(0.0, 1.0, steps)
    z = np.stack([(1 - v) * ((1 - u) * a + u * b) + v * ((1 - u) * c + u * d) for v in t for u in t])
    images = _decode(ckpt, z)
    fig = _figure(size, dpi)
    axes = fig.subplots(steps, steps, squeeze=False)
    corners = {(0, 0): classes[0], (0, steps - 1): classes[1], (steps - 1, 0): classes[2],
               (steps - 1, steps - 1): classes[3]}
    for i, ax in enumerate(axes.flat):
        r, col = divmod(i, steps)
        _show(ax, images[i], _name(ckpt, corners[(r, col)]) if (r, col) in corners else None, fontsize=7)
    fig.suptitle(f'{os.path.basename(ckpt_path)} (step {ckpt.step}): bilinear interpolation between the class '
                 f'means of {", ".join(_name(ckpt, k) for k in classes)}', fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96), pad=0.3, h_pad=0.1, w_pad=0.1)
    return _save(fig, out, dpi)
