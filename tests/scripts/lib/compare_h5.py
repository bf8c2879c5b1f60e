"""compare_h5.py [OPTIONS] A B TOL [GROUP...]: compare every dataset under GROUP (default /model) of two
HDF5 files. Prints the worst relative error max|a-b| / max(max|b|, 1e-12) per dataset; exits 1
if a dataset is missing, has another shape, or exceeds TOL (TOL 0 = bitwise equal).

Options (anywhere on the command line; without them the behaviour is the above):
  --l2=TOL       also the relative L2 error of all compared datasets together,
                 ||a-b|| / ||b|| over the concatenation of every value; exits 1 if above TOL
  --match=REGEX  compare only the datasets whose path (GROUP/key) matches REGEX (re.search)
  --outliers=N   up to N elements in all (over every compared dataset) may exceed their dataset's
                 TOL (|a-b| > TOL x max|b|); each is listed, and they are left out of the worst
                 relative error and of the --l2 measure (which is also printed with them). For
                 isolated discrete events (a ReLU or a code assignment flipped by rounding) after
                 many steps; a real error moves far more elements. TOL 0 ignores it.
  --verbose      print the measured error of every dataset, not only the failing ones
"""
import re
import sys

import h5py
import numpy as np


def datasets(group, prefix=""):
    for name, item in group.items():
        if isinstance(item, h5py.Dataset):
            yield prefix + name, item[()]
        else:
            yield from datasets(item, prefix + name + "/")


def parse_args(argv):
    options = {"l2": None, "match": None, "verbose": False, "outliers": 0}
    positional = []
    for arg in argv:
        if arg.startswith("--l2="):
            options["l2"] = float(arg[len("--l2="):])
        elif arg.startswith("--match="):
            options["match"] = re.compile(arg[len("--match="):])
        elif arg.startswith("--outliers="):
            options["outliers"] = int(arg[len("--outliers="):])
        elif arg == "--verbose":
            options["verbose"] = True
        elif arg.startswith("--"):
            sys.exit(f"compare_h5.py: unknown option {arg}\n{__doc__}")
        else:
            positional.append(arg)
    if len(positional) < 3:
        sys.exit(__doc__)
    return options, positional


def main():
    options, positional = parse_args(sys.argv[1:])
    path_a, path_b, tol = positional[0], positional[1], float(positional[2])
    groups = positional[3:] or ["model"]
    match = options["match"]
    verbose = options["verbose"]
    bad = 0
    pairs = []   # (name, a, b) of every compared dataset, as stored
    with h5py.File(path_a, "r") as fa, h5py.File(path_b, "r") as fb:
        for g in groups:
            a = dict(datasets(fa[g]))
            b = dict(datasets(fb[g]))
            if match is not None:
                a = {k: v for k, v in a.items() if match.search(f"{g}/{k}")}
                b = {k: v for k, v in b.items() if match.search(f"{g}/{k}")}
            if a.keys() != b.keys():
                print(f"{g}: different datasets: {sorted(a.keys() ^ b.keys())}")
                bad += 1
                continue
            for key in sorted(a):
                if np.shape(a[key]) != np.shape(b[key]):
                    print(f"{g}/{key}: shape {np.shape(a[key])} vs {np.shape(b[key])}")
                    bad += 1
                    continue
                pairs.append((f"{g}/{key}", np.asarray(a[key]), np.asarray(b[key])))
    if not pairs:   # nothing compared proves nothing
        print(f"no dataset to compare in {groups}" + (f" matching --match={match.pattern}" if match else ""))
        bad += 1

    # --outliers: the elements beyond their dataset's tolerance, if there are few enough of them.
    excluded = {}
    if tol > 0 and options["outliers"] > 0:
        beyond = {}
        for name, a, b in pairs:
            x, y = a.astype(np.float64), b.astype(np.float64)
            scale = max(float(np.max(np.abs(y))), 1e-12) if y.size else 1.0
            mask = np.abs(x - y) > tol * scale
            if mask.any():
                beyond[name] = (mask, scale)
        total = sum(int(m.sum()) for m, _ in beyond.values())
        if total > options["outliers"]:
            print(f"{total} elements exceed the tolerance, more than --outliers={options['outliers']} allows: "
                  "none is excused")
        elif total == 0:
            print(f"outliers: none (at most {options['outliers']} allowed)")
        else:
            print(f"outliers: {total} element(s) beyond the tolerance (at most {options['outliers']} allowed), "
                  "excused and left out of the measures below")
            for name, a, b in pairs:
                if name not in beyond:
                    continue
                mask, scale = beyond[name]
                excluded[name] = mask
                idx = np.argwhere(mask)
                errs = np.abs(a.astype(np.float64) - b.astype(np.float64))[mask] / scale
                print(f"  {name}: {len(idx)} element(s), relative error up to {errs.max():.3g}; first at index "
                      f"{tuple(int(i) for i in idx[0])}: {a[tuple(idx[0])]:.9g} vs {b[tuple(idx[0])]:.9g}")

    worst = 0.0
    worst_key = ""
    diff_sq = diff_sq_all = 0.0   # for --l2: sums over the compared values, in float64
    ref_sq = 0.0
    for name, a, b in pairs:
        x, y = a.astype(np.float64), b.astype(np.float64)
        keep = ~excluded[name] if name in excluded else np.ones(x.shape, bool)
        if tol == 0:
            same = np.array_equal(a.view(np.uint8), b.view(np.uint8))
            rel = 0.0 if same else float("inf")
        else:
            rel = float(np.max(np.abs(x - y)[keep]) / max(np.max(np.abs(y)), 1e-12)) if keep.any() else 0.0
        diff_sq_all += float(np.sum((x - y) ** 2))
        diff_sq += float(np.sum(((x - y) ** 2)[keep]))
        ref_sq += float(np.sum(y ** 2))
        if rel > worst or not worst_key:
            worst, worst_key = rel, name
        if not rel <= tol:
            print(f"{name}: relative error {rel:.3g} > {tol:g}")
            bad += 1
        elif verbose:
            print(f"{name}: relative error {rel:.3g}")
    if options["l2"] is not None:
        norm = max(np.sqrt(ref_sq), 1e-30)
        l2 = float(np.sqrt(diff_sq) / norm)
        note = ""
        if excluded:
            note = f" without the outliers ({float(np.sqrt(diff_sq_all) / norm):.3g} with them)"
        print(f"compare {path_a} {path_b}: relative L2 error of all {len(pairs)} datasets together {l2:.3g}{note} "
              f"(tolerance {options['l2']:g})")
        if not l2 <= options["l2"]:
            print(f"relative L2 error {l2:.3g} > {options['l2']:g}")
            bad += 1
    if verbose:
        print(f"worst dataset: {worst_key} ({worst:.3g})")
    print(f"compare {path_a} {path_b}: worst relative error {worst:.3g} (tolerance {tol:g}), {bad} bad")
    sys.exit(1 if bad else 0)


main()
