"""compare_curves.py CPU_METRICS GPU_METRICS [options]: two training runs of the same config, seed and data
(metrics.jsonl, every step logged), one per backend, learn the same way. Training is chaotic: a difference of
fp32 rounding grows step by step, so per step only the first steps are compared tightly; after that the mean
nmse over the second half and the final test nmse:
  - every step 1..N logged by both (N: --steps=N, default 200; cut to the last step the CPU run reached when
    it was stopped early, at least MIN_STEPS; the cut is printed);
  - loss and nmse per step for steps 1..E (--early=E, default 10) within --early-tol (default 2e-3),
    vq_loss within 10x that;
  - mean nmse over steps N/2+1..N within --late-tol (default 0.15);
  - test nmse at the end within --eval-tol (default 0.25) (an eval line in both; with --require-eval a
    missing one fails, without it, or when N was cut, the check is skipped and says so);
  - both learn: mean nmse over the last quarter below 0.8 x step 1's.
The defaults are the smoke config's (tests/scripts/test_gpu_train.sh's header has the measurements);
tools/gpu_check.sh passes the CIFAR model's. Prints one line per check and a 'summary:' line; exit 1 on a
failure."""
import json
import sys

LEARN, MIN_STEPS = 0.8, 100
OPTIONS = {'steps': 200, 'early': 10, 'early-tol': 2e-3, 'late-tol': 0.15, 'eval-tol': 0.25}


def load(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    return {r['step']: r for r in rows if r['kind'] == 'train'}, [r for r in rows if r['kind'] == 'eval']


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def mean(run, key, lo, hi):
    return sum(run[s][key] for s in range(lo, hi + 1)) / (hi - lo + 1)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    opt = dict(OPTIONS)
    for a in sys.argv[1:]:
        key, _, value = a[2:].partition('=')
        if a.startswith('--') and key in opt:
            opt[key] = type(opt[key])(float(value)) if isinstance(opt[key], int) else float(value)
        elif a.startswith('--') and a != '--require-eval':
            sys.exit(f'compare_curves.py: unknown option {a}\n{__doc__}')
    if len(args) != 2:
        sys.exit(__doc__)
    steps, early_n, early_tol = opt['steps'], opt['early'], opt['early-tol']
    require_eval = '--require-eval' in sys.argv
    (c, ce), (g, ge) = load(args[0]), load(args[1])
    failed = skipped = 0

    def check(name, ok, detail):
        nonlocal failed
        failed += not ok
        print(f"{'ok' if ok else 'FAIL'}: {name} ({detail})")

    reached = max((s for s in c if all(t in c for t in range(1, s + 1))), default=0)
    if reached < steps:
        print(f'note: the CPU run reached step {reached} of {steps}: comparing steps 1..{reached}')
        if reached < MIN_STEPS:
            check(f'the CPU run reached at least step {MIN_STEPS}', False, f'it stopped at step {reached}')
            return 1
        steps = reached
    missing = [s for s in range(1, steps + 1) if s not in c or s not in g]
    check(f'every step 1..{steps} logged by both', not missing, f'missing {missing[:5]}')
    if missing:
        return 1
    bad = [s for s in range(1, steps + 1) for r in (c[s], g[s]) if not all(r[k] == r[k] for k in ('loss', 'nmse'))]
    check('every logged loss and nmse is a number', not bad, f'NaN at steps {bad[:5]}')
    for key, tol in (('loss', early_tol), ('nmse', early_tol), ('vq_loss', 10 * early_tol)):
        errs = [rel(g[s][key], c[s][key]) for s in range(1, early_n + 1)]
        check(f'{key}, steps 1..{early_n}, per step', max(errs) <= tol,
              f'worst rel diff {max(errs):.2e} at step {errs.index(max(errs)) + 1}, tolerance {tol:g}')
    lo = steps // 2 + 1
    late_c, late_g = mean(c, 'nmse', lo, steps), mean(g, 'nmse', lo, steps)
    check(f'mean nmse over steps {lo}..{steps}', rel(late_g, late_c) <= opt['late-tol'],
          f"cpu {late_c:.4f}, gpu {late_g:.4f}, rel diff {rel(late_g, late_c):.3f}, tolerance {opt['late-tol']}")
    if ce and ge and ce[-1]['step'] == ge[-1]['step'] == steps:
        check('test nmse at the end', rel(ge[-1]['nmse'], ce[-1]['nmse']) <= opt['eval-tol'],
              f"cpu {ce[-1]['nmse']:.4f}, gpu {ge[-1]['nmse']:.4f}, tolerance {opt['eval-tol']}")
    elif require_eval:
        check('test nmse at the end', False, f'no eval line at step {steps} in both metrics.jsonl')
    else:
        skipped += 1
        print(f'SKIP: test nmse at the end: no eval line at step {steps} in both runs')
    quarter = steps - steps // 4 + 1
    for name, run in (('cpu', c), ('gpu', g)):
        first, last = run[1]['nmse'], mean(run, 'nmse', quarter, steps)
        check(f'{name} learns: mean nmse over steps {quarter}..{steps} < {LEARN} x step 1', last < LEARN * first,
              f'{first:.4f} -> {last:.4f}')
    early = max(rel(g[s]['loss'], c[s]['loss']) for s in range(1, early_n + 1))
    print(f'summary: steps 1..{steps}; early loss rel diff {early:.2e}; mean nmse over {lo}..{steps} cpu '
          f'{late_c:.4f} gpu {late_g:.4f}; test nmse cpu {ce[-1]["nmse"] if ce else float("nan"):.4f} '
          f'gpu {ge[-1]["nmse"] if ge else float("nan"):.4f}; {failed} failed, {skipped} skipped')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
