"""Shared by the torch tests that count checks: PASS/FAIL lines, a closing 'N passed, N failed'
line, and the paths of the source tree, the build and the vqvae_dist binary."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get('VQ_SOURCE_DIR', os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(SOURCE_DIR, 'python'))

RESULTS = {'passed': 0, 'failed': 0}


def check(name, ok, detail=''):
    RESULTS['passed' if ok else 'failed'] += 1
    print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f'  ({detail})' if detail else ''), flush=True)
    return ok


def run_tests(tests):
    """Run each test function; a crash is a failed check and the others still run. Returns the exit code."""
    for test in tests:
        try:
            test()
        except Exception as e:  # noqa: BLE001 (reported as a failure)
            check(f'{test.__name__} ran to the end', False, f'{type(e).__name__}: {e}')
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS['failed'] or not RESULTS['passed'] else 0


def binary():
    """The vqvae_dist program ctest passes as VQVAE_BIN; None (and a failed check) when it is missing."""
    path = os.environ.get('VQVAE_BIN', '')
    ok = bool(path) and os.access(path, os.X_OK)
    if check('VQVAE_BIN is the vqvae_dist program', ok, path if ok else f'VQVAE_BIN={path!r}: build vqvae_dist '
             '(ctest sets VQVAE_BIN to it)'):
        return path
    return None


def run(cmd, timeout=600):
    """(exit code, stdout + stderr) of a command."""
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return proc.returncode, proc.stdout


def train_tiny_run(bin_path, run_dir, steps=10, extra=()):
    """A few steps of configs/smoke.yaml's resnet on Debian's Fashion-MNIST (exact images on both sides)."""
    cmd = [bin_path, 'train', '--config', os.path.join(SOURCE_DIR, 'configs', 'smoke.yaml'),
           'data.dataset=fashion_mnist', 'data.path=/usr/share/datasets/fashion-mnist', f'checkpoint.dir={run_dir}',
           f'train.steps={steps}', 'train.eval_every=5', 'train.device=cpu', 'log.every=2', *extra]
    rc, out = run(cmd)
    ckpt = os.path.join(run_dir, f'ckpt_{steps:08d}.h5')
    check('vqvae_dist train wrote a checkpoint and metrics.jsonl',
          rc == 0 and os.path.exists(ckpt) and os.path.exists(os.path.join(run_dir, 'metrics.jsonl')),
          f'rc {rc}' + ('' if rc == 0 else ', output:\n' + out[-2000:]))
    return ckpt
