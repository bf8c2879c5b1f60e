"""gpu_curves.py RUNS_DIR TXT PNG: the loss curves of tools/gpu_check.sh's curve runs side by side.
RUNS_DIR holds one folder per run (cpu-ema, gpu-ema, cpu-vq, gpu-vq) with its metrics.jsonl; TXT gets a
table (step, then loss and nmse of each run) and a line per run; PNG a plot of loss and perplexity (when
matplotlib is there; without it the PNG is not written and the script says so)."""
import glob
import json
import os
import statistics
import sys


def main():
    root, txt, png = sys.argv[1:4]
    runs = {}
    for path in sorted(glob.glob(os.path.join(root, '*', 'metrics.jsonl'))):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        runs[os.path.basename(os.path.dirname(path))] = [r for r in rows if r.get('kind') == 'train']
    if not runs:
        print(f'gpu_curves.py: no metrics.jsonl under {root}')
        return 1
    names = sorted(runs)
    by_step = {n: {r['step']: r for r in runs[n]} for n in names}
    steps = sorted({s for n in names for s in by_step[n]})
    lines = ['step ' + ' '.join(f'{n + " loss":>14} {n + " nmse":>14}' for n in names)]
    for s in steps:
        cells = [f'{s:>4}']
        for n in names:
            r = by_step[n].get(s)
            cells.append(f"{r['loss']:>14.5f} {r['nmse']:>14.5f}" if r else f"{'-':>14} {'-':>14}")
        lines.append(' '.join(cells))
    lines.append('')
    for n in names:
        last = runs[n][-1] if runs[n] else {}
        rates = [r['images_per_s'] for r in runs[n][2:] if 'images_per_s' in r] or [0]
        lines.append(f"{n}: {len(runs[n])} steps logged, last step {last.get('step')}, loss {last.get('loss')}, "
                     f"nmse {last.get('nmse')}, perplexity {last.get('perplexity')}, "
                     f"median images/s {statistics.median(rates):.0f}")
    with open(txt, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines[-len(names):]))
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError as e:
        print(f'gpu_curves.py: no plot ({e})')
        return 0
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for n in names:
        xs = [r['step'] for r in runs[n]]
        axes[0].plot(xs, [r['loss'] for r in runs[n]], label=n, linestyle='--' if n.startswith('cpu') else '-')
        axes[1].plot(xs, [r['perplexity'] for r in runs[n]], label=n, linestyle='--' if n.startswith('cpu') else '-')
    axes[0].set_yscale('log')
    axes[0].set_title('training loss')
    axes[1].set_title('perplexity')
    for a in axes:
        a.set_xlabel('step')
        a.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    print(f'gpu_curves.py: wrote {png}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
