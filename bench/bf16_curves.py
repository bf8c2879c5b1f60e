#!/usr/bin/env python3
"""Training in bf16 against fp32 on the CPU (train.precision=bf16: oneDNN's bf16 convolutions, fp32
master weights): the same runs (config, seed, steps, threads) in each precision, one after the other,
their training-loss curves and final test figures side by side, and the speed of each.

    /usr/bin/python3 bench/bf16_curves.py --name 2026-12-07-cpu-bf16-curves

Writes bench/results/<name>/: README.md (the table and the verdict), summary.json and curves.png
(loss against step, fp32 solid, bf16 dashed). Needs a CPU with AVX512-BF16 (vqvae_dist refuses
bf16 elsewhere). The raw metrics stay in a temporary folder.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# case: (config, overrides). cifar: the benchmark model on synthetic CIFAR-shaped data; fashion:
# the README's job on the real Fashion-MNIST (Debian's dataset-fashion-mnist).
CASES = {
    'cifar': ('configs/cifar.yaml', ['data.dataset=synthetic', 'train.batch_size=32']),
    'fashion': ('configs/fashion_mnist.yaml', []),
}
TAIL = 100   # the final loss: mean of the logged losses of the last TAIL steps


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--bin', default=os.path.join(ROOT, 'build', 'vqvae_dist'))
    p.add_argument('--cases', default='cifar,fashion', help='comma-separated: ' + ', '.join(CASES))
    p.add_argument('--seeds', default='1,2')
    p.add_argument('--steps', type=int, default=1000)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--name', default=None, help='results folder name (default: <date>-cpu-bf16-curves)')
    p.add_argument('--out', default=os.path.join(ROOT, 'bench', 'results'))
    return p.parse_args(argv)


def train(args, case, seed, precision, work):
    """One run; returns its metrics rows (train and eval)."""
    config, overrides = CASES[case]
    run_dir = os.path.join(work, f'{case}-{seed}-{precision}')
    cmd = [args.bin, 'train', '--config', os.path.join(ROOT, config), *overrides, 'train.device=cpu',
           f'train.threads={args.threads}', f'train.steps={args.steps}', f'train.seed={seed}',
           f'train.precision={precision}', f'train.eval_every={args.steps}', 'log.every=10',
           f'checkpoint.dir={run_dir}', f'checkpoint.every={args.steps}']
    print('$ ' + ' '.join(cmd), flush=True)
    with open(run_dir + '.log', 'w') as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    if rc != 0:
        with open(run_dir + '.log') as f:
            tail = f.read().splitlines()[-5:]
        sys.exit(f'bf16_curves.py: {case} seed {seed} {precision} failed (exit {rc}):\n' + '\n'.join(tail))
    with open(os.path.join(run_dir, 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f if line.strip()]


def summarize(rows, steps):
    train_rows = [r for r in rows if r['kind'] == 'train']
    tail = [r['loss'] for r in train_rows if r['step'] > steps - TAIL]
    evals = [r for r in rows if r['kind'] == 'eval']
    speed = [r['images_per_s'] for r in train_rows if r['step'] > 1 and r['images_per_s'] > 0]
    return {'steps': [r['step'] for r in train_rows], 'loss': [r['loss'] for r in train_rows],
            'final_loss': statistics.mean(tail), 'test_nmse': evals[-1]['nmse'] if evals else None,
            'test_perplexity': evals[-1]['perplexity'] if evals else None,
            'images_per_s': statistics.median(speed) if speed else None}


def plot(results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    cases = sorted({r['case'] for r in results})
    fig, axes = plt.subplots(1, len(cases), figsize=(6 * len(cases), 4), squeeze=False)
    for ax, case in zip(axes[0], cases):
        for r in (r for r in results if r['case'] == case):
            style = '-' if r['precision'] == 'fp32' else '--'
            ax.plot(r['steps'], r['loss'], style, linewidth=1, label=f"{r['precision']}, seed {r['seed']}")
        ax.set_yscale('log')
        ax.set_xlabel('step')
        ax.set_ylabel('training loss (log scale)')
        ax.set_title(f'{case}: {CASES[case][0]}')
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(results, steps):
    lines = [f'| case | seed | precision | final loss (mean of the logged losses of the last {TAIL} steps) | vs fp32 | test NMSE | '
             'test perplexity | images/s (median) |', '|---|---:|---|---:|---:|---:|---:|---:|']
    for r in results:
        base = next(b for b in results if b['case'] == r['case'] and b['seed'] == r['seed'] and
                    b['precision'] == 'fp32')
        rel = f"{100 * (r['final_loss'] / base['final_loss'] - 1):+.2f}%" if r is not base else ''
        nmse = f"{r['test_nmse']:.4f}" if r['test_nmse'] is not None else '-'
        perp = f"{r['test_perplexity']:.1f}" if r['test_perplexity'] is not None else '-'
        lines.append(f"| {r['case']} | {r['seed']} | {r['precision']} | {r['final_loss']:.5f} | {rel} | {nmse} | "
                     f"{perp} | {r['images_per_s']:.0f} |")
    return '\n'.join(lines)


def main(argv=None):
    args = parse(argv)
    name = args.name or f"{__import__('datetime').date.today()}-cpu-bf16-curves"
    out = os.path.join(args.out, name)
    results = []
    with tempfile.TemporaryDirectory(prefix='bf16_curves.') as work:
        for case in args.cases.split(','):
            for seed in (int(s) for s in args.seeds.split(',')):
                for precision in ('fp32', 'bf16'):   # one after the other: the speeds are comparable
                    r = summarize(train(args, case, seed, precision, work), args.steps)
                    results.append({'case': case, 'seed': seed, 'precision': precision, **r})
    os.makedirs(out, exist_ok=True)
    plot(results, os.path.join(out, 'curves.png'))
    command = '/usr/bin/python3 bench/bf16_curves.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?')
    with open(os.path.join(out, 'summary.json'), 'w') as f:
        slim = [{k: v for k, v in r.items() if k not in ('steps', 'loss')} for r in results]
        json.dump({'command': command, 'cpu': cpu, 'steps': args.steps, 'threads': args.threads, 'runs': slim}, f,
                  indent=1)
    with open(os.path.join(out, 'README.md'), 'w') as f:
        f.write(f'# bf16 against fp32 on the CPU, {name}\n\n- {cpu}, {args.threads} threads, {args.steps} steps '
                f'per run, each case and seed in fp32 then bf16\n\n{table(results, args.steps)}\n\n'
                f'![loss curves](curves.png)\n\nCommand:\n```\n{command}\n```\n')
    print(f'bf16_curves.py: wrote {out}/README.md, summary.json and curves.png')


if __name__ == '__main__':
    main()
