"""tools/plot.py on a tiny run's output: every command writes a non-empty PNG of exactly the asked
size and prints its path (this checks the file, not the art); bad arguments (a missing file, a VAE
checkpoint given to the codebook plot, a codes file from another checkpoint, ...) exit 1 with a
message naming the problem. The runs: a few C training steps of the resnet and of the Gaussian VAE
(model.type vae) on Fashion-MNIST; the VQ codes files from python3 -m vqvae_dist encode, the VAE's
from `vqvae_dist encode` (the C program)."""
import contextlib
import importlib.util
import io
import os
import struct
import tempfile

import torch

from checks import SOURCE_DIR, binary, check, run, run_tests, train_tiny_run

from vqvae_dist import codes as vcodes  # noqa: E402

VAE = ['model.type=vae', 'model.arch=small', 'vae.latent_dim=4', 'train.lr=0.01']


def load_plot_tool():
    spec = importlib.util.spec_from_file_location('plot_tool', os.path.join(SOURCE_DIR, 'tools', 'plot.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PLOT = load_plot_tool()


def plot(*argv):
    """(exit code, stdout, stderr) of tools/plot.py's main, in this process (one import of torch)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = PLOT.main([str(a) for a in argv])
        except SystemExit as e:  # argparse
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def png_size(path):
    with open(path, 'rb') as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b'\x89PNG\r\n\x1a\n' or head[12:16] != b'IHDR':
        return None
    return struct.unpack('>II', head[16:24])


def expect_png(name, size, *argv):
    rc, out, err = plot(*argv, '--size', f'{size[0]}x{size[1]}')
    path = out.strip().splitlines()[-1] if out.strip() else ''
    got = png_size(path) if path and os.path.exists(path) else None
    bytes_ = os.path.getsize(path) if got else 0
    check(f'plot.py {name}: exit 0, prints the PNG path, {size[0]}x{size[1]} pixels, not empty',
          rc == 0 and got == size and bytes_ > 1000, f'rc {rc}, path {path!r}, size {got}, {bytes_} bytes'
          + (f', stderr {err[-800:]}' if rc else ''))
    return path


def expect_error(name, words, *argv, rc_want=1):
    rc, out, err = plot(*argv)
    missing = [w for w in words if w not in err]
    check(f'plot.py {name}: exit {rc_want} with a message saying so', rc == rc_want and not missing,
          f'rc {rc}, missing {missing} in: {err.strip()[-300:]}')


def make_inputs(bin_path, tmp):
    run_dir = os.path.join(tmp, 'run')
    ckpt = train_tiny_run(bin_path, run_dir, steps=10, extra=['checkpoint.every=5', 'checkpoint.keep=3'])
    vae_run = os.path.join(tmp, 'vae_run')
    vae = train_tiny_run(bin_path, vae_run, steps=10, extra=VAE)
    paths = {'run': run_dir, 'ckpt': ckpt, 'ckpt5': os.path.join(run_dir, 'ckpt_00000005.h5'), 'vae': vae,
             'vae_run': vae_run}
    for name, source, count, latents in (('codes', ckpt, 120, True), ('codes_plain', ckpt, 50, False),
                                         ('codes5', paths['ckpt5'], 50, False)):
        paths[name] = vcodes.encode_checkpoint(source, os.path.join(tmp, f'{name}.h5'), 'test', count, latents)
    paths['vae_codes'] = os.path.join(tmp, 'vae_codes.h5')
    rc, text = run([bin_path, 'encode', '--checkpoint', vae, '--out', paths['vae_codes'], '--count', '300'])
    check('vqvae_dist encode of the VAE checkpoint (the C program\'s /mean and /logvar)', rc == 0, text[-800:])
    return paths


def test_plots(p, out):
    path = expect_png('curves', (640, 480), 'curves', os.path.join(p['run'], 'metrics.jsonl'))
    check('plot.py curves writes curves.png next to metrics.jsonl by default',
          path == os.path.join(os.path.abspath(p['run']), 'curves.png'), path)
    expect_png('codebook (encoding the test split)', (900, 300), 'codebook', p['ckpt'], '--count', 60,
               '--sample', 120, '--out', os.path.join(out, 'codebook.png'))
    expect_png('codebook --codes (with /latents)', (960, 320), 'codebook', p['ckpt'], '--codes', p['codes'],
               '--sample', 150, '--out', os.path.join(out, 'codebook_codes.png'))
    expect_png('codebook --codes (without /latents)', (600, 200), 'codebook', p['ckpt'], '--codes', p['codes_plain'],
               '--out', os.path.join(out, 'codebook_plain.png'))
    expect_png('recon', (800, 500), 'recon', p['ckpt'], '--count', 20, '--out', os.path.join(out, 'recon.png'))
    expect_png('recon of a VAE', (700, 300), 'recon', p['vae'], '--count', 10, '--out', os.path.join(out, 'r2.png'))
    expect_png('latent', (800, 400), 'latent', p['vae'], '--count', 300, '--sample', 150,
               '--out', os.path.join(out, 'latent.png'))
    expect_png('latent --codes', (810, 400), 'latent', p['vae'], '--codes', p['vae_codes'], '--sample', 150,
               '--out', os.path.join(out, 'latent_codes.png'))
    expect_png('class-means', (1000, 200), 'class-means', p['vae'], '--count', 500,
               '--out', os.path.join(out, 'class_means.png'))
    expect_png('interpolate', (600, 620), 'interpolate', p['vae'], '--codes', p['vae_codes'], '--classes', '0,1,7,9',
               '--out', os.path.join(out, 'interpolate.png'))
    expect_png('curves of a VAE run (loss, recon_loss, kl)', (640, 480), 'curves',
               os.path.join(p['vae_run'], 'metrics.jsonl'), '--out', os.path.join(out, 'vae_curves.png'))


def test_errors(p, out, tmp):
    missing = os.path.join(tmp, 'missing.h5')
    expect_error('curves of a missing file', ['missing.jsonl', 'no such file'], 'curves',
                 os.path.join(tmp, 'missing.jsonl'))
    with open(os.path.join(tmp, 'bad.jsonl'), 'w') as f:
        f.write('loss = 3\n')
    expect_error('curves of a file that is not JSON lines', ['bad.jsonl line 1'], 'curves',
                 os.path.join(tmp, 'bad.jsonl'))
    expect_error('codebook of a missing checkpoint', [missing, 'no such file'], 'codebook', missing)
    expect_error('codebook of a VAE checkpoint', ['vae_run', 'VAE', 'plot.py latent'], 'codebook', p['vae'])
    expect_error('codebook with a codes file from another checkpoint', ['codes5.h5', 'written from checkpoint',
                 'step 5', 'step 10'], 'codebook', p['ckpt'], '--codes', p['codes5'])
    expect_error('codebook with a checkpoint where the codes file belongs', ['not a vqvae_dist codes file'],
                 'codebook', p['ckpt'], '--codes', p['ckpt'])
    expect_error('codebook with a missing codes file', ['no such codes file'], 'codebook', p['ckpt'], '--codes', missing)
    expect_error('latent of a VQ-VAE checkpoint', ['VQ-VAE', 'needs a VAE'], 'latent', p['ckpt'])
    expect_error('interpolate with three classes', ['--classes needs four'], 'interpolate', p['vae'],
                 '--codes', p['vae_codes'], '--classes', '0,1,2')
    expect_error('a bad --size', ['WIDTHxHEIGHT'], 'curves', os.path.join(p['run'], 'metrics.jsonl'), '--size', '10x',
                 rc_want=2)
    left = [f for d in (tmp, p['run']) for f in os.listdir(d) if f.endswith('.png') and f != 'curves.png']
    check('the failed commands left no PNG at their default paths', not left, str(left))


def main():
    torch.set_num_threads(1)
    bin_path = binary()
    if bin_path is None:
        return run_tests([])
    with tempfile.TemporaryDirectory(prefix='vq_plot_') as tmp:
        out = os.path.join(tmp, 'png')
        state = {}

        def inputs():
            state.update(make_inputs(bin_path, tmp))

        def plots():
            test_plots(state, out)

        def errors():
            test_errors(state, out, tmp)
        return run_tests([inputs, plots, errors])


if __name__ == '__main__':
    raise SystemExit(main())
