#!/usr/bin/python3
"""Ours against a fair PyTorch: same model, batch, data and device, each side at its best thread setting.

The fair CPU comparison of docs/BENCHMARKS.md is one command (from the repository root, on an idle machine):

    /usr/bin/python3 bench/compare.py

For each case (default on the CPU: one process at batch 32 and at batch 256, and N ranks x 1 thread at batch 32
per rank, N = the cores):
  1. selection: one short run of every sensible setting of each side, the fastest kept (and recorded):
       ours     1 process: train.threads 1, 2, 4 .. N;  ranks: mpirun -np N, train.threads=1
       PyTorch  1 process: torch threads 1, 2, 4 .. N x OpenBLAS threads 1 or N;
                ranks: DistributedDataParallel, N processes over gloo, 1 torch and 1 OpenBLAS thread each
  2. rounds: --rounds interleaved runs of each side's kept setting (ours, PyTorch, ours, PyTorch, ...):
     images/s min / median / max, and the peak resident memory of each side.
It writes bench/results/<date>-cpu-<N>core/ (--name to choose): README.md (the tables, the verdicts against the
targets, the machine and its load) and summary.json, a few KB; every command's raw output goes to --raw (a
temporary folder unless given; not committed).

    /usr/bin/python3 bench/compare.py --cases single:32 --rounds 3 --load-note "shared, ~2 busy cores"
    python3 bench/compare.py --device cuda --batch 256 --steps 200 --warmup 20 --repeat 2 --loss-steps 1000

On CUDA the sides are ours, PyTorch eager and torch.compile (targets 2x and 1.3x); --loss-steps N also trains
both for N steps and compares the losses (bench/compare_loss.py).
"""
import argparse
import datetime
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from compare_loss import config_value, loss_check, loss_report

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
# images/s of ours over the other side's, at the medians (docs/BENCHMARKS.md, issue 14 for the CPU)
TARGETS = {'cpu': {'eager': 1.5}, 'cuda': {'eager': 2.0, 'compile': 1.3}}
SIDE_LABELS = {'ours': 'vqvae_dist', 'eager': 'PyTorch eager', 'compile': 'PyTorch torch.compile'}
# channels and size of the real datasets, as src/train/bench.c and bench/pytorch_vqvae.py use them
DATASET_SHAPES = {'cifar10': (3, 32), 'mnist': (1, 28), 'fashion_mnist': (1, 28)}


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


def cpu_description():
    name, flags = 'unknown CPU', set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    name = line.split(':', 1)[1].strip()
                elif line.startswith('flags'):
                    flags = set(line.split(':', 1)[1].split())
    except OSError:
        pass
    isa = [x for x in ('avx2', 'fma', 'avx512f', 'avx512_bf16', 'amx_tile') if x in flags]
    return name, isa


def thread_choices(n):
    return sorted({1, n} | {2 ** i for i in range(1, 12) if 2 ** i < n})


def candidates(side, case, n, device):
    """The settings one side tries in a case: dicts of ranks, threads (and blas for PyTorch on the CPU)."""
    if device == 'cuda':
        return [{'ranks': 1, 'threads': 0}]
    if case == 'ranks':
        return [{'ranks': n, 'threads': 1}] if side == 'ours' else [{'ranks': n, 'threads': 1, 'blas': 1}]
    if side == 'ours':
        return [{'ranks': 1, 'threads': t} for t in thread_choices(n)]
    return [{'ranks': 1, 'threads': t, 'blas': b} for t in thread_choices(n) for b in sorted({1, n})]


def setting_label(side, s):
    if s['threads'] == 0:
        return 'default'
    if side == 'ours':
        return f'{s["ranks"]} ranks x train.threads={s["threads"]}' if s['ranks'] > 1 else f'train.threads={s["threads"]}'
    procs = f'DDP {s["ranks"]} ranks x ' if s['ranks'] > 1 else ''
    return f'{procs}torch threads {s["threads"]}, OpenBLAS threads {s["blas"]}'


class Runner:
    """Runs the sides' commands, keeping every command's output under raw_dir."""

    def __init__(self, args, raw_dir, log):
        self.args, self.raw_dir, self.log, self.count = args, raw_dir, log, 0

    def __call__(self, cmd, name, env, want_json):
        """Run cmd with env added; return its last JSON line (want_json) or None. cmd None: the raw folder."""
        if cmd is None:
            return self.raw_dir
        self.log(f'$ {" ".join(f"{k}={v}" for k, v in env.items())} {shlex.join(cmd)}'.replace('$  ', '$ '))
        start = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env})
        with open(os.path.join(self.raw_dir, f'{name}.stdout.txt'), 'w') as f:
            f.write(proc.stdout)
        with open(os.path.join(self.raw_dir, f'{name}.stderr.txt'), 'w') as f:
            f.write(f'# {shlex.join(cmd)}\n# exit code {proc.returncode}, {time.time() - start:.1f}s\n{proc.stderr}')
        line = next((s for s in reversed(proc.stdout.splitlines()) if s.startswith('{')), None)
        if proc.returncode == 0 and not want_json:
            return None
        if proc.returncode != 0 or line is None:
            tail = '\n'.join(proc.stderr.splitlines()[-8:])
            sys.exit(f'compare.py: {name} failed (exit code {proc.returncode}, no JSON line); '
                     f'see {self.raw_dir}/{name}.stderr.txt:\n{tail}')
        result = json.loads(line)
        self.log(f'  -> {result.get("images_per_s")} images/s, peak memory {mib(result.get("peak_memory_bytes"))} MiB')
        return result

    def command(self, side, s, batch, steps, warmup):
        """(cmd, env) of one run of a side with setting s."""
        a = self.args
        timing = ['--steps', str(steps), '--warmup', str(warmup)]
        if side == 'ours':
            cmd = [a.bin, 'bench', *timing, '--config', a.config, f'train.batch_size={batch}',
                   f'train.device={a.device}', f'train.precision={a.precision}', f'train.threads={s["threads"]}',
                   *a.overrides]
            if s['ranks'] > 1:
                mpirun = ['mpirun', '-np', str(s['ranks']), '--bind-to', 'none']   # PyTorch's ranks are not bound either
                if os.geteuid() == 0:
                    mpirun += ['--allow-run-as-root']
                cmd = mpirun + cmd
            return cmd, {**a.omp_env, **({'OMP_NUM_THREADS': str(s['threads'])} if s['threads'] else {})}
        cmd = [a.python, os.path.join(ROOT, 'bench', 'pytorch_vqvae.py'), *timing, '--config', a.config,
               '--batch', str(batch), '--device', a.device, '--precision', a.precision,
               '--threads', str(s['threads']), '--ranks', str(s['ranks']), *a.overrides]
        if side == 'compile':
            cmd.append('--compile')
        env = dict(a.omp_env)
        if s.get('blas'):
            env.update({'OMP_NUM_THREADS': str(s['threads']), 'OPENBLAS_NUM_THREADS': str(s['blas'])})
        return cmd, env

    def run_side(self, side, s, batch, steps, warmup, tag):
        self.count += 1
        cmd, env = self.command(side, s, batch, steps, warmup)
        r = self(cmd, f'{self.count:02d}-{tag}-{side}', env, True)
        return {'setting': s, 'label': setting_label(side, s), 'images_per_s': r.get('images_per_s'),
                'ms_per_step': r.get('ms_per_step'), 'peak_memory_bytes': r.get('peak_memory_bytes'),
                'final_loss': r.get('final_loss'), 'note': r.get('note'), 'json': r}


def mib(value):
    return '-' if value is None else f'{value / 2**20:.0f}'


def steps_for(args, global_batch):
    """--steps, or enough steps for about --images images (at least 8)."""
    if args.steps:
        return args.steps, args.warmup
    return max(8, -(-args.images // global_batch)), args.warmup


def measure_case(runner, args, sides, case, batch, n):
    """Selection, then interleaved rounds, of one case: its summary dict."""
    log = runner.log
    ranks = n if case == 'ranks' else 1
    steps, warmup = steps_for(args, batch * ranks)
    tag = f'{case}{batch}'
    log(f'== case {case}, batch {batch} per rank: selection ({max(4, steps // 2)} steps each)')
    kept, tried = {}, {}
    for side in sides:
        options = candidates(side, case, n, args.device)
        results = [runner.run_side(side, s, batch, max(4, steps // 2), warmup, f'{tag}-select') for s in options]
        tried[side] = [{'label': r['label'], 'images_per_s': r['images_per_s']} for r in results]
        timed = [r for r in results if r['images_per_s'] is not None]
        kept[side] = max(timed, key=lambda r: r['images_per_s'])['setting'] if timed else options[0]
    log(f'== case {case}, batch {batch} per rank: {args.rounds} rounds of {steps} steps, interleaved')
    rounds = {side: [] for side in sides}
    for r in range(args.rounds):
        for side in sides:
            rounds[side].append(runner.run_side(side, kept[side], batch, steps, warmup, f'{tag}-round{r + 1}'))
    out = {'case': case, 'batch': batch, 'ranks': ranks, 'global_batch': batch * ranks, 'steps': steps,
           'warmup': warmup, 'sides': {}}
    for side in sides:
        ips = [x['images_per_s'] for x in rounds[side] if x['images_per_s'] is not None]
        peaks = [x['peak_memory_bytes'] for x in rounds[side] if x['peak_memory_bytes'] is not None]
        out['sides'][side] = {
            'kept': setting_label(side, kept[side]), 'setting': kept[side], 'tried': tried[side],
            'images_per_s': ips, 'min': min(ips) if ips else None, 'median': statistics.median(ips) if ips else None,
            'max': max(ips) if ips else None, 'peak_memory_bytes': max(peaks) if peaks else None,
            'final_loss': rounds[side][-1]['final_loss'], 'note': rounds[side][-1]['note'],
            'commit': rounds[side][-1]['json'].get('commit')}
    ours = out['sides']['ours']
    for side in sides[1:]:
        other = out['sides'][side]
        if ours['median'] and other['median']:
            ratio = ours['median'] / other['median']
            target = TARGETS[args.device].get(side)
            other['speedup'] = round(ratio, 3)
            other['target'] = target
            other['meets'] = None if target is None else ratio >= target
        if ours['peak_memory_bytes'] and other['peak_memory_bytes']:
            other['memory_ratio'] = round(ours['peak_memory_bytes'] / other['peak_memory_bytes'], 3)
    return out


def precision_note(summary):
    """What the convolutions computed in, in words."""
    p = summary.get('precision', 'tf32')
    if summary['device'] != summary['machine']['cpu']:   # a GPU
        return f'{p} on the GPU'
    if p == 'bf16':
        return 'bf16 on the CPU (ours train.precision=bf16, PyTorch torch.autocast(bfloat16))'
    return 'fp32 on the CPU'


def report(summary):
    """README.md of the results folder."""
    m = summary['machine']
    md = [f'# vqvae_dist vs PyTorch, {summary["date"]}, {summary["device"]}', '',
          f'- commit {summary["commit"]}, torch {summary["torch"]}; config `{summary["config"]}` on synthetic data of '
          f'its shape (`vqvae_dist bench`), {precision_note(summary)}',
          f'- machine: {m["cpu"]}, {m["cores"]} cores ({", ".join(m["isa"]) or "no AVX2"}); '
          f'load average {m["load_before"]} before the first run, {m["load_after"]} after the last '
          f'(1, 5, 15 min; the runs themselves add up to {m["cores"]}); nice {m["nice"]}',
          f'- load note: {summary["load_note"] or "none given"}', '',
          '| case | batch per rank | side | kept setting | images/s min / median / max | peak RSS MiB | vs ours |',
          '|---|---:|---|---|---|---:|---|']
    for c in summary['cases']:
        case = '1 process' if c['case'] == 'single' else f'{c["ranks"]} ranks'
        for side, s in c['sides'].items():
            if s['median'] is None:
                md.append(f'| {case} | {c["batch"]} | {SIDE_LABELS[side]} | - | {s["note"] or "not run"} | | |')
                continue
            versus = ''
            if 'speedup' in s:
                verdict = '' if s['target'] is None else f' (target >= {s["target"]}x: {"meets" if s["meets"] else "misses"})'
                versus = f'ours {s["speedup"]:.2f}x{verdict}; RSS {s.get("memory_ratio", 0):.2f}x'
            md.append(f'| {case} | {c["batch"]} | {SIDE_LABELS[side]} | {s["kept"]} | {s["min"]:.1f} / '
                      f'{s["median"]:.1f} / {s["max"]:.1f} | {mib(s["peak_memory_bytes"])} | {versus} |')
    md += ['', f'{summary["rounds"]} interleaved rounds per case after the selection; speedup = ratio of the medians; '
               'peak RSS = the largest peak resident set (ru_maxrss) of any process of a side (ranks: of any rank). '
               'Steps per run: ' + ', '.join(f'{c["case"]}:{c["batch"]} {c["steps"]} (+{c["warmup"]} warm-up)'
                                              for c in summary['cases']) + '.', '',
           'Selection (one short run per setting, images/s):', '']
    for c in summary['cases']:
        for side, s in c['sides'].items():
            tried = '; '.join(f'{t["label"]} {t["images_per_s"]}' for t in s['tried'])
            md.append(f'- {c["case"]}:{c["batch"]} {SIDE_LABELS[side]}: {tried}')
    if summary.get('loss'):
        md += loss_report(summary['loss'], summary['loss_batch'])
    md += ['', 'Command:', '```', summary['command'], '```', '']
    return '\n'.join(md)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--bin', default=os.path.join(ROOT, 'build', 'vqvae_dist'), help='our binary')
    p.add_argument('--python', default=sys.executable, help='the Python with torch for bench/pytorch_vqvae.py')
    p.add_argument('--config', default=os.path.join(ROOT, 'configs', 'cifar.yaml'),
                   help='the config both sides read (model, quantizer, optimizer); data is synthetic of its shape')
    p.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    p.add_argument('--precision', choices=('tf32', 'fp32', 'bf16'), default='tf32',
                   help='CUDA convolutions (tf32, fp32, bf16); on the CPU tf32 = fp32, bf16 = ours '
                        'train.precision=bf16 against PyTorch under torch.autocast(bfloat16)')
    p.add_argument('--cases', help='comma-separated single:BATCH and ranks:BATCH (per rank); default on the CPU '
                                   'single:32,single:256,ranks:32, on CUDA single:256')
    p.add_argument('--batch', type=int, help='shorthand for --cases single:BATCH')
    p.add_argument('--ranks', type=int, default=0, help='ranks of the ranks cases (default: the cores)')
    p.add_argument('--cores', type=int, default=0, help='threads to try up to (default: os.cpu_count())')
    p.add_argument('--rounds', '--repeat', type=int, default=3, help='interleaved timed runs per side and case')
    p.add_argument('--steps', type=int, default=0, help='timed steps per run (default: about --images images)')
    p.add_argument('--images', type=int, default=2560, help='images per timed run when --steps is not given')
    p.add_argument('--warmup', type=int, default=5, help='untimed steps first')
    p.add_argument('--compile', action='store_true', help='also torch.compile on the CPU (always tried on CUDA)')
    p.add_argument('--no-compile', action='store_true', help='skip torch.compile on CUDA')
    p.add_argument('--loss-steps', type=int, default=0, help='also train N steps each and compare the losses')
    p.add_argument('--loss-seeds', type=int, default=1, help='seeds per side for --loss-steps (train.seed 1234, ...)')
    p.add_argument('--loss-own-start', action='store_true',
                   help='PyTorch starts from its own init and look-alike data, not from ours (a looser check)')
    p.add_argument('--loss-tolerance', type=float, default=0.02, help='relative, for --loss-steps')
    p.add_argument('--out', default=os.path.join(ROOT, 'bench', 'results'), help='parent of the results folder')
    p.add_argument('--raw', help='folder for the raw outputs (default: a new temporary folder)')
    p.add_argument('--date', default=datetime.date.today().isoformat())
    p.add_argument('--name', help='results folder name (default <date>-cpu-<cores>core or <date>-<gpu>)')
    p.add_argument('--load-note', default='', help='what else ran on the machine, for the report')
    p.add_argument('--omp-env', action='append', default=[], metavar='KEY=VALUE',
                   help='environment for every run of both sides (both use libgomp), e.g. GOMP_SPINCOUNT=1000: '
                        'waiting threads stop spinning sooner, which keeps 2 threads usable on a loaded machine')
    p.add_argument('overrides', nargs='*', metavar='section.key=value', help='config overrides for both sides')
    args = p.parse_args()
    if any('=' not in e for e in args.omp_env):
        p.error('--omp-env expects KEY=VALUE')
    args.omp_env = dict(e.split('=', 1) for e in args.omp_env)
    if not os.access(args.bin, os.X_OK):
        sys.exit(f'compare.py: {args.bin} is not an executable; build it (tools/build.sh) or pass --bin')
    if args.rounds < 1:
        p.error('--rounds must be >= 1')
    return args


def parse_cases(args):
    spec = args.cases or (f'single:{args.batch}' if args.batch else
                          'single:32,single:256,ranks:32' if args.device == 'cpu' else 'single:256')
    cases = []
    for item in spec.split(','):
        kind, _, batch = item.partition(':')
        if kind not in ('single', 'ranks') or not batch.isdigit() or int(batch) < 1:
            sys.exit(f'compare.py: --cases expects single:BATCH or ranks:BATCH items, got {item!r}')
        cases.append((kind, int(batch)))
    return cases


def main():
    args = parse_args()
    n = args.cores or os.cpu_count()
    gpu = None
    if args.device == 'cuda':
        gpu = text_of(['nvidia-smi', '--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'])
        if not gpu:
            sys.exit('compare.py: --device cuda, but nvidia-smi shows no GPU; run on a GPU node')
    slug = re.sub(r'[^a-z0-9]+', '-', gpu.splitlines()[0].split(',')[0].lower()).strip('-') if gpu else f'cpu-{n}core'
    folder = os.path.join(args.out, args.name or f'{args.date}-{slug}')
    raw_dir = args.raw or tempfile.mkdtemp(prefix='vqvae-compare-')
    os.makedirs(folder, exist_ok=True)
    os.makedirs(raw_dir, exist_ok=True)
    lines = []

    def log(text):
        print(text, flush=True)
        lines.append(text)

    log(f'compare.py: raw outputs in {raw_dir}')
    sides = ['ours', 'eager']
    if (args.device == 'cuda' and not args.no_compile) or args.compile:
        sides.append('compile')
    runner = Runner(args, raw_dir, log)
    cpu, isa = cpu_description()
    load_before = [round(x, 2) for x in os.getloadavg()]
    cases = []
    for kind, batch in parse_cases(args):
        cases.append(measure_case(runner, args, sides, kind, batch, args.ranks or n))
    summary = {
        'date': args.date, 'device': gpu or cpu, 'commit': git_commit(), 'precision': args.precision,
        'binary_commit': cases[0]['sides']['ours'].get('commit'),
        'torch': text_of([args.python, '-c', 'import torch; print(torch.__version__)']),
        'config': ' '.join([os.path.relpath(args.config, ROOT), *args.overrides]), 'rounds': args.rounds,
        'machine': {'cpu': cpu, 'cores': n, 'isa': isa, 'load_before': load_before,
                    'load_after': [round(x, 2) for x in os.getloadavg()], 'nice': os.nice(0)},
        'load_note': args.load_note, 'command': shlex.join(['/usr/bin/python3' if sys.executable == '/usr/bin/python3'
                                                           else sys.executable, *sys.argv]),
        'raw': raw_dir, 'cases': cases}
    if args.loss_steps > 0:
        batch = cases[0]['batch']
        c, s = DATASET_SHAPES.get(config_value(args.config, args.overrides, 'data.dataset', 'fashion_mnist'),
                                  (None, None))
        data = ['data.dataset=synthetic'] + ([f'data.channels={c}', f'data.image_size={s}'] if c else [])
        common = ['--config', args.config, f'train.batch_size={batch}', f'train.device={args.device}',
                  f'train.precision={args.precision}', *args.overrides, *data]
        torch_cmd = [args.python, os.path.join(ROOT, 'bench', 'pytorch_vqvae.py'), '--config', args.config,
                     '--batch', str(batch), '--device', args.device, '--precision', args.precision,
                     *args.overrides, *data]
        summary['loss'], summary['loss_batch'] = loss_check(args, common, torch_cmd, runner), batch
    md = report(summary)
    with open(os.path.join(folder, 'README.md'), 'w') as f:
        f.write(md)
    with open(os.path.join(folder, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
        f.write('\n')
    print(md)
    print(f'compare.py: wrote {os.path.relpath(folder, os.getcwd())}/README.md and summary.json; raw outputs in '
          f'{raw_dir}')
    if summary.get('loss') and not summary['loss']['ok']:
        sys.exit(1)


if __name__ == '__main__':
    main()
