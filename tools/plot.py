#!/usr/bin/python3
"""See what a vqvae_dist run learned. Each command writes one PNG and prints its path.

  plot.py curves runs/X/metrics.jsonl           loss, NMSE, perplexity, usage, lr against step
  plot.py codebook runs/X/ckpt_N.h5 [--codes codes.h5]
                                                code usage sorted by count; codebook and encoder
                                                outputs in 2-D (PCA, t-SNE), coloured by label
  plot.py recon runs/X/ckpt_N.h5                100 original | reconstruction pairs
  plot.py latent runs/X/ckpt_N.h5               VAE: latent means coloured by class
  plot.py class-means runs/X/ckpt_N.h5          VAE: the decoded mean latent of each class
  plot.py interpolate runs/X/ckpt_N.h5          VAE: 11x11 grid between four class means

--out sets the file (default: next to the input), --size WxH its size in pixels. A codes file
(--codes, written by `vqvae_dist encode` or `python3 -m vqvae_dist encode`) must come from the same
checkpoint; without one the images of --split are encoded with the checkpoint's PyTorch module.
Needs matplotlib, scikit-learn, h5py, PyYAML (tools/install_deps.sh --with-torch) and, for the
commands that run the model, torch.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'python'))

DEFAULT_NAMES = {'curves': 'curves.png', 'codebook': 'codebook.png', 'recon': 'recon_pairs.png',
                 'latent': 'latent.png', 'class-means': 'class_means.png', 'interpolate': 'interpolation.png'}


def size(text):
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected WIDTHxHEIGHT in pixels, e.g. 1200x800, got {text!r}') from None
    if not (50 <= w <= 10000 and 50 <= h <= 10000):
        raise argparse.ArgumentTypeError(f'{text}: width and height must be 50..10000 pixels')
    return (w, h)


def classes(text):
    try:
        return tuple(int(v) for v in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected four class numbers like 0,1,7,9, got {text!r}') from None


def parser():
    p = argparse.ArgumentParser(prog='plot.py', description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for name, what in (('curves', 'metrics.jsonl'), ('codebook', 'checkpoint'), ('recon', 'checkpoint'),
                       ('latent', 'checkpoint'), ('class-means', 'checkpoint'), ('interpolate', 'checkpoint')):
        c = sub.add_parser(name, help=f'{name} from a {what}')
        c.add_argument('input', help=what)
        c.add_argument('--out', help=f'PNG to write (default: {DEFAULT_NAMES[name]} next to the input)')
        c.add_argument('--size', type=size, help='WIDTHxHEIGHT in pixels')
        c.add_argument('--dpi', type=int, default=100)
        if name == 'curves':
            continue
        c.add_argument('--split', choices=('train', 'test'), default='test', help='images to encode (default test)')
        c.add_argument('--count', type=int, help='first N images of the split')
        if name != 'recon':
            c.add_argument('--codes', help='codes file of this checkpoint (instead of encoding --split)')
        if name in ('codebook', 'latent'):
            c.add_argument('--sample', type=int, help='points in the 2-D projections')
        if name == 'interpolate':
            c.add_argument('--classes', type=classes, help='four class numbers for the corners (default 0,1,7,9)')
    return p


def run(args):
    from vqvae_dist import plots, plots_vae
    functions = {'curves': plots.curves, 'codebook': plots.codebook, 'recon': plots.recon, 'latent': plots_vae.latent,
                 'class-means': plots_vae.class_means, 'interpolate': plots_vae.interpolate}
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.input)), DEFAULT_NAMES[args.command])
    kwargs = {'dpi': args.dpi}
    for name, key in (('size', 'size'), ('split', 'split'), ('count', 'count'), ('codes', 'codes_path'),
                      ('sample', 'sample'), ('classes', 'classes')):
        if getattr(args, name, None) is not None:
            kwargs[key] = getattr(args, name)
    return functions[args.command](args.input, out, **kwargs)


def user_errors():
    """The exceptions that mean a bad input (their messages name it), not a bug."""
    from vqvae_dist.checkpoint import CheckpointError
    from vqvae_dist.codes import CodesError
    from vqvae_dist.config import ConfigError
    from vqvae_dist.data import DatasetError
    from vqvae_dist.plots import PlotError
    return (CheckpointError, CodesError, ConfigError, DatasetError, PlotError)


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        print(run(args))
    except ImportError as e:
        print(f'plot.py {args.command}: error: {e}; install the plotting packages with '
              'tools/install_deps.sh --with-torch', file=sys.stderr)
        return 1
    except user_errors() as e:
        print(f'plot.py {args.command}: error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
