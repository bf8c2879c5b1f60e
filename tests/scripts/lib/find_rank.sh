# shellcheck shell=bash
# find_rank.sh: source it. find_rank_pid ROOT RANK [NAME]: the pid of the process NAME (default
# vqvae_dist) of MPI rank RANK among the descendants of process ROOT (e.g. the `timeout` or
# `mpirun` a test started in the background), found by OMPI_COMM_WORLD_RANK=RANK (or PMIX_RANK) in
# /proc/PID/environ. Only descendants of ROOT are considered, so other jobs on the machine (other
# tests running at the same time) are never picked. Prints nothing and returns 1 when not found.
find_rank_pid() {
    local root=$1 rank=$2 name=${3:-vqvae_dist}
    local queue=("$root") pid child
    while [ ${#queue[@]} -gt 0 ]; do
        pid=${queue[0]}
        queue=("${queue[@]:1}")
        # /proc/PID/task/TID/children needs CONFIG_PROC_CHILDREN (Debian and most kernels); else pgrep.
        for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null || pgrep -P "$pid" 2>/dev/null); do
            queue+=("$child")
            [ "$(cat /proc/"$child"/comm 2>/dev/null)" = "$name" ] || continue
            if tr '\0' '\n' <"/proc/$child/environ" 2>/dev/null |
                grep -Eqx "(OMPI_COMM_WORLD_RANK|PMIX_RANK)=$rank"; then
                echo "$child"
                return 0
            fi
        done
    done
    return 1
}

# wait_for_rank_pid ROOT RANK [NAME]: find_rank_pid, retried for up to 30 s.
wait_for_rank_pid() {
    local _
    for _ in $(seq 300); do
        find_rank_pid "$@" && return 0
        sleep 0.1
    done
    return 1
}
