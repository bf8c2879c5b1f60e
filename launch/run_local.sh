#!/usr/bin/env bash
# run_local.sh: run a program (vqvae_dist) with NP ranks on this machine under mpirun.
#
#   launch/run_local.sh NP -- vqvae_dist train --config configs/cifar.yaml [key=value ...]
#   VQ_MPIRUN_ARGS="--hostfile hosts" launch/run_local.sh 16 -- vqvae_dist train ...   (extra mpirun flags)
#
# Stopping: SIGTERM, SIGINT (Ctrl-C), SIGHUP or SIGUSR1 to this script reach the ranks as SIGUSR1; the
# trainer then agrees on a stop at the next step, writes a checkpoint and every rank exits with
# 75 (resume with --resume auto). We convert to SIGUSR1 because mpirun answers SIGTERM/SIGINT by
# killing the ranks within a second, with no time to save, but forwards SIGUSR1 untouched. A
# second SIGTERM/SIGINT/SIGHUP kills the job at once. The exit code is mpirun's (the ranks' code).
#
# Threads: the ranks inherit this environment. libgomp's default wait policy (spin, then sleep) is
# the right one when the cores are the job's (a dedicated node; Slurm's usual case). On a machine
# shared with other work, GOMP_SPINCOUNT=1000 launch/run_local.sh ... avoids the 2-5x collapse of
# multi-threaded ranks when another process takes a core; on an idle machine it costs 20-40%
# (docs/BENCHMARKS.md, "On an idle machine"), so it is not set here.
set -u

usage() {
    echo "usage: launch/run_local.sh NP -- PROGRAM [ARGS...]" >&2
    echo "  e.g. launch/run_local.sh 2 -- build/vqvae_dist train --config configs/cifar.yaml" >&2
    exit 2
}
[ $# -ge 3 ] || usage
np=$1
shift
case "$np" in '' | *[!0-9]* | 0) echo "run_local.sh: NP must be a positive integer, got '$np'" >&2; usage ;; esac
[ "$1" = "--" ] || usage
shift

mpirun_bin=${VQ_MPIEXEC:-mpirun}
flags=()
# Open MPI refuses to run as root without this (containers); never added for normal users.
if [ "$(id -u)" = 0 ]; then flags+=(--allow-run-as-root); fi
# No binding: Open MPI's default binds each rank to one core when np <= 2, which would squeeze a
# rank's OpenBLAS threads (the trainer gives each rank cores/ranks threads) onto a single core.
# The kernel scheduler spreads them well on one node; use VQ_MPIRUN_ARGS for explicit binding
# (e.g. "--map-by numa --bind-to numa" on multi-socket GPU nodes).
flags+=(--bind-to none)
# More ranks than cores works (tests do it) but is slow: say so rather than fail.
cores=$(nproc 2>/dev/null || echo 1)
if [ "$np" -gt "$cores" ]; then
    echo "run_local.sh: note: $np ranks on $cores cores (oversubscribed: correct but slow)" >&2
    flags+=(--oversubscribe)
fi
# Extra flags (hostfile, binding, MCA parameters), split on spaces on purpose.
# shellcheck disable=SC2206
extra=(${VQ_MPIRUN_ARGS:-})

# Job control on: mpirun runs in its own process group, so a Ctrl-C in the terminal reaches this
# script only (mpirun would kill the ranks on SIGINT); we then pass it on as SIGUSR1.
set -m
"$mpirun_bin" "${flags[@]}" "${extra[@]}" -np "$np" "$@" &
pid=$!

stops=0
on_stop() {
    stops=$((stops + 1))
    if [ "$stops" -eq 1 ]; then
        echo "run_local.sh: stop requested: the ranks will checkpoint and exit 75 (send again to kill now)" >&2
        kill -USR1 "$pid" 2>/dev/null
    else
        echo "run_local.sh: killing the job" >&2
        kill -TERM "$pid" 2>/dev/null
    fi
}
trap on_stop TERM INT HUP
trap 'kill -USR1 "$pid" 2>/dev/null' USR1

# `wait` returns early (status > 128) whenever a trapped signal arrives: keep waiting while
# mpirun runs, so the script's exit code is mpirun's.
while :; do
    wait "$pid"
    rc=$?
    if [ "$rc" -gt 128 ] && kill -0 "$pid" 2>/dev/null; then continue; fi
    break
done
exit "$rc"
