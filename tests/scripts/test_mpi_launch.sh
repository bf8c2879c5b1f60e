#!/usr/bin/env bash
# The launch scripts, end to end on this machine:
# - launch/run_local.sh: SIGTERM to the wrapper reaches the ranks as SIGUSR1; they checkpoint and
#   exit 75, and the wrapper returns 75.
# - launch/slurm.sbatch under stand-ins for srun and scontrol (no Slurm here): SIGUSR1 to the batch
#   shell (what --signal=B:USR1@120 sends) is forwarded to the ranks, which checkpoint and exit 75;
#   the script then calls `scontrol requeue $SLURM_JOB_ID` and exits 75. After SIGTERM (scancel)
#   it must not requeue. The stand-in srun starts the ranks with mpirun (2 ranks).
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/mpi.sh"
slow=(--config "$SMOKE" train.steps=100000 log.every=20 checkpoint.every=0 train.threads=1 dist.timeout_s=60)

# wait_for FILE PATTERN: up to 60 s for PATTERN to appear in FILE.
wait_for() {
    for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}

# ---- run_local.sh ----------------------------------------------------------------------------
dir="$WORK/local"
VQ_MPIEXEC="$VQ_MPIEXEC" timeout 120 "$VQ_SOURCE_DIR/launch/run_local.sh" 2 -- "$VQVAE_BIN" train "${slow[@]}" \
    checkpoint.dir="$dir" >"$WORK/local.log" 2>&1 &
pid=$!
check "run_local: training started" wait_for "$WORK/local.log" "step "
kill -TERM $pid
wait $pid
rc=$?
check "run_local: SIGTERM -> exit 75 (got $rc)" [ $rc -eq 75 ]
[ $rc -eq 75 ] || tail -n 20 "$WORK/local.log"
check "run_local: a checkpoint was written" test -s "$dir/latest"
check "run_local: the log says how to resume" grep -q "resumes with --resume auto" "$WORK/local.log"

# ---- slurm.sbatch with stand-ins -------------------------------------------------------------
shims="$WORK/shims"
mkdir -p "$shims"
# srun --mpi=X PROGRAM ARGS: start the ranks with mpirun; forward SIGUSR1/SIGTERM like srun does.
cat >"$shims/srun" <<EOF
#!/usr/bin/env bash
[ "\${1#--mpi=}" != "\$1" ] && shift
"$VQ_MPIEXEC" ${MPI_FLAGS[*]} -np 2 "\$@" &
child=\$!
trap 'kill -USR1 \$child' USR1
trap 'kill -USR1 \$child' TERM
while :; do wait \$child; rc=\$?; kill -0 \$child 2>/dev/null || exit \$rc; done
EOF
cat >"$shims/scontrol" <<EOF
#!/usr/bin/env bash
echo "\$*" >>"$WORK/scontrol.calls"
EOF
chmod +x "$shims/srun" "$shims/scontrol"

run_sbatch() {  # run_sbatch NAME SIGNAL: start the script, send SIGNAL to it once training runs
    local name=$1 signal=$2
    (cd "$VQ_SOURCE_DIR" && PATH="$shims:$PATH" SLURM_JOB_ID=4242 SLURM_NTASKS=2 SLURM_JOB_NODELIST=localhost \
        CONFIG="$SMOKE" VQVAE_BIN="$VQVAE_BIN" timeout 120 bash launch/slurm.sbatch "${slow[@]:2}" \
        checkpoint.dir="$WORK/$name" >"$WORK/$name.log" 2>&1) &
    local job=$!
    check "slurm $name: training started" wait_for "$WORK/$name.log" "step "
    # the batch shell is the bash running slurm.sbatch (matched by this run's checkpoint.dir)
    local shell
    shell=$(pgrep -f "^bash launch/slurm.sbatch.*checkpoint.dir=$WORK/$name" | head -n 1)
    kill -"$signal" "$shell"
    # scancel signals every process of the job: the tasks too (through the srun stand-in)
    [ "$signal" = TERM ] && pkill -TERM -f "^bash $shims/srun .*checkpoint.dir=$WORK/$name"
    wait $job
    SBATCH_RC=$?
}

run_sbatch usr1 USR1
check "slurm USR1: exit 75 (got $SBATCH_RC)" [ "$SBATCH_RC" -eq 75 ]
check "slurm USR1: forwarded to the ranks" grep -q "asking the ranks to checkpoint" "$WORK/usr1.log"
check "slurm USR1: a checkpoint was written" test -s "$WORK/usr1/latest"
check "slurm USR1: requeued" grep -q "^requeue 4242$" "$WORK/scontrol.calls"

rm -f "$WORK/scontrol.calls"
run_sbatch term TERM
check "slurm TERM: exit 75 after the checkpoint (got $SBATCH_RC)" [ "$SBATCH_RC" -eq 75 ]
check "slurm TERM: a checkpoint was written" test -s "$WORK/term/latest"
check "slurm TERM (scancel): not requeued" test ! -e "$WORK/scontrol.calls"

# The requeued job: the same script resumes from the checkpoint.
stopped=$(sed -n 's/ckpt_0*\([0-9][0-9]*\)\.h5/\1/p' "$WORK/usr1/latest")
target=$((stopped + 4))
(cd "$VQ_SOURCE_DIR" && PATH="$shims:$PATH" SLURM_JOB_ID=4242 SLURM_NTASKS=2 SLURM_JOB_NODELIST=localhost \
    SLURM_RESTART_COUNT=1 CONFIG="$SMOKE" VQVAE_BIN="$VQVAE_BIN" timeout 120 bash launch/slurm.sbatch \
    train.threads=1 train.steps=$target checkpoint.dir="$WORK/usr1" >"$WORK/requeued.log" 2>&1)
rc=$?
check "slurm requeued run: exit 0 (got $rc)" [ $rc -eq 0 ]
check "slurm requeued run: resumed from step $stopped" grep -q "resumed from .*step $stopped" "$WORK/requeued.log"
finish
