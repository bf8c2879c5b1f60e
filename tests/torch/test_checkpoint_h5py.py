"""test_checkpoint_h5py.py: a checkpoint written by the C code, read back with h5py (and torch).

The C test binary writes a deterministic sample checkpoint when VQ_CKPT_SAMPLE_OUT is set (see
tests/unit/test_io_checkpoint.c, write_sample); here we check what a Python user sees: the root
attributes and their types, dataset shapes, dtypes, chunking and checksums, every value (the sample
values are exact in float32, so they are recomputed here), the whole-file checksum header as
documented, that h5py itself refuses a flipped byte, and that the h5py example in
docs/CHECKPOINT.md gives a correct PyTorch state_dict.
"""
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zlib

import h5py
import numpy as np

# The sample registry, in registration order (k in the value formula): key, shape, trainable.
ENTRIES = [
    ("_encoder._conv_1.weight", (8, 3, 4, 4), True),
    ("_vq_vae._ema_cluster_size", (16,), False),
    ("_encoder._conv_1.bias", (8,), True),
    ("_vq_vae._ema_w", (16, 8), False),
    ("_vq_vae._embedding.weight", (16, 8), True),
    ("_decoder._residual_stack._layers.0._block.1.weight", (2, 3, 5), True),
]
CONFIG = "model:\n  arch: resnet\n  num_hiddens: 8\n# caf\u00e9 (UTF-8)\ntrain:\n  lr: 0.0003\n"

passed = 0
failed = 0
skipped = 0


def expect(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {what}", file=sys.stderr)


def sample_value(k, shape):
    """((7 i + k) mod 251 - 125) / 64 for flat index i: exact in float32, as in the C test."""
    i = np.arange(int(np.prod(shape)), dtype=np.int64)
    return (((7 * i + k) % 251 - 125).astype(np.float32) / np.float32(64)).reshape(shape)


def check_attrs(f):
    a = f.attrs
    expect(isinstance(a["format"], str) and a["format"] == "vqvae_dist", f"format {a['format']!r} (want str)")
    expect(a["version"] == 1 and a["version"].dtype == np.int64, f"version {a['version']!r}")
    ints = {"step": 4242, "epoch": 7, "epoch_offset": 96, "samples_seen": 5000000000, "world_size": 2}
    for name, want in ints.items():
        expect(a[name] == want and a[name].dtype == np.int64, f"{name} {a[name]!r}, want int64 {want}")
    expect(a["seed"] == 18446744073709551557 and a["seed"].dtype == np.uint64, f"seed {a['seed']!r}")
    for name, want in {"arch": "resnet", "quantizer": "ema", "config": CONFIG}.items():
        expect(isinstance(a[name], str) and a[name] == want, f"{name} {a[name]!r}")
    created = a["created"]
    ok = isinstance(created, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created) is not None
    if ok:
        when = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
        ok = abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) < 3600
    expect(ok, f"created {created!r} is not a recent ISO 8601 UTC time")
    expect(isinstance(a["program_version"], str) and a["program_version"] != "", "program_version")
    o = f["optim"].attrs
    expect(o["step"] == 4242, f"/optim step {o['step']!r}")
    for name, want in {"lr": 3e-4, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01}.items():
        expect(np.float32(o[name]) == np.float32(want), f"/optim {name} {o[name]!r}")
    # Superblock version >= 2 means checksummed metadata (libver v110).
    expect(f.id.get_create_plist().get_version()[0] >= 2, "superblock version < 2")
    expect(a["data_variance"] == 0.0631 and a["data_variance"].dtype == np.float64, f"data_variance {a['data_variance']!r}")
    shape = tuple(int(a[k]) for k in ("image_channels", "image_height", "image_width"))
    expect(shape == (3, 32, 28) and a["image_width"].dtype == np.int64, f"image shape {shape}")


def check_header(path):
    """The whole-file checksum header of docs/CHECKPOINT.md, checked with nothing but zlib."""
    data = open(path, "rb").read()
    header, body = data[:512], data[512:]
    want = f"vqvae_dist checkpoint\ncrc32 {zlib.crc32(body):08x}\nbytes {len(data)}\n".encode()
    expect(header == want + bytes(512 - len(want)), f"header {header[:64]!r} is not {want!r} + NULs")
    with h5py.File(path, "r") as f:
        expect(f.userblock_size == 512, f"user block {f.userblock_size}")


def check_datasets(f):
    expect(set(f.keys()) == {"model", "optim"}, f"top level {sorted(f.keys())}")
    expect(set(f["model"].keys()) == {k for k, _, _ in ENTRIES}, f"/model keys {sorted(f['model'].keys())}")
    expect(set(f["optim"].keys()) == {k for k, _, t in ENTRIES if t}, f"/optim keys {sorted(f['optim'].keys())}")
    for k, (key, shape, trainable) in enumerate(ENTRIES):
        d = f["model"][key]
        expect(d.shape == shape and d.dtype == np.dtype("<f4"), f"{key}: {d.shape} {d.dtype}")
        expect(d.chunks == shape and d.fletcher32, f"{key}: chunks {d.chunks}, fletcher32 {d.fletcher32}")
        x = sample_value(k, shape)
        expect(np.array_equal(d[()], x), f"{key}: values differ")
        if trainable:
            g = f["optim"][key]
            expect(set(g.keys()) == {"exp_avg", "exp_avg_sq"}, f"/optim/{key}: {sorted(g.keys())}")
            expect(np.array_equal(g["exp_avg"][()], x / np.float32(2)), f"/optim/{key}/exp_avg differs")
            expect(np.array_equal(g["exp_avg_sq"][()], x * x), f"/optim/{key}/exp_avg_sq differs")
            expect(g["exp_avg_sq"].fletcher32, f"/optim/{key}/exp_avg_sq has no checksum")


def check_flipped_byte(path, tmp):
    """h5py verifies the fletcher32 checksum too: a flipped data byte makes the read fail."""
    bad = os.path.join(tmp, "flipped.h5")
    shutil.copy(path, bad)
    with h5py.File(bad, "r") as f:
        info = f["model/_vq_vae._ema_w"].id.get_chunk_info(0)
        base = f.userblock_size   # HDF5's addresses count from the end of the user block
    offset = base + info.byte_offset
    with open(bad, "r+b") as fh:
        fh.seek(offset)
        expect(fh.read(16) == sample_value(3, (16, 8)).tobytes()[:16], "chunk bytes are not where HDF5 says")
        fh.seek(offset + 37)
        b = fh.read(1)
        fh.seek(offset + 37)
        fh.write(bytes([b[0] ^ 0x10]))
    with h5py.File(bad, "r") as f:
        try:
            f["model/_vq_vae._ema_w"][()]
            expect(False, "h5py read a flipped byte without error")
        except OSError as e:
            expect("Fletcher32" in str(e) or "checksum" in str(e).lower(), f"unexpected error text: {e}")
        expect(np.array_equal(f["model/_encoder._conv_1.bias"][()], sample_value(2, (8,))), "other datasets unreadable")


def check_doc_example(path):
    """Run the ```python block of docs/CHECKPOINT.md that defines load_vqvae_dist."""
    global skipped
    try:
        import torch
    except ImportError:
        skipped += 1
        print("SKIP: the docs/CHECKPOINT.md example: torch is not importable here (apt-get install python3-torch)")
        return
    src_dir = os.environ.get("VQ_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    with open(os.path.join(src_dir, "docs", "CHECKPOINT.md"), encoding="utf-8") as fh:
        blocks = re.findall(r"```python\n(.*?)```", fh.read(), re.S)
    code = [b for b in blocks if "def load_vqvae_dist" in b]
    expect(len(code) == 1, "docs/CHECKPOINT.md has no python block defining load_vqvae_dist")
    if not code:
        return
    expect(len(code[0].strip().splitlines()) <= 16, "the doc example grew beyond a short snippet")
    ns = {}
    exec(compile(code[0], "docs/CHECKPOINT.md", "exec"), ns)
    state_dict, config, step = ns["load_vqvae_dist"](path)
    expect(list(state_dict.keys()) == [k for k, _, _ in ENTRIES] or set(state_dict) == {k for k, _, _ in ENTRIES},
           f"state_dict keys {list(state_dict)}")
    for k, (key, shape, _) in enumerate(ENTRIES):
        t = state_dict.get(key)
        ok = t is not None and t.dtype == torch.float32 and tuple(t.shape) == shape
        expect(ok and torch.equal(t, torch.from_numpy(sample_value(k, shape))), f"state_dict[{key!r}]")
    expect(config == CONFIG and step == 4242, f"doc example config/step: {step}")


def main():
    build = os.environ.get("VQ_BUILD_DIR")
    if not build:
        print("VQ_BUILD_DIR is not set: run this through ctest (or set it to the CMake build folder)")
        return 1
    binary = os.path.join(build, "test_io_checkpoint")
    if not os.access(binary, os.X_OK):
        print(f"{binary} is missing: build it first (cmake --build {build} --target test_io_checkpoint)")
        return 1
    tmp = tempfile.mkdtemp(prefix="test_checkpoint_h5py.")
    try:
        path = os.path.join(tmp, "sample.h5")
        run = subprocess.run([binary], env=dict(os.environ, VQ_CKPT_SAMPLE_OUT=path), capture_output=True, text=True)
        expect(run.returncode == 0 and os.path.exists(path),
               f"{binary} failed to write the sample (rc {run.returncode}):\n{run.stdout}{run.stderr}")
        if os.path.exists(path):
            check_header(path)
            with h5py.File(path, "r") as f:
                check_attrs(f)
                check_datasets(f)
            check_flipped_byte(path, tmp)
            check_doc_example(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"test_checkpoint_h5py: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
