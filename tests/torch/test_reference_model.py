"""Self-checks of the resnet PyTorch module (python/vqvae_dist/resnet.py), the oracle of the
parity test: keys and shapes, the forward against a functional restatement of DESIGN.md section 2,
the EMA update against numpy, the codebook and straight-through gradients against their closed
forms, and the HDF5 checkpoint round trip."""
import os
import sys
import tempfile

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'python'))
import vqvae_dist  # noqa: E402
from vqvae_dist import config as vcfg  # noqa: E402
from vqvae_dist.quantizer import NAMES, VectorQuantizer  # noqa: E402
from vqvae_dist.resnet import Residual, ResNetVQVAE  # noqa: E402

RESULTS = {'passed': 0, 'failed': 0}


def check(name, ok, detail=''):
    RESULTS['passed' if ok else 'failed'] += 1
    print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f'  ({detail})' if detail else ''), flush=True)


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)) if b.size else 0.0


def expected_shapes(C, h, rh, n, K, D, quantizer):
    """The state_dict of the notebook's model, written out from the brief / DESIGN.md."""
    shapes = {
        '_encoder._conv_1.weight': (h // 2, C, 4, 4), '_encoder._conv_1.bias': (h // 2,),
        '_encoder._conv_2.weight': (h, h // 2, 4, 4), '_encoder._conv_2.bias': (h,),
        '_encoder._conv_3.weight': (h, h, 3, 3), '_encoder._conv_3.bias': (h,),
        '_pre_vq_conv.weight': (D, h, 1, 1), '_pre_vq_conv.bias': (D,),
        '_vq_vae._embedding.weight': (K, D),
        '_decoder._conv_1.weight': (h, D, 3, 3), '_decoder._conv_1.bias': (h,),
        '_decoder._conv_trans_1.weight': (h, h // 2, 4, 4), '_decoder._conv_trans_1.bias': (h // 2,),
        '_decoder._conv_trans_2.weight': (h // 2, C, 4, 4), '_decoder._conv_trans_2.bias': (C,),
    }
    for part in ('_encoder', '_decoder'):
        for i in range(n):
            shapes[f'{part}._residual_stack._layers.{i}._block.1.weight'] = (rh, h, 3, 3)
            shapes[f'{part}._residual_stack._layers.{i}._block.3.weight'] = (h, rh, 1, 1)
    if quantizer == 'ema':
        shapes['_vq_vae._ema_cluster_size'] = (K,)
        shapes['_vq_vae._ema_w'] = (K, D)
    return shapes


def small_model(quantizer, C=3, n=2):
    return ResNetVQVAE(in_channels=C, num_hiddens=16, num_residual_hiddens=8, num_residual_layers=n,
                       num_embeddings=12, embedding_dim=4, commitment_cost=0.25, quantizer=quantizer,
                       decay=0.9, epsilon=1e-5)


def test_keys_and_shapes():
    for quantizer in ('ema', 'vq'):
        for C, n in ((3, 2), (1, 1)):
            model = small_model(quantizer, C, n)
            got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
            want = expected_shapes(C, 16, 8, n, 12, 4, quantizer)
            missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
            wrong = [k for k in want if k in got and got[k] != want[k]]
            check(f'{quantizer} C={C} n={n}: state_dict keys and shapes', not (missing or extra or wrong),
                  f'missing {missing}, extra {extra}, wrong shape {wrong}' if missing or extra or wrong
                  else f'{len(got)} entries')
        trainable = {k for k, p in model.named_parameters() if p.requires_grad}
        codebook_trainable = '_vq_vae._embedding.weight' in trainable
        check(f'{quantizer}: codebook trainable only for vq', codebook_trainable == (quantizer == 'vq'))


def functional_forward(sd, x, n):
    """DESIGN.md section 2 restated with torch.nn.functional on the state_dict."""
    def stack(part, y):
        for i in range(n):
            p = f'{part}._residual_stack._layers.{i}._block.'
            y = y + F.conv2d(F.relu(F.conv2d(F.relu(y), sd[p + '1.weight'], padding=1)), sd[p + '3.weight'])
        return F.relu(y)
    y = F.relu(F.conv2d(x, sd['_encoder._conv_1.weight'], sd['_encoder._conv_1.bias'], stride=2, padding=1))
    y = F.relu(F.conv2d(y, sd['_encoder._conv_2.weight'], sd['_encoder._conv_2.bias'], stride=2, padding=1))
    y = F.conv2d(y, sd['_encoder._conv_3.weight'], sd['_encoder._conv_3.bias'], padding=1)
    z = F.conv2d(stack('_encoder', y), sd['_pre_vq_conv.weight'], sd['_pre_vq_conv.bias'])
    E = sd['_vq_vae._embedding.weight']
    flat = z.permute(0, 2, 3, 1).reshape(-1, E.shape[1])
    codes = torch.cdist(flat.double(), E.double()).argmin(1)
    q = E[codes].view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
    y = F.conv2d(q, sd['_decoder._conv_1.weight'], sd['_decoder._conv_1.bias'], padding=1)
    y = stack('_decoder', y)
    y = F.relu(F.conv_transpose2d(y, sd['_decoder._conv_trans_1.weight'], sd['_decoder._conv_trans_1.bias'],
                                  stride=2, padding=1))
    return F.conv_transpose2d(y, sd['_decoder._conv_trans_2.weight'], sd['_decoder._conv_trans_2.bias'],
                              stride=2, padding=1), codes


def test_forward_backward():
    torch.manual_seed(1)
    for quantizer in ('ema', 'vq'):
        model = small_model(quantizer)
        x = torch.rand(3, 3, 16, 16) - 0.5
        with torch.no_grad():  # a codebook near the latents, so codes spread over several entries
            z = model._pre_vq_conv(model._encoder(x)).permute(0, 2, 3, 1).reshape(-1, 4)
            model._vq_vae._embedding.weight.copy_(z[torch.randperm(z.shape[0])[:12]])
        want_recon, want_codes = functional_forward(model.state_dict(), x, 2)
        with torch.no_grad():
            _, recon, _, codes = model.eval()(x)
        check(f'{quantizer}: codes = functional argmin', torch.equal(codes, want_codes),
              f"{int((codes != want_codes).sum())} of {want_codes.numel()} differ, {len(set(codes.tolist()))} used")
        err = rel_err(recon, want_recon)
        check(f'{quantizer}: forward = functional restatement of DESIGN.md section 2', err < 1e-6,
              f'rel err {err:.2e}')
        check(f'{quantizer}: output shape = input shape', recon.shape == x.shape, str(tuple(recon.shape)))
        out = model.train().loss(x, 'nmse', data_variance=0.08)
        out['loss'].backward()
        missing = [k for k, p in model.named_parameters() if p.requires_grad and p.grad is None]
        finite = torch.isfinite(out['loss']).item() and all(
            torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        check(f'{quantizer}: forward/backward give a finite loss and a gradient for every trainable parameter',
              finite and not missing, f"loss {out['loss'].item():.4f}, no grad: {missing}")
        if quantizer == 'ema':
            check('ema: codebook gets no gradient', model._vq_vae._embedding.weight.grad is None)


def test_residual_skip_uses_x():
    torch.manual_seed(2)
    layer = Residual(6, 6, 3)
    x = torch.randn(2, 6, 5, 5)
    b = layer._block
    want = x + b[3](F.relu(b[1](F.relu(x))))
    err = rel_err(layer(x.clone()).detach(), want.detach())
    check('residual layer = x + conv1x1(relu(conv3x3(relu(x)))) (skip uses x, not relu(x))', err < 1e-6,
          f'rel err {err:.2e}')


def test_ema_update_numpy():
    """A tiny EMA step: 2 images of 2x2 latents, D=3, K=4 (one code unused, with size 0); a large
    epsilon so that the Laplace smoothing shows."""
    K, D, decay, eps, beta = 4, 3, 0.9, 0.1, 0.25
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, D, 2, 2)).astype(np.float32)
    E = np.full((K, D), 5.0, np.float32)  # code 3 far away: unused
    E[:3] = z.transpose(0, 2, 3, 1).reshape(-1, D)[[0, 3, 6]] + 0.1 * rng.normal(size=(3, D))
    N0 = np.array([1.0, 2.0, 0.5, 0.0], np.float32)
    W0 = (E * np.maximum(N0, 1)[:, None]).astype(np.float32)
    q = VectorQuantizer(K, D, beta, True, decay, eps, NAMES['resnet'])
    with torch.no_grad():
        q._embedding.weight.copy_(torch.from_numpy(E))
        q._ema_cluster_size.copy_(torch.from_numpy(N0))
        q._ema_w.copy_(torch.from_numpy(W0))
    loss, quantized, perplexity, codes = q.train()(torch.from_numpy(z))

    flat = z.transpose(0, 2, 3, 1).reshape(-1, D).astype(np.float64)
    codes_np = np.argmin(((flat[:, None, :] - E[None].astype(np.float64)) ** 2).sum(-1), axis=1)
    onehot = np.eye(K)[codes_np]
    N = decay * N0 + (1 - decay) * onehot.sum(0)
    n = N.sum()
    N = (N + eps) / (n + K * eps) * n
    W = decay * W0 + (1 - decay) * onehot.T @ flat
    p = onehot.mean(0)
    want = {'codes': codes_np, 'ema_cluster_size': N, 'ema_w': W, 'embedding': W / N[:, None],
            'loss': beta * np.mean((E[codes_np] - flat) ** 2),
            'perplexity': np.exp(-np.sum(p * np.log(p + 1e-10))),
            'quantized (straight-through value)': E[codes_np]}
    got = {'codes': codes.numpy(), 'ema_cluster_size': q._ema_cluster_size.numpy(), 'ema_w': q._ema_w.numpy(),
           'embedding': q._embedding.weight.detach().numpy(), 'loss': loss.item(),
           'perplexity': perplexity.item(),
           'quantized (straight-through value)': quantized.detach().numpy().transpose(0, 2, 3, 1).reshape(-1, D)}
    check('ema tiny case: codes = numpy argmin', np.array_equal(got['codes'], want['codes']),
          f"{got['codes']} vs {want['codes']}")
    check('ema tiny case: some code is unused (exercises the smoothing)', len(set(codes_np)) < K)
    for name in list(want)[1:]:
        err = rel_err(got[name], want[name])
        check(f'ema tiny case: {name} = numpy', err < 1e-5, f'rel err {err:.2e}')


def test_vq_gradients():
    """Codebook gradient = 2/(M D) (counts_k e_k - sums_k); the encoder output's gradient = the
    decoder input's gradient (straight-through) + the commitment term 2 beta/(M D) (z - e)."""
    torch.manual_seed(4)
    model = small_model('vq')
    x = torch.rand(2, 3, 16, 16) - 0.5
    with torch.no_grad():
        z = model._pre_vq_conv(model._encoder(x)).permute(0, 2, 3, 1).reshape(-1, 4)
        model._vq_vae._embedding.weight.copy_(z[torch.randperm(z.shape[0])[:12]] * 1.1)
    z = model._pre_vq_conv(model._encoder(x))
    z.retain_grad()
    vq_loss, quantized, _, codes = model._vq_vae(z)
    quantized.retain_grad()
    loss = F.mse_loss(model._decoder(quantized), x) / 0.08 + vq_loss
    loss.backward()

    E = model._vq_vae._embedding.weight.detach().double()
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 4).double()
    M, D = flat.shape
    onehot = F.one_hot(codes, 12).double()
    want = 2.0 / (M * D) * (onehot.sum(0)[:, None] * E - onehot.t() @ flat)
    err = rel_err(model._vq_vae._embedding.weight.grad, want)
    check('vq: codebook gradient = 2/(M D) (counts_k e_k - sums_k)', err < 1e-5,
          f'rel err {err:.2e}, {int((onehot.sum(0) > 0).sum())} of 12 codes used')
    commit = 2 * 0.25 / (M * D) * (flat - E[codes])
    commit = commit.view(z.shape[0], z.shape[2], z.shape[3], D).permute(0, 3, 1, 2)
    err = rel_err(z.grad, quantized.grad.double() + commit)
    check('vq: straight-through: dL/dz = dL/dquantized + 2 beta/(M D) (z - e)', err < 1e-5, f'rel err {err:.2e}')
    g = model._encoder._conv_1.weight.grad
    check('vq: the reconstruction gradient reaches the encoder', g is not None and g.abs().max() > 0)


def write_checkpoint(path, model, config_text):
    """A file laid out like src/io/checkpoint.h: /model/<key> float32 (chunked, fletcher32), config."""
    with h5py.File(path, 'w') as h5:
        h5.attrs['format'] = 'vqvae_dist'
        h5.attrs['version'] = 1
        h5.attrs['config'] = config_text
        for key, value in model.state_dict().items():
            h5.create_dataset(f'model/{key}', data=value.numpy().astype(np.float32), chunks=True, fletcher32=True)


CONFIG_TEXT = """\
model:
  arch: resnet
  num_hiddens: 16
  num_residual_hiddens: 8
  num_residual_layers: {n}
  embedding_dim: 4
quantizer:
  type: {quantizer}   # ema | vq
  num_embeddings: 12
  commitment_cost: 0.25
  decay: 0.9
  epsilon: 1.0e-05
  init: auto
data:
  dataset: synthetic
  channels: {C}
  path: "/usr/share/datasets/fashion-mnist"
train:
  lr: 0.001
  deterministic: false
"""


def test_config_parser():
    """The sectioned YAML the C program stores reads back with its types (PyYAML)."""
    cfg = vcfg.parse(CONFIG_TEXT.format(n=2, quantizer='ema', C=3))
    want = {'model.num_residual_layers': 2, 'quantizer.type': 'ema', 'quantizer.epsilon': 1e-5,
            'quantizer.commitment_cost': 0.25, 'data.path': '/usr/share/datasets/fashion-mnist',
            'train.deterministic': False}
    flat = vcfg.flatten(cfg)
    bad = {k: flat.get(k) for k in want if flat.get(k) != want[k]}
    check('config.parse reads the config keys with their types', not bad, f'wrong: {bad}' if bad else f'{len(flat)} keys')
    check('config.get falls back to the default of a key the file lacks',
          vcfg.get(cfg, 'model.type') == 'vqvae' and vcfg.data_range(cfg) == 'centered' and vcfg.recon_mode(cfg) == 'nmse')


def test_checkpoint_roundtrip():
    torch.manual_seed(5)
    with tempfile.TemporaryDirectory() as tmp:
        for quantizer, C, n in (('ema', 3, 2), ('vq', 1, 1)):
            model = small_model(quantizer, C, n)
            with torch.no_grad():
                for p in model.state_dict().values():
                    p.copy_(torch.randn_like(p) * 0.1 + (1.0 if p.dim() == 1 else 0.0))
            path = os.path.join(tmp, f'{quantizer}.h5')
            write_checkpoint(path, model, CONFIG_TEXT.format(n=n, quantizer=quantizer, C=C))
            loaded, cfg = vqvae_dist.load(path)
            a, b = model.state_dict(), loaded.state_dict()
            same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
            check(f'{quantizer} C={C} n={n}: HDF5 checkpoint round trip restores every tensor bit-exact', same)
            x = torch.rand(2, C, 8, 8) - 0.5
            with torch.no_grad():
                want, got = model.eval()(x)[1], loaded.eval()(x)[1]
            check(f'{quantizer}: the loaded model gives the same reconstruction', torch.equal(want, got))
            check(f'{quantizer}: config read back', cfg['quantizer']['type'] == quantizer and
                  loaded._vq_vae.ema == (quantizer == 'ema'))
        with h5py.File(path, 'a') as h5:  # a missing tensor must be refused (strict=True)
            del h5['model/_pre_vq_conv.bias']
        try:
            vqvae_dist.load(path)
            refused = False
        except vqvae_dist.CheckpointError as e:
            refused = '_pre_vq_conv.bias' in str(e)
        check('a checkpoint missing a tensor is refused (strict load)', refused)


def main():
    torch.set_num_threads(1)
    for test in (test_keys_and_shapes, test_forward_backward, test_residual_skip_uses_x, test_ema_update_numpy,
                 test_vq_gradients, test_config_parser, test_checkpoint_roundtrip):
        try:
            test()
        except Exception as e:  # a crash is a failed check, and the other tests still run
            check(f'{test.__name__} ran to the end', False, f'{type(e).__name__}: {e}')
    print(f"test_reference_model: {RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 0 if RESULTS['failed'] == 0 and RESULTS['passed'] > 0 else 1


if __name__ == '__main__':
    sys.exit(main())
