"""python3 -m vqvae_dist {export,encode} ...  (run with python/ on sys.path, e.g. PYTHONPATH=python)"""
import argparse
import sys

from .checkpoint import CheckpointError, export
from .codes import CodesError, encode_checkpoint
from .config import ConfigError
from .data import DatasetError


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python3 -m vqvae_dist', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('export', help='checkpoint -> torch.save file (state_dict + config)')
    p.add_argument('checkpoint')
    p.add_argument('out', help='e.g. model.pt')
    p = sub.add_parser('encode', help='checkpoint -> codes file (docs/CODES.md), with the PyTorch module')
    p.add_argument('checkpoint')
    p.add_argument('out', help='e.g. codes.h5')
    p.add_argument('--split', choices=('train', 'test'), default='test')
    p.add_argument('--count', type=int, default=0, help='first N images of the split (default all)')
    p.add_argument('--latents', action='store_true', help='also store the encoder outputs (/latents)')
    args = parser.parse_args(argv)
    try:
        if args.command == 'export':
            print(export(args.checkpoint, args.out))
        else:
            print(encode_checkpoint(args.checkpoint, args.out, args.split, args.count, args.latents))
    except (CheckpointError, CodesError, ConfigError, DatasetError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
