"""The benchmark scripts run end to end on a tiny config (not a speed test: nothing here is timed):
bench/pytorch_vqvae.py prints one JSON line with the fields compare.py reads, alone and as 2 DDP
ranks; bench/compare.py runs a one-round comparison and writes the summary files it promises.
A script that cannot import its model (as happened when the reference module moved) fails here."""
import json
import os
import sys
import tempfile

from checks import SOURCE_DIR, binary, check, run, run_tests

SMOKE = os.path.join(SOURCE_DIR, 'configs', 'smoke.yaml')
FIELDS = ('impl', 'images_per_s', 'ms_per_step', 'final_loss', 'peak_memory_bytes', 'threads', 'world', 'batch')


def json_line(out):
    lines = [line for line in out.splitlines() if line.startswith('{')]
    return json.loads(lines[-1]) if lines else None


def test_pytorch_baseline():
    script = os.path.join(SOURCE_DIR, 'bench', 'pytorch_vqvae.py')
    for ranks in (1, 2):
        env_cmd = ['env', 'OPENBLAS_NUM_THREADS=1', sys.executable, script, '--config', SMOKE, '--batch', '4',
                   '--steps', '2', '--warmup', '1', '--threads', '1', '--ranks', str(ranks)]
        rc, out = run(env_cmd, timeout=300)
        result = json_line(out) if rc == 0 else None
        ok = result is not None and all(k in result for k in FIELDS) and result['world'] == ranks and \
            result['images_per_s'] and result['images_per_s'] > 0 and result['final_loss'] is not None
        check(f'pytorch_vqvae.py --ranks {ranks} prints a complete JSON line', ok,
              f'rc {rc}: {out[-1500:]}' if not ok else f"{result['images_per_s']} images/s")


def test_compare():
    bin_path = binary()
    if not bin_path:
        return
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, os.path.join(SOURCE_DIR, 'bench', 'compare.py'), '--bin', bin_path, '--config', SMOKE,
               '--cases', 'single:4', '--rounds', '1', '--steps', '2', '--warmup', '1', '--cores', '1',
               '--out', tmp, '--name', 'tiny', '--raw', os.path.join(tmp, 'raw')]
        rc, out = run(cmd, timeout=600)
        folder = os.path.join(tmp, 'tiny')
        files = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        check('compare.py exits 0 and writes README.md and summary.json', rc == 0 and
              {'README.md', 'summary.json'} <= set(files), f'rc {rc}, files {files}: {out[-1500:]}')
        if 'summary.json' in files:
            with open(os.path.join(folder, 'summary.json')) as f:
                summary = json.load(f)
            text = json.dumps(summary)
            check('summary.json names both sides and their settings', 'vqvae_dist' in text or 'ours' in text,
                  text[:300])


if __name__ == '__main__':
    sys.exit(run_tests([test_pytorch_baseline, test_compare]))
