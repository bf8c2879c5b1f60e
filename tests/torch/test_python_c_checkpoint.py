"""A checkpoint written by the C program (a few training steps of configs/smoke.yaml's resnet on
Fashion-MNIST, of a small model.arch groupnorm with dropout, which evaluation turns off, of the
small arch and of the Gaussian VAE, whose evaluation decodes the mean),
loaded with vqvae_dist.load() (load_state_dict strict): its forward reproduces the C program's
  - evaluation (the final eval record of metrics.jsonl, full precision: recon MSE, NMSE, quantizer
    loss, perplexity over the same test images) to 1e-5 relative, and
  - `vqvae_dist reconstruct` PNG: the originals byte for byte (the Python dataset reader), and every
    reconstruction pixel, where a pixel may differ only if the PyTorch value lies within 1e-5 of the
    8-bit rounding boundary.
A missing binary FAILS (ctest sets VQVAE_BIN)."""
import json
import os
import tempfile

import numpy as np
import torch
from PIL import Image

from checks import binary, check, run, run_tests, train_tiny_run

import vqvae_dist  # noqa: E402
from vqvae_dist import config as vcfg  # noqa: E402
from vqvae_dist import data as vdata  # noqa: E402
from vqvae_dist.quantizer import perplexity  # noqa: E402

TOL = 1e-5
BORDER = 2            # src/io/image_png.c GRID_BORDER
COUNT, COLUMNS = 16, 8


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def python_eval_vae(model, x, batch):
    """The C program's evaluation of a VAE: the mean decoded (no noise), the KLD, per-batch means."""
    recon, kl = [], []
    with torch.no_grad():
        for start in range(0, len(x) - batch + 1, batch):
            xb = torch.from_numpy(x[start:start + batch])
            mean, logvar = model.encode(xb)
            recon.append(float(torch.mean((model.decode(mean) - xb) ** 2)))
            kl.append(float(-0.5 * torch.mean(1 + logvar - mean.pow(2) - logvar.exp())))
    return {'recon_mse': float(np.mean(recon)), 'kl': float(np.mean(kl))}


def python_recon(model, x):
    """What `reconstruct` draws: the VQ model's output, or the VAE's decoded mean."""
    with torch.no_grad():
        if getattr(model, 'is_vae', False):
            return model.decode(model.encode(x)[0])
        return model(x)[1]


def python_eval(model, x, batch, variance, arch):
    """The C program's evaluation: whole batches in order, the mean of per-batch means."""
    if getattr(model, 'is_vae', False):
        return python_eval_vae(model, x, batch)
    recon, latent, codes = [], [], []
    with torch.no_grad():
        for start in range(0, len(x) - batch + 1, batch):
            xb = torch.from_numpy(x[start:start + batch])
            z = model.encode(xb)
            _, q, _, c = model.quantizer(z)
            recon.append(float(torch.mean((model.decode(q) - xb) ** 2)))
            latent.append(float(torch.mean((q - z) ** 2)))
            codes.append(c)
    counts = torch.bincount(torch.cat(codes), minlength=model.quantizer.num_embeddings).float()
    beta = model.quantizer.commitment_cost
    weight = beta if model.quantizer.ema else 1.0 + beta
    mse = float(np.mean(recon))
    nmse = mse / variance if arch == 'resnet' else mse   # the C metric is the weighted MSE: 1 for groupnorm
    return {'recon_mse': mse, 'nmse': nmse, 'vq_loss': weight * float(np.mean(latent)),
            'perplexity': float(perplexity(counts[None, :].double() / counts.sum()))}


def test_eval_matches(state):
    model, cfg = vqvae_dist.load(state['ckpt'])
    check(f'{state["name"]}: the C checkpoint loads as the {state["arch"]} module, 1x28x28 images',
          vcfg.arch(cfg) == state['arch'] and vqvae_dist.Checkpoint(state['ckpt']).image_shape == (1, 28, 28))
    records = [json.loads(line) for line in open(os.path.join(state['run'], 'metrics.jsonl'))]
    final = [r for r in records if r['kind'] == 'eval'][-1]
    batch, batches = vcfg.get_int(cfg, 'train.batch_size'), vcfg.get_int(cfg, 'train.eval_batches')
    images, _ = vdata.load_split(cfg, 'test')
    x = vdata.to_float(images[:batch * batches], vcfg.data_range(cfg))
    train_images, _ = vdata.load_split(cfg, 'train')
    ours = python_eval(model, x, batch, vdata.data_variance(train_images), state['arch'])
    for key, value in ours.items():
        check(f'{state["name"]}: eval {key}: PyTorch on the loaded checkpoint = the C program (step {final["step"]})',
              rel(value, final[key]) <= TOL, f'{value:.9g} vs {final[key]:.9g}, rel {rel(value, final[key]):.1e}')
    state['model'], state['cfg'] = model, cfg


def png_tiles(path, count, height, width):
    pixels = np.asarray(Image.open(path))
    tiles = []
    for i in range(count):
        y0 = BORDER + (i // COLUMNS) * (height + BORDER)
        x0 = BORDER + (i % COLUMNS) * (width + BORDER)
        tiles.append(pixels[y0:y0 + height, x0:x0 + width])
    return np.stack(tiles)


def test_reconstruct_matches(state):
    out = os.path.join(state['run'], 'recon.png')
    rc, text = run([state['bin'], 'reconstruct', '--checkpoint', state['ckpt'], '--out', out, '--count', str(COUNT),
                    '--scale', '1'])
    ok = rc == 0 and os.path.exists(out)
    if not check(f'{state["name"]}: vqvae_dist reconstruct wrote a PNG', ok, '' if ok else text[-1500:]):
        return
    model, cfg = state['model'], state['cfg']
    tiles = png_tiles(out, 2 * COUNT, 28, 28)
    images, _ = vdata.load_split(cfg, 'test')
    x = vdata.to_float(images[:COUNT], vcfg.data_range(cfg))
    check(f'{state["name"]}: reconstruct PNG: the originals = the Python reader\'s test images, byte for byte',
          np.array_equal(tiles[:COUNT], images[:COUNT, 0]))
    recon = python_recon(model, torch.from_numpy(x)).numpy()[:, 0]
    scaled = vdata.to_unit(recon, vcfg.data_range(cfg)).astype(np.float32) * np.float32(255) + np.float32(0.5)
    want = scaled.astype(np.uint8)
    differ = want != tiles[COUNT:]
    near_boundary = np.abs(scaled - np.round(scaled)) <= 255 * TOL
    check(f'{state["name"]}: reconstruct PNG: every reconstruction pixel = PyTorch, but at a rounding boundary (within 1e-5)',
          not np.any(differ & ~near_boundary),
          f'{int(differ.sum())} of {differ.size} pixels differ, {int((differ & near_boundary).sum())} of them within '
          f'1e-5 of a boundary; PyTorch range [{recon.min():.3f}, {recon.max():.3f}]')
    check(f'{state["name"]}: the reconstructions are not constant (the check above can see a difference)',
          len(np.unique(tiles[COUNT:])) > 20, f'{len(np.unique(tiles[COUNT:]))} distinct pixel values')


def main():
    torch.set_num_threads(1)
    state = {'bin': binary()}
    if state['bin'] is None:
        return run_tests([])
    with tempfile.TemporaryDirectory(prefix='vq_pyc_') as tmp:
        tests = []
        # data.range centered for groupnorm too: the reconstruct check below reads [-0.5, 0.5] images
        groupnorm = ['model.arch=groupnorm', 'model.block_out_channels=[8, 16]', 'model.norm_num_groups=4',
                     'model.dropout=0.1', 'data.range=centered']
        # model.arch small: pixels in [0, 1] (data.range auto = unit), 8 grouped codes per image; a larger lr so
        # that 10 steps leave the Sigmoid output far from constant
        small = ['model.arch=small', 'quantizer.num_embeddings=16', 'model.embedding_dim=8', 'train.lr=0.01']
        # model.type vae: evaluation and reconstruct decode the mean (no noise)
        vae = ['model.type=vae', 'model.arch=small', 'train.lr=0.01']
        for name, quantizer, arch, extra in (('ema', 'ema', 'resnet', []), ('vq', 'vq', 'resnet', []),
                                             ('gn-ema', 'ema', 'groupnorm', groupnorm),
                                             ('sm-vq', 'vq', 'small', small), ('sm-ema', 'ema', 'small', small),
                                             ('vae', 'vq', 'small', vae)):
            run_dir = os.path.join(tmp, name)
            ckpt = train_tiny_run(state['bin'], run_dir, steps=10, extra=[f'quantizer.type={quantizer}'] + extra)
            case = dict(state, name=name, arch=arch, run=run_dir, ckpt=ckpt)

            def eval_matches(case=case):
                test_eval_matches(case)

            def reconstruct_matches(case=case):
                test_reconstruct_matches(case)
            tests += [eval_matches, reconstruct_matches]
        return run_tests(tests)


if __name__ == '__main__':
    raise SystemExit(main())
