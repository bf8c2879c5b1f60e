#!/usr/bin/env python3
"""Where the CPU step's time goes, primitive by primitive, from oneDNN's own clock.

    tools/onednn_profile.py [--steps N] [--markdown] -- build/vqvae_dist bench train.threads=1 ...
    tools/onednn_profile.py --log verbose.txt       # a saved DNNL_VERBOSE=1 log instead

It runs the command with DNNL_VERBOSE=1 (oneDNN then prints one "exec" line per primitive call
with its wall time in ms), sums the time per (primitive, direction, problem), and for every
convolution gives the GFLOP/s of one call (2 * mb * ic * oc * oh * ow * kh * kw multiply-adds
counted as 2 flops, the same count for forward, backward-data and backward-weights). The last
line compares the primitives' total with the step count given by --steps (the warm-up steps of
`bench` run primitives too: pass --steps as warm-up + timed steps), so you can see how much of a
step is oneDNN and how much is everything else. Why: perf only sees anonymous [JIT] code, and
bench_cpu_conv times a layer alone, not inside the training step.
"""
import argparse
import collections
import os
import re
import subprocess
import sys

DIMS = re.compile(r"([a-z]+)(\d+)")


def conv_flops(problem):
    """2 * mb * ic * oc * oh * ow * kh * kw from oneDNN's problem string, None if not a conv."""
    d = {}
    for part in problem.split("_"):
        for key, val in DIMS.findall(part):
            d.setdefault(key, int(val))
    need = ("mb", "ic", "oc", "oh", "ow", "kh", "kw")
    if not all(k in d for k in need):
        return None
    g = d.get("g", 1)
    return 2.0 * d["mb"] * d["ic"] * d["oc"] * d["oh"] * d["ow"] * d["kh"] * d["kw"] / g


def parse(lines):
    """{(kind, impl, direction, problem): [total_ms, calls]} from the exec lines."""
    acc = collections.defaultdict(lambda: [0.0, 0])
    for line in lines:
        f = line.rstrip("\n").split(",")
        if len(f) < 6 or f[1] != "exec" or not f[0].endswith("_verbose"):
            continue
        try:
            ms = float(f[-1])
        except ValueError:
            continue
        key = (f[3], f[4], f[5], f[-2])
        acc[key][0] += ms
        acc[key][1] += 1
    return acc


def report(acc, steps, markdown):
    total = sum(v[0] for v in acc.values())
    if not acc:
        sys.exit("onednn_profile: no exec lines (is the build using oneDNN, train.cpu_conv=onednn?)")
    rows = sorted(acc.items(), key=lambda kv: -kv[1][0])
    if markdown:
        print("| primitive | direction | problem | ms per step | calls per step | ms per call | GFLOP/s per call |")
        print("|---|---|---|---:|---:|---:|---:|")
    for (kind, impl, direction, problem), (ms, calls) in rows:
        flops = conv_flops(problem) if kind == "convolution" else None
        gflops = "%.1f" % (flops / (ms / calls) / 1e6) if flops else "-"
        per_step = ms / steps if steps else ms
        n = calls / steps if steps else calls
        if markdown:
            print("| %s %s | %s | %s | %.2f | %.1f | %.3f | %s |" % (kind, impl, direction, problem, per_step, n,
                                                                   ms / calls, gflops))
        else:
            print("%9.2f ms %6.1f calls %8.3f ms/call %6s GFLOP/s  %s %s %s %s" % (per_step, n, ms / calls, gflops,
                                                                                 kind, impl, direction, problem))
    by_kind = collections.defaultdict(float)
    for (kind, _, _, _), (ms, _) in acc.items():
        by_kind[kind] += ms
    div = steps if steps else 1
    print("")
    print("per %s: %s; all primitives %.1f ms" % ("step" if steps else "run",
          ", ".join("%s %.1f ms" % (k, v / div) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])),
          total / div))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=0, help="steps the command runs (warm-up included): per-step figures")
    ap.add_argument("--markdown", action="store_true", help="a markdown table")
    ap.add_argument("--log", help="parse a saved DNNL_VERBOSE=1 log instead of running a command")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to run")
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if a.log:
        with open(a.log) as f:
            acc = parse(f)
    elif cmd:
        env = dict(os.environ, DNNL_VERBOSE="1", ONEDNN_VERBOSE="1")
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            sys.exit("onednn_profile: %s exited with %d:\n%s" % (cmd[0], p.returncode, p.stdout[-2000:]))
        acc = parse(p.stdout.splitlines())
    else:
        ap.error("give a command after -- or --log FILE")
    report(acc, a.steps, a.markdown)


if __name__ == "__main__":
    main()
