"""compare_f32.py A B TOL [ROW]: compare two raw little-endian float32 files (e.g. the codebook
dumps of VQ_TEST_DUMP_CODEBOOK) element by element. Prints the worst relative error
max|a-b| / max|b|, the relative L2 error ||a-b|| / ||b|| and, with ROW (the row length, D for a
K x D codebook), how many rows differ beyond TOL. Exits 1 when the sizes differ or the worst
relative error exceeds TOL (TOL 0 = bitwise equal).
"""
import sys

import numpy as np


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    a = np.fromfile(sys.argv[1], dtype="<f4")
    b = np.fromfile(sys.argv[2], dtype="<f4")
    tol = float(sys.argv[3])
    row = int(sys.argv[4]) if len(sys.argv) == 5 else 0
    if a.size != b.size or a.size == 0 or (row and a.size % row):
        print(f"compare_f32: {sys.argv[1]} has {a.size} floats, {sys.argv[2]} {b.size} (row {row})")
        sys.exit(1)
    x, y = a.astype(np.float64), b.astype(np.float64)
    scale = max(float(np.max(np.abs(y))), 1e-30)
    rel = float(np.max(np.abs(x - y)) / scale)
    l2 = float(np.linalg.norm(x - y) / max(float(np.linalg.norm(y)), 1e-30))
    bitwise = np.array_equal(a.view(np.uint32), b.view(np.uint32))
    rows = ""
    if row:
        beyond = np.any(np.abs(x - y).reshape(-1, row) > tol * scale, axis=1)
        rows = f", {int(beyond.sum())} of {beyond.size} rows beyond the tolerance"
    print(f"compare_f32 {sys.argv[1]} {sys.argv[2]}: worst relative error {rel:.3g}, relative L2 {l2:.3g}, "
          f"{'bitwise equal' if bitwise else f'{int(np.sum(a != b))} of {a.size} floats differ'}{rows} "
          f"(tolerance {tol:g})")
    ok = bitwise if tol == 0 else rel <= tol
    sys.exit(0 if ok else 1)


main()
