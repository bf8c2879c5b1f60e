"""compare_h5.py A B TOL [GROUP...]: compare every dataset under GROUP (default /model) of two
HDF5 files. Prints the worst relative error max|a-b| / max(max|b|, 1e-12) per dataset; exits 1
if a dataset is missing, has another shape, or exceeds TOL (TOL 0 = bitwise equal)."""
import sys

import h5py
import numpy as np


def datasets(group, prefix=""):
    for name, item in group.items():
        if isinstance(item, h5py.Dataset):
            yield prefix + name, item[()]
        else:
            yield from datasets(item, prefix + name + "/")


def main():
    path_a, path_b, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
    groups = sys.argv[4:] or ["model"]
    bad = 0
    worst = 0.0
    with h5py.File(path_a, "r") as fa, h5py.File(path_b, "r") as fb:
        for g in groups:
            a = dict(datasets(fa[g]))
            b = dict(datasets(fb[g]))
            if a.keys() != b.keys():
                print(f"{g}: different datasets: {sorted(a.keys() ^ b.keys())}")
                bad += 1
                continue
            for key in sorted(a):
                x, y = np.asarray(a[key], np.float64), np.asarray(b[key], np.float64)
                if x.shape != y.shape:
                    print(f"{g}/{key}: shape {x.shape} vs {y.shape}")
                    bad += 1
                    continue
                if tol == 0:
                    same = np.array_equal(np.asarray(a[key]).view(np.uint8), np.asarray(b[key]).view(np.uint8))
                    rel = 0.0 if same else float("inf")
                else:
                    rel = float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-12)) if x.size else 0.0
                worst = max(worst, rel)
                if not rel <= tol:
                    print(f"{g}/{key}: relative error {rel:.3g} > {tol:g}")
                    bad += 1
    print(f"compare {path_a} {path_b}: worst relative error {worst:.3g} (tolerance {tol:g}), {bad} bad")
    sys.exit(1 if bad else 0)


main()
