"""python/vqvae_dist: every architecture's module against its description (state_dict keys and
order, a functional restatement of the forward, the grouped codes, the losses), and load() of a
checkpoint of each architecture reproducing the module's forward bit for bit; export(); the errors
for bad files and configs. (The resnet against the C program: test_python_c_checkpoint.py.)"""
import gzip
import os
import re
import tempfile

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from checks import SOURCE_DIR, check, run_tests

import vqvae_dist  # noqa: E402 (checks puts python/ on sys.path)
from vqvae_dist import config as vcfg  # noqa: E402

SMALL = """model:
  arch: small
  channels: [16, 32, 64]
  embedding_dim: 8
quantizer:
  type: {q}
  num_embeddings: 16
  init: uniform
data:
  dataset: fashion_mnist
  range: unit
"""
VAE = """model:
  type: vae
  arch: small
  channels: [16, 32, 64]
vae:
  latent_dim: 16
  kl_weight: 0.5
  recon_weight: 2.0
data:
  dataset: mnist
"""
GROUPNORM = """model:
  arch: groupnorm
  block_out_channels: [32, 64]
  layers_per_block: {lpb}
  norm_num_groups: 8
  embedding_dim: 4
  latent_channels: {latent}
  mid_attention: {att}
quantizer:
  type: {q}
  num_embeddings: 16
data:
  dataset: synthetic
  channels: 3
  image_size: 16
"""
RESNET = """model:
  arch: resnet
  num_hiddens: 16
  num_residual_hiddens: 8
  num_residual_layers: 1
  embedding_dim: 4
quantizer:
  type: {q}
  num_embeddings: 12
data:
  dataset: cifar10
"""


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def build(text):
    cfg = vcfg.parse(text)
    return vqvae_dist.build_model(cfg, vcfg.image_shape(cfg)), cfg


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for v in model.state_dict().values():
            v.copy_(torch.randn(v.shape, generator=g) * 0.2 + (1.0 if v.dim() == 1 and v.numel() > 0 else 0.0))
        if hasattr(model, 'quantizer') and model.quantizer.ema:
            model.quantizer.cluster_size.abs_().add_(0.5)


def pairs(*names):
    return [f'{n}.{p}' for n in names for p in ('weight', 'bias')]


def small_keys(ema):
    """(A module's own buffers come before its children's tensors in a state_dict.)"""
    ema_keys = ['VectorQuantizer.ema_cluster_size', 'VectorQuantizer.ema_w'] if ema else []
    return pairs('encoder.0', 'encoder.2', 'encoder.4') + ema_keys + ['VectorQuantizer.codebook.weight'] + \
        pairs('decoder.0', 'decoder.2', 'decoder.4')


def groupnorm_keys(channels, lpb, attention, ema):
    """VQModel's state_dict in its order (checked once against diffusers v0.25.1's VQModel: same keys,
    order and shapes, and the same forward bit for bit)."""
    def resnet(prefix, cin, cout):
        return pairs(*(f'{prefix}.{n}' for n in ('norm1', 'conv1', 'norm2', 'conv2'))) + \
            (pairs(f'{prefix}.conv_shortcut') if cin != cout else [])

    def mid(prefix, c):
        att = pairs(*(f'{prefix}.attentions.0.{n}' for n in ('group_norm', 'to_q', 'to_k', 'to_v', 'to_out.0')))
        return (att if attention else []) + resnet(f'{prefix}.resnets.0', c, c) + resnet(f'{prefix}.resnets.1', c, c)

    keys, prev = pairs('encoder.conv_in'), channels[0]
    for i, c in enumerate(channels):
        for j in range(lpb):
            keys += resnet(f'encoder.down_blocks.{i}.resnets.{j}', prev if j == 0 else c, c)
        keys += pairs(f'encoder.down_blocks.{i}.downsamplers.0.conv') if i < len(channels) - 1 else []
        prev = c
    keys += mid('encoder.mid_block', channels[-1]) + pairs('encoder.conv_norm_out', 'encoder.conv_out', 'quant_conv')
    keys += (['quantize.ema_cluster_size', 'quantize.ema_w'] if ema else []) + ['quantize.embedding.weight']
    keys += pairs('post_quant_conv', 'decoder.conv_in')
    rev, prev = list(reversed(channels)), channels[-1]
    for i, c in enumerate(rev):
        for j in range(lpb + 1):
            keys += resnet(f'decoder.up_blocks.{i}.resnets.{j}', prev if j == 0 else c, c)
        keys += pairs(f'decoder.up_blocks.{i}.upsamplers.0.conv') if i < len(rev) - 1 else []
        prev = c
    return keys + mid('decoder.mid_block', channels[-1]) + pairs('decoder.conv_norm_out', 'decoder.conv_out')


def check_keys(name, model, want):
    got = list(model.state_dict())
    check(f'{name}: state_dict keys, in order', got == want,
          f'{len(got)} keys' if got == want else f'missing {sorted(set(want) - set(got))[:6]}, extra '
          f'{sorted(set(got) - set(want))[:6]}, same set {set(got) == set(want)}')


def test_keys():
    for q in ('vq', 'ema'):
        model, _ = build(SMALL.format(q=q))
        check_keys(f'small {q}', model, small_keys(q == 'ema'))
        sd = model.state_dict()
        shapes = {'encoder.0.weight': (16, 1, 3, 3), 'encoder.4.weight': (64, 32, 7, 7),
                  'decoder.0.weight': (64, 32, 7, 7), 'decoder.4.weight': (16, 1, 3, 3),
                  'VectorQuantizer.codebook.weight': (16, 8)}
        wrong = {k: tuple(sd[k].shape) for k, s in shapes.items() if tuple(sd[k].shape) != s}
        check(f'small {q}: PyTorch layouts (Conv2d OIHW, ConvTranspose2d IOHW, K x D)', not wrong, str(wrong))
        check(f'small {q}: 64 latent channels / D 8 = 8 groups', model.groups == 8, str(model.groups))
    model, _ = build(VAE)
    check_keys('vae', model, pairs('encoder.0', 'encoder.2', 'encoder.4', 'latent_mean.0', 'latent_logvar.0',
                                   'latent_dec.0', 'decoder.0', 'decoder.2', 'decoder.4'))
    for q, lpb, att in (('vq', 1, 'true'), ('ema', 2, 'false')):
        model, _ = build(GROUPNORM.format(q=q, lpb=lpb, latent=0, att=att))
        check_keys(f'groupnorm {q} layers_per_block {lpb} mid_attention {att}', model,
                   groupnorm_keys([32, 64], lpb, att == 'true', q == 'ema'))
    model, _ = build(GROUPNORM.format(q='vq', lpb=1, latent=6, att='true'))
    sd = model.state_dict()
    check('groupnorm latent_channels 6, D 4: encoder.conv_out 64->6, quant_conv 6->4, post_quant_conv 4->6',
          tuple(sd['encoder.conv_out.weight'].shape) == (6, 64, 3, 3) and
          tuple(sd['quant_conv.weight'].shape) == (4, 6, 1, 1) and tuple(sd['post_quant_conv.weight'].shape) ==
          (6, 4, 1, 1))


def small_functional(sd, x, prefix='encoder'):
    h = F.relu(F.conv2d(x, sd[f'{prefix}.0.weight'], sd[f'{prefix}.0.bias'], stride=2, padding=1))
    h = F.relu(F.conv2d(h, sd[f'{prefix}.2.weight'], sd[f'{prefix}.2.bias'], stride=2, padding=1))
    return F.relu(F.conv2d(h, sd[f'{prefix}.4.weight'], sd[f'{prefix}.4.bias']))


def small_decoder_functional(sd, q):
    h = F.relu(F.conv_transpose2d(q, sd['decoder.0.weight'], sd['decoder.0.bias']))
    h = F.relu(F.conv_transpose2d(h, sd['decoder.2.weight'], sd['decoder.2.bias'], stride=2, padding=1,
                                  output_padding=1))
    return torch.sigmoid(F.conv_transpose2d(h, sd['decoder.4.weight'], sd['decoder.4.bias'], stride=2, padding=1,
                                            output_padding=1))


def test_small_forward():
    """The blog's network restated with torch.nn.functional; grouped codes: slice g of a position's
    64 channels (channels 8g..8g+7) is quantized with the one codebook."""
    model, _ = build(SMALL.format(q='vq'))
    randomize(model, 1)
    x = torch.rand(3, 1, 28, 28)
    sd = model.state_dict()
    with torch.no_grad():
        z = small_functional(sd, x)
        E = sd['VectorQuantizer.codebook.weight']
        model.quantizer.weight.copy_(z.permute(0, 2, 3, 1).reshape(-1, 8)[torch.randperm(24)[:16]])
        codes, z2 = model.encode_codes(x)
        _, recon, _, flat_codes = model.eval()(x)
    check('small: encoder output is 64 x 1 x 1 and codes [N, 1, 1, 8]',
          tuple(z.shape) == (3, 64, 1, 1) and tuple(codes.shape) == (3, 1, 1, 8), f'{tuple(z.shape)} {tuple(codes.shape)}')
    slices = z[:, :, 0, 0].reshape(3, 8, 8).double()                       # [N, group, D]
    want = torch.cdist(slices.reshape(-1, 8), E.double()).argmin(1).view(3, 8)
    check('small: code of group g = argmin over the codebook of channels 8g..8g+7', torch.equal(codes[:, 0, 0], want),
          f'{int((codes[:, 0, 0] != want).sum())} of 24 differ, {len(set(want.flatten().tolist()))} codes used')
    check('small: forward codes = encode_codes (row order N, H, W, G)', torch.equal(flat_codes, codes.flatten()))
    q = E[want].reshape(3, 64, 1, 1)
    err = rel_err(recon, small_decoder_functional(sd, q))
    # 1e-5: float32 convolutions may take another algorithm (and summation order) under another
    # thread count; a wrong layer is off by far more (measured 1.2e-6 under a loaded ctest -j3)
    check('small: forward = functional restatement (convs, ReLU, output_padding 1, Sigmoid)', err < 1e-5,
          f'rel err {err:.2e}')
    err = rel_err(model.decode_codes(codes).detach(), recon)
    check('small: decode_codes(codes) = the forward reconstruction', err < 1e-5, f'rel err {err:.2e}')
    out = model.train().loss(x)
    mse = float(F.mse_loss(out['recon'], x))
    latent = float(((q - z) ** 2).mean())
    want_loss = mse + 1.25 * latent   # MSE + codebook loss + 0.25 commitment, equal in value
    check('small vq: loss = MSE + codebook + beta * commitment', abs(out['loss'].item() - want_loss) < 1e-5 * want_loss,
          f"{out['loss'].item():.6f} vs {want_loss:.6f}")


def test_vae_forward():
    torch.manual_seed(2)
    model, _ = build(VAE)  # PyTorch's default init: moderate means and log-variances
    x = torch.rand(4, 1, 28, 28)
    eps = torch.randn(4, 16, generator=torch.Generator().manual_seed(3))
    sd = model.state_dict()
    with torch.no_grad():
        h = small_functional(sd, x).flatten(1)
        mean = h @ sd['latent_mean.0.weight'].t() + sd['latent_mean.0.bias']
        logvar = h @ sd['latent_logvar.0.weight'].t() + sd['latent_logvar.0.bias']
        z = mean + torch.exp(0.5 * logvar) * eps
        d = F.relu(z @ sd['latent_dec.0.weight'].t() + sd['latent_dec.0.bias']).view(4, 64, 1, 1)
        want = small_decoder_functional(sd, d)
        out = model.loss(x, eps=eps)
    err = max(rel_err(out['recon'], want), rel_err(out['mean'], mean), rel_err(out['logvar'], logvar))
    check('vae: forward with a given eps = functional restatement', err < 1e-6, f'rel err {err:.2e}')
    m, lv, r = mean.double().numpy(), logvar.double().numpy(), want.double().numpy()
    kld = -0.5 * np.mean(1 + lv - m ** 2 - np.exp(lv))
    sse = np.sum((r - x.double().numpy()) ** 2)
    want_loss = 2.0 * sse + 0.5 * kld
    check('vae: loss = recon_weight * sum of squares + kl_weight * KLD (KLD a mean)',
          abs(out['loss'].item() - want_loss) < 1e-5 * abs(want_loss) and abs(out['kl'].item() - kld) < 1e-5 * abs(kld),
          f"{out['loss'].item():.4f} vs {want_loss:.4f}, kl {out['kl'].item():.5f} vs {kld:.5f}")
    drawn = model(x)[0]
    check('vae: draws eps itself when none is given', drawn.shape == x.shape and not torch.equal(drawn, want))


def test_recon_modes():
    x, y = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    from vqvae_dist.base import recon_loss
    mse = float(((x - y) ** 2).mean())
    got = {m: float(recon_loss(y, x, m, 0.25)) for m in ('nmse', 'mse', 'sse')}
    want = {'nmse': mse / 0.25, 'mse': mse, 'sse': mse * 32}
    check('recon losses: nmse = mse / variance, sse = mse * elements', all(abs(got[m] - want[m]) < 1e-5 * want[m]
                                                                         for m in want), f'{got} vs {want}')
    defaults = {t: vcfg.recon_mode(vcfg.parse(t.format(q='vq', lpb=1, latent=0, att='true')))
                for t in (RESNET, SMALL, VAE, GROUPNORM)}
    check('recon loss defaults: resnet nmse, small mse, vae sse, groupnorm mse',
          list(defaults.values()) == ['nmse', 'mse', 'sse', 'mse'], str(list(defaults.values())))


CASES = [('resnet vq', RESNET.format(q='vq'), (3, 32, 32)), ('resnet ema', RESNET.format(q='ema'), (3, 32, 32)),
         ('small vq', SMALL.format(q='vq'), (1, 28, 28)), ('small ema', SMALL.format(q='ema'), (1, 28, 28)),
         ('vae', VAE, (1, 28, 28)),
         ('groupnorm vq', GROUPNORM.format(q='vq', lpb=1, latent=0, att='true'), (3, 16, 16)),
         ('groupnorm ema no attention', GROUPNORM.format(q='ema', lpb=2, latent=6, att='false'), (3, 16, 16))]


def test_checkpoint_roundtrip():
    """write_checkpoint -> load: the same tensors and the same forward, bit for bit; export -> torch.load."""
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, text, shape) in enumerate(CASES):
            model, cfg = build(text)
            randomize(model, 10 + i)
            path = vqvae_dist.write_checkpoint(os.path.join(tmp, f'{i}.h5'), model, text, step=7)
            loaded, loaded_cfg = vqvae_dist.load(path)
            a, b = model.state_dict(), loaded.state_dict()
            check(f'{name}: load restores every tensor bit-exact', a.keys() == b.keys() and
                  all(torch.equal(a[k], b[k]) for k in a))
            check(f'{name}: load gives back the config', loaded_cfg == cfg)
            x = torch.rand(2, *shape)
            kwargs = {'eps': torch.zeros(2, 16)} if model.is_vae else {}
            with torch.no_grad():
                want, got = model.eval()(x, **kwargs), loaded(x, **kwargs)
            recon = (lambda out: out[0]) if model.is_vae else (lambda out: out[1])
            check(f'{name}: the loaded module reproduces the forward exactly', torch.equal(recon(want), recon(got)) and
                  recon(got).shape == x.shape, str(tuple(recon(got).shape)))
            pt = vqvae_dist.export(path, os.path.join(tmp, f'{i}.pt'))
            saved = torch.load(pt)
            rebuilt = vqvae_dist.build_model(saved['config'], saved['image_shape'])
            rebuilt.load_state_dict(saved['state_dict'], strict=True)
            with torch.no_grad():
                again = rebuilt.eval()(x, **kwargs)
            check(f'{name}: export -> torch.load -> build_model reproduces it', torch.equal(recon(again), recon(want))
                  and saved['step'] == 7)


def expect_error(name, fn, kind, *words):
    try:
        fn()
    except kind as e:
        missing = [w for w in words if w not in str(e)]
        return check(name, not missing, f'message lacks {missing}: {e}' if missing else str(e)[:160])
    except Exception as e:  # noqa: BLE001
        return check(name, False, f'{type(e).__name__} instead of {kind.__name__}: {e}')
    return check(name, False, 'no error')


def test_errors():
    with tempfile.TemporaryDirectory() as tmp:
        missing = os.path.join(tmp, 'nothere.h5')
        expect_error('a missing checkpoint is refused by name', lambda: vqvae_dist.load(missing),
                     vqvae_dist.CheckpointError, missing, 'no such file')
        model, _ = build(SMALL.format(q='vq'))
        path = vqvae_dist.write_checkpoint(os.path.join(tmp, 'small.h5'), model, SMALL.format(q='vq'),
                                           image_shape=(1, 28, 28))
        other = os.path.join(tmp, 'other.h5')
        with h5py.File(path, 'r') as src, h5py.File(other, 'w') as dst:
            for k, v in src.attrs.items():
                dst.attrs[k] = v
            dst.attrs['config'] = SMALL.format(q='vq').replace('[16, 32, 64]', '[8, 16, 64]')
            src.copy('model', dst)
        expect_error('weights that do not fit the stored config are refused (strict)', lambda: vqvae_dist.load(other),
                     vqvae_dist.CheckpointError, other, 'does not match', 'encoder.0.weight')
        with h5py.File(os.path.join(tmp, 'codes.h5'), 'w') as h5:
            h5.attrs['format'] = 'vqvae_dist_codes'
            h5['codes'] = np.zeros((1, 1, 1, 1), np.uint8)
        expect_error('a codes file given as a checkpoint is refused', lambda: vqvae_dist.load(os.path.join(tmp, 'codes.h5')),
                     vqvae_dist.CheckpointError, 'not a vqvae_dist checkpoint', 'codes file')
        with open(os.path.join(tmp, 'text.h5'), 'w') as f:
            f.write('not hdf5')
        expect_error('a file that is not HDF5 is refused', lambda: vqvae_dist.load(os.path.join(tmp, 'text.h5')),
                     vqvae_dist.CheckpointError, 'text.h5', 'HDF5')
        ckpt = vqvae_dist.Checkpoint(path)
        check('image_* root attributes win over data.dataset', ckpt.image_shape == (1, 28, 28), str(ckpt.image_shape))
    expect_error('an unknown arch is refused, naming the known ones',
                 lambda: build(SMALL.format(q='vq').replace('arch: small', 'arch: unet')), vcfg.ConfigError,
                 "'model.arch'", 'resnet', 'small', 'groupnorm')
    expect_error('a VAE on another arch is refused', lambda: build(VAE.replace('arch: small', 'arch: resnet')),
                 vcfg.ConfigError, 'vae', 'small')
    expect_error('latent channels not a multiple of D are refused',
                 lambda: build(SMALL.format(q='vq').replace('embedding_dim: 8', 'embedding_dim: 7')),
                 vcfg.ConfigError, 'multiple', 'embedding_dim')
    expect_error('GroupNorm channels not divisible by norm_num_groups are refused',
                 lambda: build(GROUPNORM.format(q='vq', lpb=1, latent=0, att='true').replace('[32, 64]', '[20, 64]')),
                 vcfg.ConfigError, 'norm_num_groups')


def test_dataset_readers():
    """IDX plain and .gz (Debian's Fashion-MNIST), CIFAR-10 binary records, the float conversion."""
    from vqvae_dist import data as vdata
    folder = '/usr/share/datasets/fashion-mnist'
    images, labels = vdata.load_idx_split(folder, 'test')
    check('IDX .gz: 10000 test images 1x28x28 and labels 0..9', images.shape == (10000, 1, 28, 28) and
          labels.shape == (10000,) and set(labels.tolist()) == set(range(10)), f'{images.shape} {labels.shape}')
    with tempfile.TemporaryDirectory() as tmp:
        for name in ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'):
            with gzip.open(os.path.join(folder, name + '.gz'), 'rb') as src, open(os.path.join(tmp, name), 'wb') as dst:
                dst.write(src.read())
        plain, plain_labels = vdata.load_idx_split(tmp, 'test')
        check('IDX plain = IDX .gz', np.array_equal(plain, images) and np.array_equal(plain_labels, labels))
        with open(os.path.join(tmp, 't10k-images-idx3-ubyte'), 'r+b') as f:
            f.truncate(1000)
        expect_error('a truncated IDX file is refused', lambda: vdata.load_idx_split(tmp, 'test'), vdata.DatasetError,
                     't10k-images-idx3-ubyte', 'truncated')
        rng = np.random.default_rng(0)
        records = rng.integers(0, 256, size=(3, 3073), dtype=np.uint8)
        records[:, 0] = [3, 0, 9]
        records.tofile(os.path.join(tmp, 'test_batch.bin'))
        cimages, clabels = vdata.read_cifar10([os.path.join(tmp, 'test_batch.bin')])
        check('CIFAR-10: label byte, then the R, G, B planes of 32x32', clabels.tolist() == [3, 0, 9] and
              cimages.shape == (3, 3, 32, 32) and cimages[1, 2, 31, 31] == records[1, 3072] and
              cimages[2, 1, 0, 0] == records[2, 1 + 1024])
    x = vdata.to_float(np.arange(256, dtype=np.uint8), 'centered')
    want = np.array([np.float32(v) / np.float32(255.0) - np.float32(0.5) for v in range(256)], np.float32)
    check('pixels: x / 255 - 0.5 in float32, as src/io/dataset.c', np.array_equal(x, want) and x.dtype == np.float32)


def test_doc_snippet():
    """docs/CHECKPOINT.md's three lines, run on a checkpoint (path and python/ made absolute)."""
    with open(os.path.join(SOURCE_DIR, 'docs', 'CHECKPOINT.md'), encoding='utf-8') as f:
        blocks = [b for b in re.findall(r'```python\n(.*?)```', f.read(), re.S) if 'vqvae_dist.load(' in b]
    if not check('docs/CHECKPOINT.md has one python block calling vqvae_dist.load, of three lines',
                 len(blocks) == 1 and len(blocks[0].strip().splitlines()) == 3, f'{len(blocks)} blocks'):
        return
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = build(SMALL.format(q='ema'))
        path = vqvae_dist.write_checkpoint(os.path.join(tmp, 'c.h5'), model, SMALL.format(q='ema'))
        code = re.sub(r'"runs/[^"]*\.h5"', repr(path), blocks[0])
        code = code.replace('"python"', repr(os.path.join(SOURCE_DIR, 'python')))
        ns = {}
        exec(compile(code, 'docs/CHECKPOINT.md', 'exec'), ns)
    check('the doc snippet gives the module and the config', isinstance(ns.get('model'), torch.nn.Module) and
          ns['cfg']['model']['arch'] == 'small' and ns['model'].state_dict().keys() == model.state_dict().keys())


if __name__ == '__main__':
    torch.set_num_threads(1)
    raise SystemExit(run_tests([test_keys, test_small_forward, test_vae_forward, test_recon_modes,
                                test_checkpoint_roundtrip, test_errors, test_dataset_readers,
                                test_doc_snippet]))
