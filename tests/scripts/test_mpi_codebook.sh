#!/usr/bin/env bash
# test_mpi_codebook.sh: the codebook techniques of docs/CODEBOOK.md are the same on every rank
# and for every world size at the same global batch (GLOBAL images: np=1 x 48, np=2 x 24, np=3 x 16)
# on configs/smoke.yaml (K=32, D=8, 16 latents per image).
#   (a) k-means init (quantizer.init=kmeans, 2304 encoder outputs = 3 global batches), ema at
#       step 0 and after 5 pretraining steps, vq after 5 pretraining steps: the codebook right after the init (dumped by
#       every rank, VQ_TEST_DUMP_CODEBOOK) is bitwise the same on all ranks of a run, and within
#       INIT_TOL (max|a-b| / max|b|) of np=1's. Measured: 1.9e-7 (np=2, np=3, both cases): the
#       Lloyd sums are reduced in another order, nothing else differs. A vector assigned to
#       another cluster would move two centers by ~1/72 of a vector; a control shows how little
#       it takes to exceed INIT_TOL: one Lloyd iteration less (kmeans_iters=9) is off by ~1e-2.
#   (b) dead-code restart (quantizer.dead_code_threshold=THRESHOLD, 40 steps): np=2 and np=3 with
#       dist.verify_every=1 (all ranks bitwise equal after every step) restart as many codes as
#       np=1 after every step (20 restarts, at steps 6-10, 16 and 23; at least one, or the case
#       proves nothing), and the codebook and EMA state end within RESTART_TOL of np=1's
#       (measured 3.4e-7; a code restarted with another vector, or not at all, is off by ~1).
# Every measured error is printed. Each run is bounded by `timeout`; train.threads=1 per rank.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib/common.sh"
source "$here/lib/mpi.sh"
PY=$(py_h5)
[ -n "$PY" ] || { echo "FAIL: no Python with h5py + numpy (apt-get install python3-h5py)"; exit 1; }

GLOBAL=48
K=32
D=8
INIT_TOL=1e-5
RESTART_TOL=1e-4
THRESHOLD=14   # k-means leaves smoke's clusters at ~6-40 expected hits per step: ~20 restarts in 40 steps

# train NAME NP STEPS [overrides...]: the codebook dump is $WORK/NAME.rank<R>, the run $WORK/NAME/.
train() {
    local name=$1 np=$2 steps=$3
    shift 3
    mpi_cmd "$np"
    local start=$SECONDS rc
    VQ_TEST_DUMP_CODEBOOK="$WORK/$name" timeout -k 10 120 "${MPI_CMD[@]}" -x VQ_TEST_DUMP_CODEBOOK \
        "$VQVAE_BIN" train --config "$SMOKE" train.device=cpu train.threads=1 train.steps="$steps" \
        train.batch_size=$((GLOBAL / np)) quantizer.init=kmeans checkpoint.every=0 checkpoint.dir="$WORK/$name" \
        log.every=5 "$@" >"$WORK/$name.log" 2>&1
    rc=$?
    echo "  $name: np=$np, $steps steps: exit code $rc after $((SECONDS - start)) s"
    if [ $rc -ne 0 ]; then tail -n 20 "$WORK/$name.log"; fi
    return $rc
}

compare_f32() { "$PY" "$here/lib/compare_f32.py" "$@"; }

echo "=== (a) the codebook right after the k-means init"
for case in ema:0 ema:5 vq:5; do
    q=${case%:*} p=${case#*:}
    what="$q, init at step $p"
    for np in 1 2 3; do
        name=init-$q-p$p-np$np
        train $name $np $((p + 1)) quantizer.type=$q train.pretrain_steps=$p
        check "$what, np=$np: runs" [ $? -eq 0 ] || continue
        check "$what, np=$np: k-means ran at step $p" \
            grep -q "kmeans: $K codes from 2304 encoder outputs (3 global batches) at step $p:" "$WORK/$name.log"
        for ((r = 1; r < np; r++)); do
            check "$what, np=$np: rank $r's codebook is bitwise rank 0's" \
                compare_f32 "$WORK/$name.rank$r" "$WORK/$name.rank0" 0 $D
        done
    done
    for np in 2 3; do
        check "$what: np=$np within $INIT_TOL of np=1" \
            compare_f32 "$WORK/init-$q-p$p-np$np.rank0" "$WORK/init-$q-p$p-np1.rank0" $INIT_TOL $D
    done
done
train init-iters9 1 6 train.pretrain_steps=5 quantizer.kmeans_iters=9
check "control: kmeans_iters=9 runs" [ $? -eq 0 ]
if compare_f32 "$WORK/init-iters9.rank0" "$WORK/init-ema-p5-np1.rank0" $INIT_TOL $D; then
    fail "control: one Lloyd iteration less stays within $INIT_TOL: the tolerance cannot tell codebooks apart"
else
    pass "control: one Lloyd iteration less is beyond $INIT_TOL"
fi

echo "=== (b) dead-code restart, threshold $THRESHOLD"
restarts() { grep '"kind":"train"' "$1/metrics.jsonl" | sed -n 's/.*"step":\([0-9]*\),.*"restarts":\([0-9]*\).*/\1:\2/p' | tr '\n' ' '; }
common=(train.pretrain_steps=5 quantizer.dead_code_threshold=$THRESHOLD log.every=1)
for np in 1 2 3; do
    verify=()
    [ "$np" -gt 1 ] && verify=(dist.verify_every=1)
    train "restart-np$np" $np 40 "${common[@]}" "${verify[@]}"
    check "restart np=$np: runs" [ $? -eq 0 ]
done
ref=$(restarts "$WORK/restart-np1")
echo "  np=1 restarts (step:total): $ref"
total=$(metric "$WORK/restart-np1/metrics.jsonl" train restarts)
check "restart np=1: some codes restarted (got ${total:-none})" [ "${total:-0}" -gt 0 ]
for np in 2 3; do
    log="$WORK/restart-np$np.log"
    check "restart np=$np: verified identical on all ranks after each of the 40 steps" \
        [ "$(grep -c "verify: step [0-9]*: all $np ranks hold identical" "$log")" -eq 40 ]
    got=$(restarts "$WORK/restart-np$np")
    echo "  np=$np restarts (step:total): $got"
    check "restart np=$np: the same restart counts as np=1 after every step" [ "${got:-missing}" = "${ref:-none}" ]
    check "restart np=$np: codebook and EMA state within $RESTART_TOL of np=1" \
        compare_h5 --verbose --match=_vq_vae "$WORK/restart-np$np/ckpt_00000040.h5" \
        "$WORK/restart-np1/ckpt_00000040.h5" $RESTART_TOL model
done
finish
