#!/usr/bin/python3
"""Ours against PyTorch eager and torch.compile, same model, batch, steps and device, in one go.

Runs `vqvae_dist bench`, bench/pytorch_vqvae.py and bench/pytorch_vqvae.py --compile (each --repeat times,
interleaved; the fastest run of each counts), collects their JSON lines, and writes a folder
bench/results/<date>-<device>/ with README.md (the table, the speedups against the targets, the versions)
and raw/ (every command's stdout and stderr). With --loss-steps N it also trains ours (`vqvae_dist train`) and
PyTorch eager for N steps with --loss-seeds seeds each and checks that the mean training loss of the last
steps agrees within --loss-tolerance (2%), PyTorch starting from our initial weights and our images.

    /usr/bin/python3 bench/compare.py --bin build/vqvae_dist --device cpu --threads 2 --batch 32 --steps 20
    python3 bench/compare.py --bin build/vqvae_dist --device cuda --batch 256 --steps 200 --loss-steps 1000

Targets (docs/BENCHMARKS.md): ours >= 2x PyTorch eager and >= 1.3x torch.compile in images/s on a GPU.
"""
import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
TARGET_VS_EAGER = 2.0
TARGET_VS_COMPILE = 1.3


def run(cmd, name, raw_dir, log, want_json=True):
    """Run cmd, keep its stdout and stderr under raw/, return its JSON line (the last stdout line that is one)."""
    log(f'$ {shlex.join(cmd)}')
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    with open(os.path.join(raw_dir, f'{name}.stdout.txt'), 'w') as f:
        f.write(proc.stdout)
    with open(os.path.join(raw_dir, f'{name}.stderr.txt'), 'w') as f:
        f.write(f'# {shlex.join(cmd)}\n# exit code {proc.returncode}, {time.time() - start:.1f}s\n{proc.stderr}')
    line = next((s for s in reversed(proc.stdout.splitlines()) if s.startswith('{')), None)
    if proc.returncode == 0 and not want_json:
        return None
    if proc.returncode != 0 or line is None:
        tail = '\n'.join(proc.stderr.splitlines()[-8:])
        sys.exit(f'compare.py: {name} failed (exit code {proc.returncode}, no JSON line); '
                 f'see {raw_dir}/{name}.stderr.txt:\n{tail}')
    result = json.loads(line)
    log(f'  -> {result.get("images_per_s")} images/s, final loss {result.get("final_loss")}')
    return result


def text_of(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit():
    commit = text_of(['git', 'rev-parse', '--short', 'HEAD']) or 'unknown'
    dirty = text_of(['git', 'status', '--porcelain', '--untracked-files=no'])
    return commit + ('-dirty' if dirty else '')


def slug(text):
    return re.sub(r'[^a-z0-9]+', '-', text.lower()).strip('-')


def mib(value):
    return '-' if value is None else f'{value / 2**20:.0f}'


def fmt(value, digits=1):
    return '-' if value is None else f'{value:.{digits}f}'


def losses(path):
    """The per-step training losses of our metrics.jsonl or of pytorch_vqvae.py --loss-log."""
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r['loss'] for r in rows if r.get('kind', 'train') == 'train']


def synthetic_count(config_path, overrides):
    """data.synthetic_count as the config file and the overrides set it (default 2048)."""
    count, section = 2048, None
    with open(config_path) as f:
        for line in f:
            text = line.split('#')[0].rstrip()
            if text and not text[0].isspace():
                section = text.strip().rstrip(':')
            elif section == 'data' and text.strip().startswith('synthetic_count:'):
                count = int(text.split(':', 1)[1])
    for o in overrides:
        if o.startswith('data.synthetic_count='):
            count = int(o.split('=', 1)[1])
    return count


def loss_check(args, common, torch_cmd, raw_dir, log):
    """Train both sides for args.loss_steps steps per seed and compare the means over seeds of the mean loss of
    the last `window` steps (one step's loss is too noisy). Unless --loss-own-start, PyTorch starts where ours
    does: our initial weights and codebook (before.h5 of `vqvae_dist debug-step` with the same config and seed)
    and our synthetic images (batch.h5 of a debug-step whose batch is the whole set), so that only the sample
    order and the arithmetic differ. Ours runs as one process. Returns a dict for the report."""
    window = max(1, min(100, args.loss_steps // 10))
    count = synthetic_count(args.config, args.overrides)
    ours, theirs = [], []
    for i in range(args.loss_seeds):
        seed = 1234 + i
        run_dir = tempfile.mkdtemp(prefix='vqvae-loss-')
        try:
            cmd = [args.bin, 'train', *common, f'train.steps={args.loss_steps}', 'log.every=1', 'checkpoint.every=0',
                   'train.eval_batches=1', f'checkpoint.dir={run_dir}', f'train.seed={seed}']
            run(cmd, f'loss-ours-seed{seed}', raw_dir, log, want_json=False)
            kept = os.path.join(raw_dir, f'loss-ours-seed{seed}.metrics.jsonl')
            shutil.copyfile(os.path.join(run_dir, 'metrics.jsonl'), kept)
            ours.append(losses(kept))

            start = []
            if not args.loss_own_start:
                init_dir, data_dir = os.path.join(run_dir, 'init'), os.path.join(run_dir, 'data')
                run([args.bin, 'debug-step', *common, f'train.seed={seed}', '--out', init_dir],
                    f'loss-init-seed{seed}', raw_dir, log, want_json=False)
                run([args.bin, 'debug-step', *common, f'train.seed={seed}', f'train.batch_size={count}',
                     '--out', data_dir], f'loss-data-seed{seed}', raw_dir, log, want_json=False)
                start = ['--init-from', os.path.join(init_dir, 'before.h5'),
                         '--images', os.path.join(data_dir, 'batch.h5')]
            loss_log = os.path.join(raw_dir, f'loss-pytorch-seed{seed}.jsonl')
            run(torch_cmd[:2] + ['--steps', str(args.loss_steps), '--warmup', '0', '--loss-log', loss_log, *start]
                + torch_cmd[2:] + [f'train.seed={seed}'], f'loss-pytorch-seed{seed}', raw_dir, log)
            theirs.append(losses(loss_log))
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
    for name, curves in (('ours', ours), ('PyTorch', theirs)):
        for c in curves:
            if len(c) != args.loss_steps:
                sys.exit(f'compare.py: {name} logged {len(c)} training losses, expected {args.loss_steps}')
    tail_ours = [statistics.fmean(c[-window:]) for c in ours]
    tail_theirs = [statistics.fmean(c[-window:]) for c in theirs]
    a, b = statistics.fmean(tail_ours), statistics.fmean(tail_theirs)
    rel = abs(a - b) / abs(b) if b == b and b != 0 else float('nan')
    spread = (lambda xs: statistics.stdev(xs) / statistics.fmean(xs) if len(xs) > 1 else None)
    return {'window': window, 'ours': a, 'pytorch': b, 'rel': rel, 'ok': rel <= args.loss_tolerance,
            'ours_seeds': tail_ours, 'pytorch_seeds': tail_theirs, 'ours_spread': spread(tail_ours),
            'pytorch_spread': spread(tail_theirs)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--bin', default=os.path.join(ROOT, 'build', 'vqvae_dist'), help='our binary')
    p.add_argument('--python', default=sys.executable, help='the Python with torch for bench/pytorch_vqvae.py')
    p.add_argument('--config', default=os.path.join(ROOT, 'configs', 'cifar.yaml'),
                   help='the config both sides read (model, quantizer, optimizer); data is synthetic')
    p.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    p.add_argument('--precision', choices=('tf32', 'fp32'), default='tf32', help='CUDA convolutions')
    p.add_argument('--batch', type=int, default=256, help='per process')
    p.add_argument('--steps', type=int, default=50, help='timed steps')
    p.add_argument('--warmup', type=int, default=5, help='untimed steps first')
    p.add_argument('--threads', type=int, default=0, help='CPU threads for both (0 = all cores)')
    p.add_argument('--np', type=int, default=1, help='ranks for ours (mpirun); PyTorch runs one process')
    p.add_argument('--repeat', type=int, default=1, help='runs of each, interleaved; the fastest counts')
    p.add_argument('--no-compile', action='store_true', help='skip the torch.compile run')
    p.add_argument('--loss-steps', type=int, default=0, help='also train N steps each and compare the losses')
    p.add_argument('--loss-seeds', type=int, default=1, help='seeds per side for --loss-steps (train.seed 1234, ...)')
    p.add_argument('--loss-own-start', action='store_true',
                   help='PyTorch starts from its own init and look-alike data, not from ours (a looser check)')
    p.add_argument('--loss-tolerance', type=float, default=0.02, help='relative, for --loss-steps')
    p.add_argument('--out', default=os.path.join(ROOT, 'bench', 'results'), help='parent of the results folder')
    p.add_argument('--date', default=datetime.date.today().isoformat())
    p.add_argument('--name', help='results folder name (default <date>-<device>)')
    p.add_argument('overrides', nargs='*', metavar='section.key=value', help='config overrides for both sides')
    args = p.parse_args()
    if not os.access(args.bin, os.X_OK):
        sys.exit(f'compare.py: {args.bin} is not an executable; build it (cmake -S . -B build && make -C build) '
                 'or pass --bin')
    threads = args.threads or os.cpu_count()
    cpu_label = f'cpu-{threads}thread' if threads > 1 else 'cpu-1thread'

    gpu = None
    if args.device == 'cuda':
        gpu = text_of(['nvidia-smi', '--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'])
        if not gpu:
            sys.exit('compare.py: --device cuda, but nvidia-smi shows no GPU; run on a GPU node')
    name = args.name or f'{args.date}-' + (slug(gpu.splitlines()[0].split(',')[0]) if gpu else cpu_label)
    folder = os.path.join(args.out, name)
    raw_dir = os.path.join(folder, 'raw')
    os.makedirs(raw_dir, exist_ok=True)
    lines = []

    def log(text):
        print(text, flush=True)
        lines.append(text)

    common = ['--config', args.config, 'data.dataset=synthetic', f'train.batch_size={args.batch}',
              f'train.device={args.device}', f'train.precision={args.precision}', f'train.threads={threads}',
              *args.overrides]
    ours_cmd = [args.bin, 'bench', *common]
    if args.np > 1:
        mpirun = ['mpirun', '-np', str(args.np)]
        if os.geteuid() == 0:
            mpirun += ['--allow-run-as-root', '--oversubscribe']
        ours_cmd = mpirun + ours_cmd
    torch_cmd = [args.python, os.path.join(ROOT, 'bench', 'pytorch_vqvae.py'), '--config', args.config,
                 '--batch', str(args.batch), '--device', args.device, '--precision', args.precision,
                 '--threads', str(threads), *args.overrides]
    env_threads = {'OMP_NUM_THREADS': str(threads), 'OPENBLAS_NUM_THREADS': str(threads)}
    os.environ.update(env_threads)

    def timing(cmd, is_ours):
        flags = ['--steps', str(args.steps), '--warmup', str(args.warmup)]
        return cmd + flags if is_ours else cmd[:2] + flags + cmd[2:]

    runs = {'ours': [], 'eager': [], 'compile': []}
    for r in range(args.repeat):
        runs['ours'].append(run(timing(ours_cmd, True), f'ours-{r + 1}', raw_dir, log))
        runs['eager'].append(run(timing(torch_cmd, False), f'pytorch-eager-{r + 1}', raw_dir, log))
        if not args.no_compile:
            runs['compile'].append(run(timing(torch_cmd, False) + ['--compile'], f'pytorch-compile-{r + 1}',
                                       raw_dir, log))

    def best(results):
        timed = [x for x in results if x.get('images_per_s') is not None]
        return max(timed, key=lambda x: x['images_per_s']) if timed else (results[0] if results else None)

    ours, eager, compiled = best(runs['ours']), best(runs['eager']), best(runs['compile'])

    loss = loss_check(args, common, torch_cmd, raw_dir, log) if args.loss_steps > 0 else None

    # ---- the report ------------------------------------------------------------------------------
    torch_version = eager['version'] if eager else '?'
    md = [f'# vqvae_dist vs PyTorch, {args.date}, {ours["device"]} ({args.device})', '',
          f'- commit {git_commit()} (binary reports {ours.get("commit")}), torch {torch_version}',
          f'- model: {" ".join([os.path.relpath(args.config, ROOT), *args.overrides])} on synthetic data '
          f'(data.dataset=synthetic), quantizer {ours["quantizer"]}, batch {args.batch} per process'
          f'{f" x {args.np} ranks (ours)" if args.np > 1 else ""}, {args.warmup} warm-up + {args.steps} timed steps, '
          f'best of {args.repeat}',
          f'- precision {ours["precision"]}; threads {ours["threads"] or "-"} (ours), '
          f'{eager["threads"] if eager else "-"} (PyTorch)']
    if args.device == 'cpu':
        md.append(f'- CPU: {ours["device"]}, {os.cpu_count()} cores visible')
    else:
        md.append(f'- GPU (nvidia-smi name, driver, memory): {gpu}')
        for side, res in (('ours', ours), ('PyTorch', eager)):
            if res:
                md.append(f'- {side}: CUDA runtime {res.get("cuda_runtime")}, driver {res.get("cuda_driver", "-")}, '
                          f'cuDNN {res.get("cudnn")}, NCCL {res.get("nccl")}')
    md += ['', '| run | images/s | ms/step | start-up s | peak memory MiB | peak allocated MiB | in use MiB '
               '| final loss |', '|---|---:|---:|---:|---:|---:|---:|---:|']
    for label, res in (('vqvae_dist', ours), ('PyTorch eager', eager), ('PyTorch torch.compile', compiled)):
        if res is None:
            continue
        if res.get('images_per_s') is None:
            md.append(f'| {label} | {res.get("note", "not run")} | | | | | | |')
            continue
        md.append(f'| {label} | {fmt(res["images_per_s"])} | {fmt(res["ms_per_step"], 2)} | '
                  f'{fmt(res["startup_s"], 2)} | {mib(res["peak_memory_bytes"])} | '
                  f'{mib(res["peak_allocated_bytes"])} | {mib(res["memory_in_use_bytes"])} | '
                  f'{fmt(res["final_loss"], 4)} |')
    md.append('')
    peak_note = ('peak memory: peak resident set (ru_maxrss) of the process'
                 if args.device == 'cpu' else
                 'peak memory: ours = device memory added since the context was created (cudaMemGetInfo), '
                 'PyTorch = torch.cuda.max_memory_reserved')
    md += [f'{peak_note}; peak allocated: ours = bytes from the backend\'s alloc, PyTorch = '
           'torch.cuda.max_memory_allocated (CUDA only); in use: after the timed steps (CPU: resident set; CUDA: '
           'cudaMemGetInfo used minus the baseline at start).', '']

    def speedup(other, target, label):
        if other is None or other.get('images_per_s') is None:
            return f'- vs {label}: not measured ({(other or {}).get("note", "skipped")})'
        ratio = ours['images_per_s'] / other['images_per_s']
        verdict = 'meets' if ratio >= target else 'misses'
        return f'- vs {label}: {ratio:.3f}x (target >= {target}x: {verdict})'

    md += ['Speedup of vqvae_dist in images/s' + (' (targets are for the GPU)' if args.device == 'cpu' else '') + ':',
           speedup(eager, TARGET_VS_EAGER, 'PyTorch eager'),
           speedup(compiled, TARGET_VS_COMPILE, 'torch.compile') if not args.no_compile else
           '- vs torch.compile: skipped (--no-compile)']
    if loss:
        def spread(x):
            return '-' if x is None else f'{100 * x:.1f}%'
        start = ('PyTorch from its own initial weights and look-alike synthetic data' if args.loss_own_start else
                 'PyTorch from our initial weights and codebook and on our synthetic images; the sample order '
                 'differs')
        md += ['', f'Training loss after {args.loss_steps} steps, batch {args.batch}, one process each: the mean over '
                   f'the last {loss["window"]} steps, averaged over {args.loss_seeds} seed(s) ({start}):',
               f'- vqvae_dist (`train`): {loss["ours"]:.5f} (per seed {", ".join(f"{x:.5f}" for x in loss["ours_seeds"])}; '
               f'seed-to-seed spread {spread(loss["ours_spread"])})',
               f'- PyTorch eager: {loss["pytorch"]:.5f} (per seed '
               f'{", ".join(f"{x:.5f}" for x in loss["pytorch_seeds"])}; spread {spread(loss["pytorch_spread"])})',
               f'- difference {100 * loss["rel"]:.2f}% (tolerance {100 * args.loss_tolerance:.0f}%): '
               f'{"PASS" if loss["ok"] else "FAIL"}']
    md += ['', 'Commands (raw outputs in raw/):', '```', *[x[2:] for x in lines if x.startswith('$ ')], '```', '']
    with open(os.path.join(folder, 'README.md'), 'w') as f:
        f.write('\n'.join(md))
    with open(os.path.join(folder, 'results.jsonl'), 'w') as f:
        for key, results in runs.items():
            for res in results:
                f.write(json.dumps({'run': key, **res}) + '\n')
    print('\n'.join(md))
    print(f'compare.py: wrote {os.path.relpath(folder, os.getcwd())}/README.md and raw/')
    if loss and not loss['ok']:
        sys.exit(1)


if __name__ == '__main__':
    main()
