"""Parity of one training step between vqvae_dist (C) and its PyTorch module (python/vqvae_dist).

For each case, `$VQVAE_BIN debug-step --config configs/smoke.yaml --out DIR [key=value ...]` writes
DIR/before.h5 (the step-0 checkpoint), DIR/batch.h5 (the batch), DIR/step.h5 (loss terms, codes and
gradients of the forward on that batch) and DIR/after.h5 (the checkpoint after one step). This test
loads before.h5 into the PyTorch module (python/vqvae_dist, strict), runs the same forward/backward
and one torch.optim.Adam step, and compares everything with max|a - b| / max|b| per tensor.
A missing binary, or one that does not run debug-step (an unknown command), FAILS: under ctest
VQVAE_BIN is the program just built. To see it run (and fail) without the C program:
VQVAE_BIN=tests/reference/fake_debug_step.py [FAKE_BREAK=...] python3 <this>.

The C program runs on the CPU (train.device=cpu), so the result does not depend on whether a GPU is
visible; VQ_PARITY_DEVICE=cuda runs it on the GPU instead, in fp32 and deterministic mode.
"""
import math
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'python'))
import vqvae_dist  # noqa: E402
from vqvae_dist.config import flatten  # noqa: E402
from philox_masks import install_groupnorm_masks  # noqa: E402

TOL = 1e-4          # relative error per tensor (max|a-b| / max|b|)
# Adam's first step moves each parameter by lr g / (|g| + eps) (g including wd p): where |g| is near
# eps, it amplifies a difference in g by up to lr / eps. Elements with |g + wd p| < ILL_CONDITIONED
# x eps are therefore left out of the parameter checks (their gradients and moments are still
# checked): end to end, g differs by the gradients' rounding (measured: a g + wd p of 1.5e-8 turned
# a 1e-6 relative gradient difference into 7e-5 of max|p|); from the same gradients, only g + wd p
# is rounded differently (FMA or not), so without weight decay nothing is left out there.
ILL_CONDITIONED = 100
# The Adam update alone (after - before, from the same gradients) is the difference of two float32
# numbers of size |p|, so it carries about ulp(max|p|) / lr = 1e-5..1e-4 of rounding; 1e-3 still
# catches a missing bias correction or eps inside the bias correction.
UPDATE_TOL = 1e-3
TIE_WINDOW = 1e-5   # a code mismatch is a near-tie when the distance gap <= this x (|z|^2 + |e|^2)
# the second configuration: more residual layers, one channel, weight decay, and the notebook's
# codebook init (N(0,1), EMA sizes 0), whose unused codes exercise the EMA's Laplace smoothing
SECOND = ['model.num_residual_layers=2', 'data.channels=1', 'train.batch_size=4', 'train.weight_decay=0.01',
          'quantizer.init=normal']
# (name, quantizer.type, more overrides)
# model.arch groupnorm (diffusers' VQModel layout): two blocks with the mid attention; then three
# blocks, two resnets per block, no attention, latent channels != embedding_dim, one channel, weight
# decay; then the first with dropout 0.2, where PyTorch runs with the C program's masks
# (philox_masks.py recomputes them from src/core/philox.h's counter layout).
GROUPNORM = ['model.arch=groupnorm', 'model.block_out_channels=[8, 16]', 'model.norm_num_groups=4']
GROUPNORM_2 = ['model.arch=groupnorm', 'model.block_out_channels=[4, 8, 8]', 'model.norm_num_groups=2',
               'model.layers_per_block=2', 'model.mid_attention=false', 'model.latent_channels=4',
               'data.channels=1', 'train.batch_size=4', 'train.weight_decay=0.01']
# model.arch small (the classic MNIST VQ-VAE): 28x28 images, grouped codes (64 / 8 = 8 per position);
# then narrower convs, 32x32 images (a 2x2 latent), two groups, three channels and weight decay
SMALL = ['model.arch=small', 'data.channels=1', 'data.image_size=28', 'quantizer.num_embeddings=16']
SMALL_2 = ['model.arch=small', 'model.channels=[4, 8, 16]', 'data.image_size=32', 'train.batch_size=4',
           'train.weight_decay=0.01']
# model.type vae (the Gaussian VAE on the small arch): PyTorch runs with the C program's eps (step.h5);
# then narrower convs, a 4-dim latent, loss weights other than 1 and weight decay
VAE = ['model.type=vae', 'model.arch=small', 'data.channels=1', 'data.image_size=28']
VAE_2 = VAE + ['model.channels=[4, 8, 16]', 'vae.latent_dim=4', 'vae.kl_weight=3.5', 'vae.recon_weight=0.25',
               'train.batch_size=4', 'train.weight_decay=0.01']
CASES = [('ema', 'ema', []), ('vq', 'vq', []), ('ema-2', 'ema', SECOND), ('vq-2', 'vq', SECOND),
         ('gn-ema', 'ema', GROUPNORM), ('gn-vq', 'vq', GROUPNORM), ('gn-ema-2', 'ema', GROUPNORM_2),
         ('gn-vq-2', 'vq', GROUPNORM_2), ('gn-vq-dropout', 'vq', GROUPNORM + ['model.dropout=0.2']),
         ('small-ema', 'ema', SMALL), ('small-vq', 'vq', SMALL), ('small-vq-2', 'vq', SMALL_2),
         ('small-ema-2', 'ema', SMALL_2), ('vae', 'vq', VAE), ('vae-2', 'vq', VAE_2)]
# the reconstruction term per arch: the notebook's MSE / data variance, VQModel's plain MSE
RECON_MODE = {'resnet': 'nmse', 'groupnorm': 'mse', 'small': 'mse'}
# the pixel values per arch (data.range auto): v / 255 of a byte v, then - 0.5 (resnet: centered),
# (x - 0.5) / 0.5 (groupnorm: symmetric), or unchanged (small: unit); as (offset, scale): x = offset + scale v / 255
PIXEL_MAP = {'resnet': (-0.5, 1.0), 'groupnorm': (-1.0, 2.0), 'small': (0.0, 1.0)}


def pixel_grid_error(images, arch):
    """How far the batch is from the arch's pixel grid: max |v - round(v)| of the bytes v it implies,
    and whether every v lies in [0, 255]. A batch in another data.range than the arch's fails."""
    offset, scale = PIXEL_MAP[arch]
    v = (images.double() - offset) / scale * 255.0
    return float((v - v.round()).abs().max()), bool(((v > -1e-3) & (v < 255 + 1e-3)).all())

RESULTS = {'passed': 0, 'failed': 0}
WORST = []  # (case, category, key, rel err) for the summary


def check(name, ok, detail=''):
    RESULTS['passed' if ok else 'failed'] += 1
    print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f'  ({detail})' if detail else ''), flush=True)
    return ok


def rel_err(a, b, floor=1e-12):
    a = np.asarray(a.detach() if torch.is_tensor(a) else a, dtype=np.float64)
    b = np.asarray(b.detach() if torch.is_tensor(b) else b, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), floor)) if b.size else 0.0


def zero_gradient_scale(key, tensors):
    """The attention's to_k.bias adds q.b to every score of a row, which the softmax ignores: its
    gradient is 0 up to rounding, so it is compared on the scale of to_k.weight's instead."""
    if not key.endswith('to_k.bias'):
        return 1e-12
    return float(np.max(np.abs(np.asarray(tensors[key[:-len('bias')] + 'weight'], np.float64))))


def compare(case, category, key, got, want, tol=TOL, note='', floor=1e-12):
    """got: the reference's value, want: the C program's."""
    err = rel_err(got, want, floor)
    WORST.append((case, category, key, err))
    shapes = '' if np.shape(got) == np.shape(want) else f', shape {tuple(np.shape(got))} vs {tuple(np.shape(want))}'
    return check(f'{case}: {category} {key}', err <= tol, f'rel err {err:.2e}{shapes}{note}')


def _same(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-6)
    return a == b


def read_state_dict(h5):
    return {key: torch.from_numpy(np.asarray(h5['model'][key], np.float32)) for key in h5['model']}


def run_debug_step(binary, config, out_dir, overrides):
    cmd = [binary, 'debug-step', '--config', config, '--out', out_dir] + overrides
    print('$ ' + ' '.join(cmd), flush=True)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return False, 'timed out after 600 s'
    return proc.returncode == 0, f'exit code {proc.returncode}, output:\n' + proc.stdout


def code_gaps(z, codebook, torch_codes, c_codes):
    """For the rows where the codes differ: the distance gap d(C's code) - d(torch's code) in float64,
    and that gap over the scale of the cancelling terms |z|^2 + |e|^2."""
    rows = torch.nonzero(torch_codes != c_codes).flatten()
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, codebook.shape[1])[rows].double()
    E = codebook.detach().double()
    d = torch.cdist(flat, E) ** 2
    i = torch.arange(len(rows))
    gap = d[i, c_codes[rows]] - d[i, torch_codes[rows]]
    scale = (flat ** 2).sum(1) + (E[c_codes[rows]] ** 2).sum(1)
    return gap, gap / scale


def adam_step(model, grads, before_h5, cfg):
    """One torch.optim.Adam step from the optimizer state in before.h5, with the given gradients."""
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.Adam([p for _, p in named], lr=float(cfg['train.lr']),
                           betas=(float(cfg['train.beta1']), float(cfg['train.beta2'])),
                           eps=float(cfg['train.eps']), weight_decay=float(cfg['train.weight_decay']))
    step = int(before_h5['optim'].attrs['step'])
    for key, p in named:
        p.grad = grads[key].clone()
        opt.state[p] = {'step': torch.tensor(float(step)),
                        'exp_avg': torch.from_numpy(np.asarray(before_h5[f'optim/{key}/exp_avg'], np.float32)),
                        'exp_avg_sq': torch.from_numpy(np.asarray(before_h5[f'optim/{key}/exp_avg_sq'], np.float32))}
    opt.step()
    return {key: (p.detach(), opt.state[p]['exp_avg'], opt.state[p]['exp_avg_sq']) for key, p in named}


def device_overrides():
    device = os.environ.get('VQ_PARITY_DEVICE', 'cpu')
    if device == 'cuda':
        return ['train.device=cuda', 'train.precision=fp32', 'train.deterministic=true']
    return [f'train.device={device}']


def run_case(binary, source_dir, case, quantizer, extra):
    overrides = [f'quantizer.type={quantizer}'] + extra + device_overrides()
    print(f'\n=== {case}: ' + ' '.join(overrides), flush=True)
    with tempfile.TemporaryDirectory(prefix='vq_parity_') as out_dir:
        ok, output = run_debug_step(binary, os.path.join(source_dir, 'configs', 'smoke.yaml'), out_dir, overrides)
        if not check(f'{case}: debug-step ran', ok, '' if ok else output[-3000:]):
            return
        try:
            with h5py.File(os.path.join(out_dir, 'before.h5'), 'r') as before, \
                    h5py.File(os.path.join(out_dir, 'after.h5'), 'r') as after:
                compare_step(case, out_dir, overrides, before, after)
        except Exception as e:  # a missing file, dataset or key, or a strict load refused
            check(f'{case}: reading the debug-step files', False, f'{type(e).__name__}: {e}')


def compare_step(case, out_dir, overrides, before, after):
    with h5py.File(os.path.join(out_dir, 'batch.h5'), 'r') as f:
        images = torch.from_numpy(np.asarray(f['images'], np.float32))
        variance = float(f.attrs['data_variance'])
    model, cfg = vqvae_dist.load(os.path.join(out_dir, 'before.h5'))
    cfg = flatten(cfg)
    wrong = [o for o in overrides if not _same(cfg.get(o.split('=')[0]), yaml.safe_load(o.split('=', 1)[1]))]
    check(f'{case}: the stored config has the overrides', not wrong, f'not applied: {wrong}' if wrong else '')
    arch = cfg['model.arch']
    mode = RECON_MODE[arch]
    grid_err, in_range = pixel_grid_error(images, arch)
    check(f'{case}: batch shape [train.batch_size, C, H, W], pixels on the {arch} arch\'s data.range grid',
          images.shape[0] == cfg['train.batch_size'] and images.shape[2:] == (cfg['data.image_size'],) * 2
          and grid_err < 1e-3 and in_range, f'{tuple(images.shape)}, off the grid by {grid_err:.2e}, in range {in_range}')
    if cfg['model.type'] == 'vae':
        return compare_vae_step(case, out_dir, model, cfg, images, before, after)
    with h5py.File(os.path.join(out_dir, 'step.h5'), 'r') as f:
        c_scalars = {k: float(f.attrs[k]) for k in ('loss', 'recon_loss', 'vq_loss', 'perplexity')}
        c_codes = torch.from_numpy(np.asarray(f['codes'], np.int64))
        c_grads = {k: torch.from_numpy(np.asarray(f['grad'][k], np.float32)) for k in f['grad']}
    if arch == 'groupnorm' and float(cfg['model.dropout']) > 0:
        layers = install_groupnorm_masks(model, int(cfg['train.seed']), int(before['optim'].attrs['step']),
                                         float(cfg['model.dropout']))
        print(f'  dropout {cfg["model.dropout"]}: {layers} layers with the C program\'s masks', flush=True)

    # the forward, with our own argmin; at a code mismatch, redo it with the C program's codes so
    # that the rest compares like with like
    codebook0 = model.quantizer.weight.detach().clone()
    state0 = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    out = model.loss(images, mode, variance)
    torch_codes = out['codes']
    if torch_codes.shape != c_codes.shape:
        check(f'{case}: codes', False, f'shape {tuple(torch_codes.shape)} vs {tuple(c_codes.shape)}')
        return
    mismatches = int((torch_codes != c_codes).sum())
    if mismatches:
        with torch.no_grad():
            z = model.encode(images)
        gap, rel_gap = code_gaps(z, codebook0, torch_codes, c_codes)
        ties = bool((rel_gap <= TIE_WINDOW).all())
        check(f'{case}: codes identical (up to near-ties)', ties,
              f'{mismatches} of {c_codes.numel()} differ; distance gaps {gap.abs().max():.3e} max, '
              f'{rel_gap.abs().max():.2e} of |z|^2+|e|^2 (near-tie window {TIE_WINDOW:g}); '
              're-running the forward with the C codes')
        model.load_state_dict(state0, strict=True)
        out = model.loss(images, mode, variance, codes=c_codes)
    else:
        check(f'{case}: codes identical (up to near-ties)', True, f'0 of {c_codes.numel()} differ, '
              f'{len(set(c_codes.tolist()))} of {codebook0.shape[0]} codes used')
    out['loss'].backward()

    for name, want in c_scalars.items():
        compare(case, 'scalar', name, out[name].item(), want)

    compare_update(case, model, state0, c_grads, before, after, cfg)


def compare_vae_step(case, out_dir, model, cfg, images, before, after):
    """The VAE's step: the forward with the C program's eps, its loss terms, mean and logvar, then
    the gradients and the Adam update as for the VQ models."""
    with h5py.File(os.path.join(out_dir, 'step.h5'), 'r') as f:
        c_scalars = {k: float(f.attrs[k]) for k in ('loss', 'recon_loss', 'kl')}
        c_arrays = {k: torch.from_numpy(np.asarray(f[k], np.float32)) for k in ('mean', 'logvar', 'eps')}
        c_grads = {k: torch.from_numpy(np.asarray(f['grad'][k], np.float32)) for k in f['grad']}
    state0 = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    out = model.loss(images, eps=c_arrays['eps'])
    check(f'{case}: eps is N(0, 1)-like (|mean| < 0.5, 0.5 < std < 1.5)', abs(float(c_arrays['eps'].mean())) < 0.5
          and 0.5 < float(c_arrays['eps'].std()) < 1.5, f"mean {float(c_arrays['eps'].mean()):.3f}, "
          f"std {float(c_arrays['eps'].std()):.3f} over {c_arrays['eps'].numel()}")
    for name in ('mean', 'logvar'):
        compare(case, 'forward', name, out[name], c_arrays[name])
    out['loss'].backward()
    # the C program's recon_loss is the weighted term of the loss; the module's the plain sum
    got = {'loss': out['loss'].item(), 'recon_loss': model.recon_weight * out['recon_loss'].item(),
           'kl': out['kl'].item()}
    for name, want in c_scalars.items():
        compare(case, 'scalar', name, got[name], want)
    compare_update(case, model, state0, c_grads, before, after, cfg)


def compare_update(case, model, state0, c_grads, before, after, cfg):
    """After the reference's backward: every gradient, the buffers, and the Adam update against
    the C program's after.h5."""
    trainable = {k: p for k, p in model.named_parameters() if p.requires_grad}
    check(f'{case}: /grad has exactly the trainable parameters', set(c_grads) == set(trainable),
          f'missing {sorted(set(trainable) - set(c_grads))}, extra {sorted(set(c_grads) - set(trainable))}')
    for key, p in trainable.items():
        if key in c_grads:
            compare(case, 'grad', key, p.grad, c_grads[key], floor=zero_gradient_scale(key, c_grads))
    if set(c_grads) != set(trainable):
        return

    after_model = read_state_dict(after)
    check(f'{case}: after.h5 /model has every state_dict key', set(after_model) == set(state0),
          f'differ: {sorted(set(after_model) ^ set(state0))}')
    check(f'{case}: after.h5 /optim step = before + 1',
          int(after['optim'].attrs['step']) == int(before['optim'].attrs['step']) + 1,
          f"{int(before['optim'].attrs['step'])} -> {int(after['optim'].attrs['step'])}")

    # the buffers (and, for ema, the codebook) as the forward left them
    for key, value in model.state_dict().items():
        if key not in trainable and key in after_model:
            compare(case, 'ema', key, value, after_model[key])

    wd, eps = float(cfg['train.weight_decay']), float(cfg['train.eps'])

    def well_conditioned(key, grad):
        return (grad.double() + wd * state0[key].double()).abs() >= ILL_CONDITIONED * eps

    def left_out(keep):
        return f', {int((~keep).sum())} of {keep.numel()} elements with |g + wd p| < {ILL_CONDITIONED} eps left out'

    # end to end: Adam on our gradients
    our_grads = {k: p.grad.clone() for k, p in trainable.items()}
    ours = adam_step(model, our_grads, before, cfg)
    for key, (param, exp_avg, exp_avg_sq) in ours.items():
        keep = well_conditioned(key, our_grads[key])
        if param.shape == after_model[key].shape:
            compare(case, 'adam param', key, param[keep], after_model[key][keep], TOL, left_out(keep))
        else:
            compare(case, 'adam param', key, param, after_model[key])
        avgs = {k: after[f'optim/{k}/exp_avg'] for k in (key, key[:-len('bias')] + 'weight') if f'optim/{k}' in after}
        compare(case, 'adam exp_avg', key, exp_avg, np.asarray(avgs[key]), floor=zero_gradient_scale(key, avgs))
        compare(case, 'adam exp_avg_sq', key, exp_avg_sq, np.asarray(after[f'optim/{key}/exp_avg_sq']))

    # the optimizer alone: Adam on the C program's gradients; compare the update after - before
    model.load_state_dict(state0, strict=True)
    theirs = adam_step(model, c_grads, before, cfg)
    for key, (param, _, _) in theirs.items():
        ours_update, their_update = param - state0[key], after_model[key] - state0[key]
        keep = well_conditioned(key, c_grads[key]) | (wd == 0)
        if ours_update.shape == their_update.shape:
            ours_update, their_update = ours_update[keep], their_update[keep]
        compare(case, 'adam update (C grads)', key, ours_update, their_update, UPDATE_TOL, left_out(keep))



def summary():
    print(f'\nworst relative error per case and category (tolerance {TOL:g}; adam update {UPDATE_TOL:g}):')
    seen = {}
    for case, category, key, err in WORST:
        if (case, category) not in seen or err > seen[(case, category)][1]:
            seen[(case, category)] = (key, err)
    for (case, category), (key, err) in seen.items():
        print(f'  {case:<6} {category:<22} {err:.2e}  {key}')


def main():
    torch.set_num_threads(1)
    binary = os.environ.get('VQVAE_BIN', '')
    source_dir = os.environ.get('VQ_SOURCE_DIR', os.path.join(HERE, '..', '..'))
    if not binary or not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        print(f'FAIL: VQVAE_BIN={binary!r} is not an executable file: build vqvae_dist (ctest sets VQVAE_BIN to '
              'it), or set VQVAE_BIN=tests/reference/fake_debug_step.py to test this test')
        return 1
    only = os.environ.get('VQ_PARITY_CASES')   # a comma-separated subset, for a quick local run
    for case, quantizer, extra in CASES:
        if only and case not in only.split(','):
            continue
        run_case(binary, source_dir, case, quantizer, extra)
    summary()
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS['failed'] else 0


if __name__ == '__main__':
    sys.exit(main())
