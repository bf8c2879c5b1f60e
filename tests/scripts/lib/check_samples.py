"""check_samples.py PREFIX COUNT STEPS [--dropped=N] [--same-order=OTHER_PREFIX]

Checks the sample logs that VQ_TEST_LOG_SAMPLES=PREFIX makes every rank append to PREFIX.rank<R>
(one line per step: "epoch E step S id id ..."), possibly over several runs (a run and its resume
at another world size) appending to the same files. The ids of a step, taken rank by rank, are
that step's global batch; the global batches in step order make the epoch's sample order.

  - every step 0 .. STEPS-1 was trained exactly once (a resume continues, repeats and skips none),
    by ranks 0 .. W-1 of some world W, all with the same number of ids, in one epoch, epochs
    never going back;
  - epoch 0 is a permutation of 0 .. COUNT-1 (with --dropped=N: N ids are missing, no id twice:
    the remainder of the epoch dropped when a bigger global batch no longer fits);
  - no later epoch has an id twice; every id is in 0 .. COUNT-1; epoch 1 was reached;
  - --same-order=OTHER: for every epoch both logs have, one sample order is a prefix of the
    other (the data order depends only on the seed and the epoch, not on the world size); with
    --dropped=N, the N ids epoch 0 misses are the last N of OTHER's epoch 0 (OTHER trained it all).
Prints what it found; exits 1 on any violation.
"""
import glob
import re
import sys
from collections import defaultdict


def load(prefix):
    """{step: {rank: (epoch, [ids])}}, and the problems found while reading."""
    steps = defaultdict(dict)
    problems = []
    files = sorted(glob.glob(glob.escape(prefix) + ".rank*"))
    if not files:
        problems.append(f"no sample log {prefix}.rank*")
    for path in files:
        m = re.search(r"\.rank(\d+)$", path)
        if not m:
            continue
        rank = int(m.group(1))
        with open(path) as f:
            for n, line in enumerate(f, 1):
                fields = line.split()
                if len(fields) < 5 or fields[0] != "epoch" or fields[2] != "step":
                    problems.append(f"{path}:{n}: not 'epoch E step S ids...': {line.strip()!r}")
                    continue
                epoch, step, ids = int(fields[1]), int(fields[3]), [int(x) for x in fields[4:]]
                if rank in steps[step]:
                    problems.append(f"step {step} trained twice by rank {rank} ({path}:{n})")
                steps[step][rank] = (epoch, ids)
    return steps, problems


def epoch_orders(steps):
    """{epoch: [ids in training order]}, and the world size of every step."""
    orders = defaultdict(list)
    worlds = {}
    for step in sorted(steps):
        ranks = steps[step]
        worlds[step] = len(ranks)
        for rank in sorted(ranks):
            orders[ranks[rank][0]].extend(ranks[rank][1])
    return orders, worlds


def world_runs(worlds):
    """'steps 0-4: np=2, steps 5-13: np=1'"""
    parts = []
    for step in sorted(worlds):
        if parts and parts[-1][2] == worlds[step] and parts[-1][1] == step - 1:
            parts[-1][1] = step
        else:
            parts.append([step, step, worlds[step]])
    return ", ".join(f"steps {a}-{b}: np={w}" for a, b, w in parts)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    opts = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
    if len(args) != 3 or set(opts) - {"dropped", "same-order"}:
        sys.exit(__doc__)
    prefix, count, nsteps = args[0], int(args[1]), int(args[2])
    dropped = int(opts.get("dropped", 0))
    steps, problems = load(prefix)

    missing = [s for s in range(nsteps) if s not in steps]
    extra = sorted(s for s in steps if not 0 <= s < nsteps)
    if missing:
        problems.append(f"steps never trained: {missing}")
    if extra:
        problems.append(f"steps outside 0..{nsteps - 1}: {extra}")
    last_epoch = 0
    for step in sorted(steps):
        ranks = steps[step]
        if sorted(ranks) != list(range(len(ranks))):
            problems.append(f"step {step}: ranks {sorted(ranks)} are not 0..{len(ranks) - 1}")
        epochs = {e for e, _ in ranks.values()}
        sizes = {len(ids) for _, ids in ranks.values()}
        if len(epochs) != 1 or len(sizes) != 1:
            problems.append(f"step {step}: ranks disagree on the epoch {sorted(epochs)} or batch size {sorted(sizes)}")
        if min(epochs) < last_epoch:
            problems.append(f"step {step}: epoch {min(epochs)} after epoch {last_epoch}")
        last_epoch = max(last_epoch, max(epochs))

    orders, worlds = epoch_orders(steps)
    print(f"{prefix}: {len(steps)} steps ({world_runs(worlds)}); ids per epoch: "
          + ", ".join(f"epoch {e}: {len(o)}" for e, o in sorted(orders.items())))
    for epoch, order in sorted(orders.items()):
        bad = sorted({i for i in order if not 0 <= i < count})
        if bad:
            problems.append(f"epoch {epoch}: ids outside 0..{count - 1}: {bad[:10]}")
        seen = set()
        twice = sorted({i for i in order if i in seen or seen.add(i)})
        if twice:
            problems.append(f"epoch {epoch}: {len(twice)} id(s) trained twice, e.g. {twice[:10]}")
    epoch0 = orders.get(0, [])
    absent = sorted(set(range(count)) - set(epoch0))
    if len(absent) != dropped:
        problems.append(f"epoch 0: {len(absent)} of the {count} ids never trained (expected {dropped}), "
                        f"e.g. {absent[:10]}")
    else:
        what = "a permutation of" if dropped == 0 else "distinct ids from"
        if len(epoch0) == len(set(epoch0)):
            print(f"epoch 0: {len(epoch0)} ids, {what} 0..{count - 1}")
    if max(orders, default=0) < 1:
        problems.append("no step of epoch 1: epoch 0 did not complete")

    if "same-order" in opts:
        other_steps, other_problems = load(opts["same-order"])
        problems += other_problems
        other, _ = epoch_orders(other_steps)
        for epoch in sorted(set(orders) & set(other)):
            a, b = orders[epoch], other[epoch]
            n = min(len(a), len(b))
            if a[:n] != b[:n]:
                first = next(i for i in range(n) if a[i] != b[i])
                problems.append(f"epoch {epoch}: sample order differs from {opts['same-order']} at position "
                                f"{first}: {a[first]} vs {b[first]}")
            else:
                print(f"epoch {epoch}: the first {n} ids are in the same order as in {opts['same-order']}")
        if dropped:
            tail = sorted(other.get(0, [])[count - dropped:])
            if len(other.get(0, [])) != count or tail != absent:
                problems.append(f"epoch 0: the ids never trained {absent} are not the last {dropped} of "
                                f"{opts['same-order']}'s epoch 0 order {tail}")
            else:
                print(f"epoch 0: the {dropped} ids never trained are the last {dropped} of the epoch's order: {absent}")

    for p in problems:
        print(f"problem: {p}")
    print(f"check_samples {prefix}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    sys.exit(1 if problems else 0)


main()
