#!/usr/bin/python3
"""A stand-in for `vqvae_dist debug-step`, written with python/vqvae_dist's resnet: the file protocol of
tests/torch/test_parity.py in executable form, and a way to test that test without the C program.

    VQVAE_BIN=tests/reference/fake_debug_step.py /usr/bin/python3 tests/torch/test_parity.py

It computes the step in float64 (a different rounding from the float32 oracle, as the C program's
is) and writes float32 files. FAKE_BREAK=<fault> injects one fault, to see the parity test fail:
  grad     one gradient element off by 1e-3 of the tensor's largest
  skip     residual skip uses relu(x) (the notebook's in-place ReLU)
  adamw    decoupled weight decay instead of torch.optim.Adam's L2
  epshat   Adam's eps added to sqrt(v) before the bias correction of v
  ema      no Laplace smoothing of the cluster sizes
  code     one code replaced by the farthest code
Only data.dataset=synthetic is supported (the config keys of src/io/config.h, defaults as there).
"""
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'python'))
from vqvae_dist import config as vcfg  # noqa: E402
from vqvae_dist import resnet  # noqa: E402
from vqvae_dist.models import build_model  # noqa: E402
from vqvae_dist.quantizer import nearest_codes  # noqa: E402

DEFAULTS = {
    'model.arch': 'resnet', 'model.num_hiddens': 128, 'model.num_residual_hiddens': 32,
    'model.num_residual_layers': 2, 'model.embedding_dim': 64,
    'quantizer.type': 'ema', 'quantizer.num_embeddings': 512, 'quantizer.commitment_cost': 0.25,
    'quantizer.decay': 0.99, 'quantizer.epsilon': 1e-5, 'quantizer.init': 'auto',
    'data.dataset': 'synthetic', 'data.channels': 3, 'data.image_size': 32,
    'train.batch_size': 32, 'train.lr': 1e-3, 'train.beta1': 0.9, 'train.beta2': 0.999, 'train.eps': 1e-8,
    'train.weight_decay': 0.0, 'train.seed': 1234, 'train.device': 'auto', 'train.precision': 'tf32',
    'train.deterministic': False,
}
BREAK = os.environ.get('FAKE_BREAK', '')


def nested(cfg):
    out = {}
    for key, value in cfg.items():
        section, name = key.split('.', 1)
        out.setdefault(section, {})[name] = value
    return out


def write_checkpoint(path, state, exp_avg, exp_avg_sq, step, cfg):
    with h5py.File(path, 'w') as h5:
        h5.attrs['format'] = 'vqvae_dist'
        h5.attrs['version'] = 1
        h5.attrs['step'] = step
        h5.attrs['config'] = yaml.safe_dump(nested(cfg), sort_keys=False)
        for key, value in state.items():
            h5.create_dataset(f'model/{key}', data=value.numpy().astype(np.float32), chunks=True, fletcher32=True)
        for key in exp_avg:
            h5.create_dataset(f'optim/{key}/exp_avg', data=exp_avg[key].numpy().astype(np.float32))
            h5.create_dataset(f'optim/{key}/exp_avg_sq', data=exp_avg_sq[key].numpy().astype(np.float32))
        h5['optim'].attrs['step'] = step
        for name in ('lr', 'beta1', 'beta2', 'eps', 'weight_decay'):
            h5['optim'].attrs[name] = cfg[f'train.{name}']


def main(argv):
    if len(argv) < 1 or argv[0] != 'debug-step':
        print(f"fake_debug_step: unknown command '{argv[0] if argv else ''}'", file=sys.stderr)
        return 2
    args, overrides, rest = {}, [], list(argv[1:])
    while rest:
        a = rest.pop(0)
        if a.startswith('--'):
            args[a] = rest.pop(0)
        else:
            overrides.append(a)
    cfg = dict(DEFAULTS)
    with open(args['--config']) as f:
        cfg.update(vcfg.flatten(vcfg.parse(f.read(), args['--config'])))
    for o in overrides:
        key, value = o.split('=', 1)
        if key not in DEFAULTS:
            print(f"fake_debug_step: unknown config key '{key}'", file=sys.stderr)
            return 2
        cfg[key] = yaml.safe_load(value)
    out = args['--out']
    torch.manual_seed(int(cfg['train.seed']))
    if BREAK == 'skip':
        resnet.Residual.forward = lambda self, x: F.relu(x) + self._block(x)

    C, S, B, K = cfg['data.channels'], cfg['data.image_size'], cfg['train.batch_size'], cfg['quantizer.num_embeddings']
    model = build_model(nested(cfg), (C, S, S))
    images = torch.rand(B, C, S, S) - 0.5
    variance = float(images.double().var())
    if cfg['quantizer.type'] == 'ema' and cfg['quantizer.init'] != 'normal':  # from the batch, sizes 1
        with torch.no_grad():
            z = model.encode(images).permute(0, 2, 3, 1).reshape(-1, cfg['model.embedding_dim'])
            model._vq_vae._embedding.weight.copy_(z[torch.randint(z.shape[0], (K,))])
            model._vq_vae._ema_w.copy_(model._vq_vae._embedding.weight)
            model._vq_vae._ema_cluster_size.fill_(1.0)
    trainable = [k for k, p in model.named_parameters() if p.requires_grad]
    zeros = {k: torch.zeros_like(model.state_dict()[k]) for k in trainable}
    write_checkpoint(os.path.join(out, 'before.h5'), model.state_dict(), zeros, zeros, 0, cfg)
    with h5py.File(os.path.join(out, 'batch.h5'), 'w') as h5:
        h5.create_dataset('images', data=images.numpy())
        h5.attrs['data_variance'] = variance

    model = model.double().train()
    codes, sizes0 = None, model._vq_vae.state_dict().get('_ema_cluster_size', torch.zeros(1)).clone()
    if BREAK == 'code':
        with torch.no_grad():
            z = model.encode(images.double())
            z = z.permute(0, 2, 3, 1).reshape(-1, cfg['model.embedding_dim'])
            codes = nearest_codes(z, model._vq_vae._embedding.weight)
            codes[0] = torch.cdist(z[:1], model._vq_vae._embedding.weight).argmax()
    result = model.loss(images.double(), 'nmse', variance, codes)
    if BREAK == 'ema' and cfg['quantizer.type'] == 'ema':  # undo the smoothing: N = the decayed counts
        vq = model._vq_vae
        with torch.no_grad():
            counts = F.one_hot(result['codes'], K).double().sum(0)
            vq._ema_cluster_size.copy_(sizes0 * cfg['quantizer.decay'] + (1 - cfg['quantizer.decay']) * counts)
            vq._embedding.weight.copy_(vq._ema_w / vq._ema_cluster_size.clamp_min(1e-3).unsqueeze(1))
    result['loss'].backward()
    # the float32 gradients that are written out (the C program's Adam sees those)
    grads = {k: p.grad.float().double() for k, p in model.named_parameters() if p.requires_grad}
    if BREAK == 'grad':
        g = grads[trainable[0]].view(-1)
        g[0] += 1e-3 * g.abs().max()
    with h5py.File(os.path.join(out, 'step.h5'), 'w') as h5:
        for name in ('loss', 'recon_loss', 'vq_loss', 'perplexity'):
            h5.attrs[name] = float(result[name])
        h5.create_dataset('codes', data=result['codes'].numpy().astype(np.int32))
        for key, g in grads.items():
            h5.create_dataset(f'grad/{key}', data=g.numpy().astype(np.float32))

    # one Adam step (bias-corrected, L2 weight decay: torch.optim.Adam), written out by hand
    lr, b1, b2, eps, wd = (cfg[f'train.{n}'] for n in ('lr', 'beta1', 'beta2', 'eps', 'weight_decay'))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    m, v = {}, {}
    for key in trainable:
        p, g, p0 = state[key], grads[key], state[key].clone()
        if BREAK != 'adamw':
            g = g + wd * p
        m[key] = (1 - b1) * g
        v[key] = (1 - b2) * g * g
        if BREAK == 'epshat':
            p -= lr * (m[key] / (1 - b1)) / (v[key].sqrt() + eps) * (1 - b2) ** 0.5
        else:
            p -= lr * (m[key] / (1 - b1)) / ((v[key] / (1 - b2)).sqrt() + eps)
        if BREAK == 'adamw':
            p -= lr * wd * p0
    write_checkpoint(os.path.join(out, 'after.h5'), state, m, v, 1, cfg)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
