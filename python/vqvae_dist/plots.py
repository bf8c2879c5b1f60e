"""The figures of tools/plot.py (matplotlib, scikit-learn). Each function writes one PNG of exactly
the requested size in pixels and returns its path; bad inputs raise PlotError (or the
CheckpointError / CodesError / DatasetError of the file at fault) with a message that says what to do.

Only `curves` and the codebook plot of a codes file with /latents work without torch; the others
run the checkpoint's PyTorch module.
"""
import json
import math
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import codes as K  # noqa: E402
from . import config as C  # noqa: E402
from . import data as D  # noqa: E402
from .checkpoint import Checkpoint  # noqa: E402

# metrics.jsonl fields drawn by `curves` (those present in the file), with their panel titles
CURVES = [('loss', 'loss'), ('nmse', 'reconstruction NMSE'), ('recon_loss', 'reconstruction loss'),
          ('vq_loss', 'quantizer loss'), ('kl', 'KL divergence'), ('perplexity', 'codebook perplexity'),
          ('usage', 'codebook usage (fraction of K)'), ('lr', 'learning rate')]


class PlotError(ValueError):
    """An input a plot cannot be drawn from; the message names it."""


def _figure(size, dpi):
    return plt.figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)


def _save(fig, out, dpi):
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=dpi)  # no bbox_inches='tight': the PNG is exactly the figure size
    plt.close(fig)
    return out


def _show(ax, image, title=None, fontsize=7):
    """One [C, H, W] image in [0, 1]."""
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap='gray', vmin=0.0, vmax=1.0, interpolation='nearest')
    else:
        ax.imshow(np.clip(image.transpose(1, 2, 0), 0.0, 1.0), interpolation='nearest')
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=fontsize, pad=2)


def read_metrics(path):
    """The records of a metrics.jsonl file (src/train/metrics.c: kind, step, loss, nmse, ...)."""
    if not os.path.exists(path):
        raise PlotError(f'{path}: no such file; the trainer writes it as <checkpoint.dir>/metrics.jsonl')
    records = []
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise PlotError(f'{path} line {number}: not a JSON object ({e.msg}); is it a metrics.jsonl?') from None
            if not isinstance(record, dict) or 'step' not in record:
                raise PlotError(f'{path} line {number}: a metrics record needs a "step" field')
            records.append(record)
    if not records:
        raise PlotError(f'{path}: no metrics yet (the trainer writes a line every log.every steps)')
    return records


def curves(metrics_path, out, size=(1200, 800), dpi=100):
    """Every CURVES field present against step: train as lines, eval points marked."""
    records = read_metrics(metrics_path)
    fields = [(k, t) for k, t in CURVES if any(r.get(k) is not None for r in records)]
    if not fields:
        raise PlotError(f'{metrics_path}: none of the fields {", ".join(k for k, _ in CURVES)} is present')
    cols = 3 if len(fields) > 4 else 2
    fig = _figure(size, dpi)
    axes = fig.subplots(math.ceil(len(fields) / cols), cols, squeeze=False)
    for ax, (key, title) in zip(axes.flat, fields):
        for kind, style in (('train', dict(lw=1.2)), ('eval', dict(marker='o', ms=4, ls='--', lw=0.8))):
            points = [(r['step'], r[key]) for r in records if r.get('kind', 'train') == kind and r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), label=f'{kind} ({len(points)})', **style)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel('step', fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(fields):]:
        ax.axis('off')
    last = max(r['step'] for r in records)
    fig.suptitle(f'{metrics_path}: training curves to step {last} (eval points marked)', fontsize=11)
    fig.tight_layout()
    return _save(fig, out, dpi)


def _split_images(ckpt, split, count):
    """(float images in the model's range, labels) of the first `count` images of a split."""
    images, labels = D.load_split(ckpt.cfg, split)
    if count:
        images, labels = images[:count], labels[:count]
    return D.to_float(images, C.data_range(ckpt.cfg)), labels


def _encoded(ckpt, codes_path, split, count):
    """Encoder outputs and labels: from a codes file written from `ckpt`, else with the module."""
    if codes_path:
        return K.read(codes_path, ckpt)
    x, labels = _split_images(ckpt, split, count)
    arrays = K.encode_arrays(ckpt.model(), x)
    arrays['labels'] = labels
    return arrays


def _need(ckpt, vae, command):
    if ckpt.is_vae != vae:
        what, other = (('a VAE', 'codebook or recon') if vae else ('a VQ-VAE', 'latent, class-means or interpolate'))
        raise PlotError(f"{ckpt.path} is a {'VAE (model.type: vae)' if ckpt.is_vae else 'VQ-VAE'} checkpoint: "
                        f"plot.py {command} needs {what} checkpoint; try plot.py {other}")


def _project(points, method, seed):
    """2-D PCA or t-SNE of [n, d] points (d = 1 is padded)."""
    if points.shape[1] == 1:
        points = np.hstack([points, np.zeros_like(points)])
    if method == 'PCA':
        from sklearn.decomposition import PCA
        return PCA(n_components=2, random_state=seed).fit_transform(points)
    from sklearn.manifold import TSNE
    perplexity = float(min(30.0, max(2.0, (len(points) - 1) / 3.0)))
    return TSNE(n_components=2, init='pca', learning_rate='auto', perplexity=perplexity,
                random_state=seed).fit_transform(points)


def _scatter_by_label(ax, xy, labels, names):
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.5, c='tab:blue', label='no labels')
        return
    cmap = plt.get_cmap('tab10')
    for c in np.unique(labels):
        keep = labels == c
        name = names[c] if names and c < len(names) else str(c)
        ax.scatter(xy[keep, 0], xy[keep, 1], s=3, alpha=0.6, color=cmap(int(c) % 10), label=name)


def _sample(n, sample, seed):
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(n, sample), replace=False))


def codebook(ckpt_path, out, size=(1500, 500), dpi=100, codes_path=None, split='test', count=2000, sample=1000,
             seed=0):
    """Usage histogram sorted by count; the codebook and a sample of encoder outputs in 2-D (PCA and
    t-SNE), coloured by label where known."""
    ckpt = Checkpoint(ckpt_path)
    _need(ckpt, False, 'codebook')
    book = ckpt.codebook()
    arrays = _encoded(ckpt, codes_path, split, count)
    codes, latents, labels = arrays['codes'], arrays.get('latents'), arrays.get('labels')
    k = book.shape[0]
    counts = np.bincount(codes.reshape(-1).astype(np.int64), minlength=k)
    p = counts / max(counts.sum(), 1)
    perplexity = float(np.exp(-np.sum(p * np.log(p + 1e-10))))

    fig = _figure(size, dpi)
    axes = fig.subplots(1, 3, squeeze=False)[0]
    order = np.argsort(-counts, kind='stable')
    axes[0].bar(np.arange(k), counts[order], width=1.0, color='tab:blue')
    axes[0].set_yscale('symlog', linthresh=1)
    axes[0].set_xlabel('codes, most used first', fontsize=8)
    axes[0].set_ylabel('vectors assigned', fontsize=8)
    axes[0].set_title(f'code usage: {int((counts > 0).sum())} of {k} used, perplexity {perplexity:.1f}', fontsize=10)
    names = D.class_names(ckpt.cfg)
    if latents is None:
        for ax in axes[1:]:
            ax.axis('off')
            ax.text(0.5, 0.5, f'{codes_path} has no /latents:\nencode with --latents\nfor the projections',
                    ha='center', va='center', fontsize=10)
    else:
        flat = latents.reshape(-1, book.shape[1])
        per_vector = np.repeat(labels, flat.shape[0] // len(labels)) if labels is not None else None
        pick = _sample(len(flat), sample, seed)
        points = np.vstack([flat[pick], book]).astype(np.float64)
        for ax, method in zip(axes[1:], ('PCA', 't-SNE')):
            xy = _project(points, method, seed)
            _scatter_by_label(ax, xy[:len(pick)], None if per_vector is None else per_vector[pick], names)
            codes_xy, used = xy[len(pick):], counts > 0
            if (~used).any():   # no legend entry for codes that are not there
                ax.scatter(codes_xy[~used, 0], codes_xy[~used, 1], marker='x', s=20, c='0.7', lw=1,
                           label=f'unused code ({int((~used).sum())})')
            ax.scatter(codes_xy[used, 0], codes_xy[used, 1], marker='x', s=25, c='black', lw=1,
                       label=f'used code ({int(used.sum())})')
            ax.set_title(f'{method}: {len(pick)} encoder outputs and the {k} codes', fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
        legend = axes[2].legend(fontsize=6, markerscale=3, loc='center left', bbox_to_anchor=(1.0, 0.5))
        for handle in legend.legend_handles if hasattr(legend, 'legend_handles') else legend.legendHandles:
            if 'code (' in handle.get_label():
                handle.set_sizes([25])   # the class dots are scaled up to be seen; the code crosses need not be
    source = codes_path or f'{split} split'
    fig.suptitle(f'{os.path.basename(ckpt_path)} (step {ckpt.step}): codebook, from {source}', fontsize=11)
    fig.tight_layout()
    return _save(fig, out, dpi)


def _reconstruct(model, x):
    import torch
    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(x))
        if model.is_vae:
            return model.decode(model.encode(t)[0]).numpy()   # the mean: eps = 0
        return model(t)[1].numpy()


def recon(ckpt_path, out, size=(1400, 1100), dpi=100, split='test', count=100):
    """`count` original | reconstruction pairs, ten to a row, titled with the class."""
    ckpt = Checkpoint(ckpt_path)
    x, labels = _split_images(ckpt, split, count)
    y = _reconstruct(ckpt.model(), x)
    rng = C.data_range(ckpt.cfg)
    names = D.class_names(ckpt.cfg)
    gap = np.ones((x.shape[1], x.shape[2], 1), np.float32)
    fig = _figure(size, dpi)
    cols = min(10, len(x))
    axes = fig.subplots(math.ceil(len(x) / cols), cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(x):
            ax.axis('off')
            continue
        pair = np.concatenate([D.to_unit(x[i], rng), gap, D.to_unit(y[i], rng)], axis=2)
        mse = float(np.mean((x[i] - y[i]) ** 2))
        label = names[labels[i]] if names else str(labels[i])
        _show(ax, pair, f'{label[:11]}\nmse {mse:.4f}', fontsize=6)
    fig.suptitle(f'{os.path.basename(ckpt_path)} (step {ckpt.step}): {len(x)} {split} images, '
                 'original (left) | reconstruction (right)', fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return _save(fig, out, dpi)
