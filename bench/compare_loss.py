"""compare.py --loss-steps N: train ours (`vqvae_dist train`) and PyTorch eager for N steps per seed, from the same
start, and compare the mean training loss of the last steps (docs/BENCHMARKS.md)."""
import json
import os
import shutil
import statistics
import sys
import tempfile


def losses(path):
    """The per-step training losses of our metrics.jsonl or of pytorch_vqvae.py --loss-log."""
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r['loss'] for r in rows if r.get('kind', 'train') == 'train']


def config_value(config_path, overrides, key, default):
    """The text of section.key as the config file and then the overrides set it, or default."""
    section_name, name = key.split('.')
    value, section = default, None
    with open(config_path) as f:
        for line in f:
            text = line.split('#')[0].rstrip()
            if text and not text[0].isspace():
                section = text.strip().rstrip(':')
            elif section == section_name and text.strip().startswith(name + ':'):
                value = text.split(':', 1)[1].strip()
    for o in overrides:
        if o.startswith(key + '='):
            value = o.split('=', 1)[1]
    return value


def loss_check(args, common, torch_cmd, run):
    """Train both sides for args.loss_steps steps per seed and compare the means over seeds of the mean loss of
    the last `window` steps (one step's loss is too noisy). Unless --loss-own-start, PyTorch starts where ours
    does: our initial weights and codebook (before.h5 of `vqvae_dist debug-step` with the same config and seed)
    and our synthetic images (batch.h5 of a debug-step whose batch is the whole set), so that only the sample
    order and the arithmetic differ. Both run as one process; common and torch_cmd name synthetic data of the
    config's shape. run(cmd, name, env, want_json) runs a command and
    keeps its output under the raw folder (returning that folder's path for want_json=None). Returns a dict for
    the report."""
    window = max(1, min(100, args.loss_steps // 10))
    count = int(config_value(args.config, args.overrides, 'data.synthetic_count', '2048'))
    raw_dir = run(None, None, None, None)
    ours, theirs = [], []
    for i in range(args.loss_seeds):
        seed = 1234 + i
        run_dir = tempfile.mkdtemp(prefix='vqvae-loss-')
        try:
            cmd = [args.bin, 'train', *common, f'train.steps={args.loss_steps}',
                   'log.every=1', 'checkpoint.every=0', 'train.eval_batches=1', f'checkpoint.dir={run_dir}',
                   f'train.seed={seed}']
            run(cmd, f'loss-ours-seed{seed}', {}, False)
            kept = os.path.join(raw_dir, f'loss-ours-seed{seed}.metrics.jsonl')
            shutil.copyfile(os.path.join(run_dir, 'metrics.jsonl'), kept)
            ours.append(losses(kept))

            start = []
            if not args.loss_own_start:
                init_dir, data_dir = os.path.join(run_dir, 'init'), os.path.join(run_dir, 'data')
                run([args.bin, 'debug-step', *common, f'train.seed={seed}', '--out', init_dir], f'loss-init-seed{seed}', {}, False)
                run([args.bin, 'debug-step', *common, f'train.seed={seed}',
                     f'train.batch_size={count}', '--out', data_dir], f'loss-data-seed{seed}', {}, False)
                start = ['--init-from', os.path.join(init_dir, 'before.h5'),
                         '--images', os.path.join(data_dir, 'batch.h5')]
            loss_log = os.path.join(raw_dir, f'loss-pytorch-seed{seed}.jsonl')
            run(torch_cmd[:2] + ['--steps', str(args.loss_steps), '--warmup', '0', '--loss-log', loss_log, *start]
                + torch_cmd[2:] + [f'train.seed={seed}'], f'loss-pytorch-seed{seed}', {}, True)
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
    return {'steps': args.loss_steps, 'window': window, 'ours': a, 'pytorch': b, 'rel': rel,
            'ok': rel <= args.loss_tolerance, 'tolerance': args.loss_tolerance, 'own_start': args.loss_own_start,
            'ours_seeds': tail_ours, 'pytorch_seeds': tail_theirs, 'ours_spread': spread(tail_ours),
            'pytorch_spread': spread(tail_theirs)}


def loss_report(loss, batch):
    """Markdown lines for the report."""
    def spread(x):
        return '-' if x is None else f'{100 * x:.1f}%'
    start = ('PyTorch from its own initial weights and look-alike synthetic data' if loss['own_start'] else
             'PyTorch from our initial weights and codebook and on our synthetic images; the sample order differs')
    return ['', f'Training loss after {loss["steps"]} steps, batch {batch}, one process each: the mean over the last '
                f'{loss["window"]} steps, averaged over {len(loss["ours_seeds"])} seed(s) ({start}):',
            f'- vqvae_dist (`train`): {loss["ours"]:.5f} (per seed {", ".join(f"{x:.5f}" for x in loss["ours_seeds"])}; '
            f'seed-to-seed spread {spread(loss["ours_spread"])})',
            f'- PyTorch eager: {loss["pytorch"]:.5f} (per seed {", ".join(f"{x:.5f}" for x in loss["pytorch_seeds"])}; '
            f'spread {spread(loss["pytorch_spread"])})',
            f'- difference {100 * loss["rel"]:.2f}% (tolerance {100 * loss["tolerance"]:.0f}%): '
            f'{"PASS" if loss["ok"] else "FAIL"}']
