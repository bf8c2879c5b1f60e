"""ckpt_edit.py: damage or edit a vqvae_dist checkpoint for the script tests.

  ckpt_edit.py reseal FILE                 rewrite the whole-file checksum header (docs/CHECKPOINT.md)
  ckpt_edit.py unseal FILE                 zero the header, as in a file from before the checksums
  ckpt_edit.py flip-heap FILE              flip a byte in the global heap (string attributes), no reseal
  ckpt_edit.py flip-text FILE OLD NEW      replace bytes OLD by NEW (same length) in place, no reseal
  ckpt_edit.py drop-optim FILE             delete /optim (h5py), reseal
  ckpt_edit.py poison-optim FILE           make one exp_avg_sq value negative (h5py), reseal
  ckpt_edit.py newer-config FILE VERSION   add a key this program does not know to the stored config and
                                           set program_version (h5py), reseal
Only `reseal`, `unseal`, `flip-heap` and `flip-text` work without h5py.
"""
import sys
import zlib

HEADER = 512


def reseal(path):
    data = bytearray(open(path, "rb").read())
    head = f"vqvae_dist checkpoint\ncrc32 {zlib.crc32(data[HEADER:]):08x}\nbytes {len(data)}\n".encode()
    data[:HEADER] = head + bytes(HEADER - len(head))
    open(path, "wb").write(data)


def flip_at(path, offset):
    data = bytearray(open(path, "rb").read())
    data[offset] ^= 0x10
    open(path, "wb").write(data)


def main(cmd, path, *args):
    if cmd == "reseal":
        reseal(path)
    elif cmd == "unseal":
        data = bytearray(open(path, "rb").read())
        data[:HEADER] = bytes(HEADER)
        open(path, "wb").write(data)
    elif cmd == "flip-heap":
        at = open(path, "rb").read().find(b"GCOL")
        if at < 0:
            sys.exit(f"{path}: no global heap collection (GCOL) found")
        flip_at(path, at + 10)
    elif cmd == "flip-text":
        data = open(path, "rb").read()
        old, new = args[0].encode(), args[1].encode()
        if len(old) != len(new) or old not in data:
            sys.exit(f"{path}: {args[0]!r} not found, or not as long as {args[1]!r}")
        open(path, "wb").write(data.replace(old, new, 1))
    else:
        import h5py
        with h5py.File(path, "r+") as f:
            if cmd == "drop-optim":
                del f["optim"]
            elif cmd == "poison-optim":
                key = next(iter(f["optim"]))
                d = f["optim"][key]["exp_avg_sq"]
                x = d[()]
                x.flat[0] = -1.0
                d[...] = x
            elif cmd == "newer-config":
                f.attrs["config"] = f.attrs["config"].replace("train:\n", "train:\n  new_option: 3\n", 1)
                f.attrs["program_version"] = args[0]
            else:
                sys.exit(f"unknown command {cmd!r}\n{__doc__}")
        reseal(path)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
