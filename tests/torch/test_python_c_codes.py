"""Codes files across the two sides (docs/CODES.md), on a checkpoint written by the C program (a few
steps of configs/smoke.yaml's resnet on Fashion-MNIST):
  - `vqvae_dist encode` writes a file vqvae_dist.codes.read() loads and accepts for its checkpoint
    (and refuses for another one), with the layout and the attributes of the Python writer;
  - its codes and latents are those of the PyTorch module on the same images (codes equal but at
    near-ties, latents to 1e-5 of their scale), and its labels are the dataset's;
  - `vqvae_dist decode` of them = PyTorch's decode_codes() pixel for pixel (a pixel may differ only
    within 1e-5 of the 8-bit rounding boundary), and it decodes the Python writer's file of the
    same codes into the same PNG;
  - for a Gaussian VAE (model.type vae): encode's means and log-variances are the module's, and
    decode of the means is PyTorch's decode(mean).
A missing binary FAILS (ctest sets VQVAE_BIN)."""
import os
import tempfile

import numpy as np
import torch
from PIL import Image

from checks import binary, check, run, run_tests, train_tiny_run

import vqvae_dist  # noqa: E402
from vqvae_dist import codes as vcodes  # noqa: E402
from vqvae_dist import data as vdata  # noqa: E402

TOL = 1e-5
BORDER = 2            # src/io/image_png.c GRID_BORDER
COUNT, DECODED, COLUMNS = 100, 16, 8


def png_tiles(path, count, side):
    pixels = np.asarray(Image.open(path))
    tiles = []
    for i in range(count):
        y0, x0 = BORDER + (i // COLUMNS) * (side + BORDER), BORDER + (i % COLUMNS) * (side + BORDER)
        tiles.append(pixels[y0:y0 + side, x0:x0 + side])
    return np.stack(tiles)


def test_reader_accepts_c_file(s):
    ckpt = vqvae_dist.Checkpoint(s['ckpt'])
    got = vcodes.read(s['c_codes'], ckpt)
    a = got['attrs']
    check('codes.read() loads the C file for its checkpoint: /codes uint8 [100, 7, 7, 1], /latents [100, 7, 7, 1, 8]',
          got['codes'].dtype == np.uint8 and got['codes'].shape == (COUNT, 7, 7, 1)
          and got['latents'].shape == (COUNT, 7, 7, 1, 8), f"{got['codes'].dtype} {got['codes'].shape}")
    py = s['py']
    check('the C file has the Python writer\'s attributes, with the same values',
          set(a) == set(py['attrs']) and all(a[k] == py['attrs'][k] for k in a if k != 'checkpoint'),
          f'C {sorted(a)} vs Python {sorted(py["attrs"])}')
    _, labels = vdata.load_split(ckpt.cfg, 'test')
    check("/labels = the test set's first labels", np.array_equal(got['labels'], labels[:COUNT]))
    try:
        vcodes.read(s['c_codes'], vqvae_dist.Checkpoint(s['other']))
        check('codes.read() refuses the C file for another checkpoint', False, 'no error')
    except vcodes.CodesError as e:
        check('codes.read() refuses the C file for another checkpoint', 'written from checkpoint' in str(e), str(e))
    s['c'] = got


def test_codes_match_pytorch(s):
    c, py = s['c'], s['py']
    differ = c['codes'] != py['codes']
    scale = float(np.abs(py['latents']).max())
    err = float(np.abs(c['latents'] - py['latents']).max())
    check('latents: C = PyTorch to 1e-5 of their scale', err <= TOL * scale, f'max diff {err:.2e}, scale {scale:.3f}')
    model = s['model']
    book = model.quantizer.weight.detach().double().numpy()
    z = py['latents'].reshape(-1, book.shape[1]).astype(np.float64)
    d = ((z[:, None, :] - book[None]) ** 2).sum(-1)
    flat_c, flat_py = c['codes'].reshape(-1).astype(np.int64), py['codes'].reshape(-1).astype(np.int64)
    gap = np.abs(d[np.arange(len(z)), flat_c] - d[np.arange(len(z)), flat_py])
    check('codes: C = PyTorch but at near-ties (distance gap <= 1e-5)',
          np.all(gap[differ.reshape(-1)] <= TOL * (1 + d.min(1)[differ.reshape(-1)])),
          f'{int(differ.sum())} of {differ.size} differ, {len(np.unique(flat_c))} codes used')


def test_decode_matches_pytorch(s):
    out = os.path.join(s['tmp'], 'decode_c.png')
    rc, text = run([s['bin'], 'decode', '--checkpoint', s['ckpt'], '--codes', s['c_codes'], '--out', out,
                    '--count', str(DECODED), '--cols', str(COLUMNS), '--scale', '1'])
    if not check('vqvae_dist decode wrote a PNG', rc == 0 and os.path.exists(out), text[-1500:] if rc else ''):
        return
    tiles = png_tiles(out, DECODED, 28)
    with torch.no_grad():
        images = s['model'].decode_codes(torch.from_numpy(s['c']['codes'][:DECODED].astype(np.int64))).numpy()[:, 0]
    scaled = np.clip(images + np.float32(0.5), 0, 1).astype(np.float32) * np.float32(255) + np.float32(0.5)
    differ = scaled.astype(np.uint8) != tiles
    near_boundary = np.abs(scaled - np.round(scaled)) <= 255 * TOL
    check('decode PNG: every pixel = PyTorch decode_codes(), but at a rounding boundary (within 1e-5)',
          not np.any(differ & ~near_boundary), f'{int(differ.sum())} of {differ.size} pixels differ')
    check('the decoded images are not constant (the check above can see a difference)', len(np.unique(tiles)) > 20,
          f'{len(np.unique(tiles))} distinct pixel values')
    # the Python writer's file: its codes are PyTorch's; where they equal the C codes, the PNG must too
    out_py = os.path.join(s['tmp'], 'decode_py.png')
    rc, text = run([s['bin'], 'decode', '--checkpoint', s['ckpt'], '--codes', s['py_codes'], '--out', out_py,
                    '--count', str(DECODED), '--cols', str(COLUMNS), '--scale', '1'])
    same_codes = np.array_equal(s['c']['codes'][:DECODED], s['py']['codes'][:DECODED])
    ok = rc == 0 and (not same_codes or open(out, 'rb').read() == open(out_py, 'rb').read())
    check('vqvae_dist decode reads the Python writer\'s codes file (same codes: the same PNG bytes)', ok,
          text[-1500:] if rc else f'codes equal: {same_codes}')


def test_vae_matches_pytorch(s, tmp):
    """A VAE (model.type vae): encode's /mean and /logvar are the module's to 1e-5 of their scale, the
    Python writer reads the file, and decode of the means = PyTorch's decode(mean) pixel for pixel."""
    ckpt = train_tiny_run(s['bin'], os.path.join(tmp, 'vae'), steps=10,
                          extra=['model.type=vae', 'model.arch=small', 'train.lr=0.01'])
    path = os.path.join(tmp, 'vae.h5')
    rc, text = run([s['bin'], 'encode', '--checkpoint', ckpt, '--out', path, '--count', str(COUNT)])
    if not check('vae: vqvae_dist encode wrote a codes file', rc == 0 and os.path.exists(path), text[-1500:]):
        return
    c = vcodes.read(path, vqvae_dist.Checkpoint(ckpt))
    model, cfg = vqvae_dist.load(ckpt)
    py = vcodes.encode_arrays(model, vdata.to_float(vdata.load_split(cfg, 'test')[0][:COUNT], 'unit'))
    for name in ('mean', 'logvar'):
        scale = float(np.abs(py[name]).max())
        err = float(np.abs(c[name] - py[name]).max()) if c[name] is not None else float('inf')
        check(f'vae: /{name}: C = PyTorch to 1e-5 of its scale', err <= TOL * scale, f'max diff {err:.2e}, '
              f'scale {scale:.3f}')
    out = os.path.join(tmp, 'vae_decode.png')
    rc, text = run([s['bin'], 'decode', '--checkpoint', ckpt, '--codes', path, '--out', out, '--count', str(DECODED),
                    '--cols', str(COLUMNS), '--scale', '1'])
    if not check('vae: vqvae_dist decode of the means wrote a PNG', rc == 0 and os.path.exists(out), text[-1500:]):
        return
    with torch.no_grad():
        images = model.decode(torch.from_numpy(c['mean'][:DECODED])).numpy()[:, 0]
    scaled = np.clip(images, 0, 1).astype(np.float32) * np.float32(255) + np.float32(0.5)   # data.range unit
    tiles = png_tiles(out, DECODED, 28)
    differ = scaled.astype(np.uint8) != tiles
    near_boundary = np.abs(scaled - np.round(scaled)) <= 255 * TOL
    check('vae: decode PNG: every pixel = PyTorch decode(mean), but at a rounding boundary (within 1e-5)',
          not np.any(differ & ~near_boundary) and len(np.unique(tiles)) > 20,
          f'{int(differ.sum())} of {differ.size} pixels differ, {len(np.unique(tiles))} distinct values')


def main():
    torch.set_num_threads(1)
    s = {'bin': binary()}
    if s['bin'] is None:
        return run_tests([])
    with tempfile.TemporaryDirectory(prefix='vq_codes_') as tmp:
        s['tmp'] = tmp
        s['ckpt'] = train_tiny_run(s['bin'], os.path.join(tmp, 'run'), steps=10)
        s['other'] = train_tiny_run(s['bin'], os.path.join(tmp, 'other'), steps=4)
        s['c_codes'] = os.path.join(tmp, 'c.h5')
        rc, text = run([s['bin'], 'encode', '--checkpoint', s['ckpt'], '--out', s['c_codes'], '--count', str(COUNT),
                        '--latents'])
        if not check('vqvae_dist encode wrote a codes file', rc == 0 and os.path.exists(s['c_codes']),
                     text[-1500:] if rc else ''):
            return run_tests([])
        s['py_codes'] = vcodes.encode_checkpoint(s['ckpt'], os.path.join(tmp, 'py.h5'), 'test', COUNT, True)
        s['py'] = vcodes.read(s['py_codes'])
        s['model'], _ = vqvae_dist.load(s['ckpt'])

        def reader(): test_reader_accepts_c_file(s)

        def codes(): test_codes_match_pytorch(s)

        def decode(): test_decode_matches_pytorch(s)

        def vae(): test_vae_matches_pytorch(s, tmp)
        return run_tests([reader, codes, decode, vae])


if __name__ == '__main__':
    raise SystemExit(main())
