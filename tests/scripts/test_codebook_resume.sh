#!/usr/bin/env bash
# test_codebook_resume.sh: resuming across the pretrain/quantize boundary is bit-exact
# (docs/CODEBOOK.md). configs/smoke.yaml, N=24 steps, train.pretrain_steps=P=10, dead-code restart
# on for ema (threshold 2: kmeans restarts 4 codes at steps 11-22, data 47 over steps 11-24), for
# ema with quantizer.init kmeans and data, and vq with kmeans. The reference runs straight to N
# (one checkpoint, at the end). Another run writes a checkpoint every 2 steps; it is resumed (--resume PATH, into a fresh checkpoint.dir) from step
#   6   inside the pretraining (the init is still to come),
#   10  = P: the pretraining is done, the init runs first thing after the resume,
#   16  after the init (the codebook and EMA state come from the checkpoint),
# and each resumed run's final checkpoint (parameters, codebook, EMA buffers, Adam moments) is
# bitwise the reference's, and so is the restart count of the last log line (it is stored in
# the checkpoint). The resume log must say where the init happened (or that it did not).
source "$(dirname "$0")/lib/common.sh"
N=24
P=10
common=(--config "$SMOKE" train.device=cpu train.threads=1 train.steps=$N train.pretrain_steps=$P log.every=2
        checkpoint.keep=20)
ckpt() { printf '%s/ckpt_%08d.h5' "$1" "$2"; }

for case in ema:kmeans ema:data vq:kmeans; do
    q=${case%:*} init=${case#*:}
    run=(quantizer.type=$q quantizer.init=$init)
    [ $q = ema ] && run+=(quantizer.dead_code_threshold=2)
    init=$q-$init   # the case's name from here on
    echo "=== ${run[*]}"
    ref="$WORK/$init-ref"
    "$VQVAE_BIN" train "${common[@]}" "${run[@]}" checkpoint.every=0 checkpoint.dir="$ref" >"$ref.log" 2>&1
    check "$init: reference run" [ $? -eq 0 ] || continue
    want_restarts=$(metric "$ref/metrics.jsonl" train restarts)
    if [ $q = ema ]; then
        check "$init: the reference restarted codes (got ${want_restarts:-none})" [ "${want_restarts:-0}" -gt 0 ]
    fi
    parts="$WORK/$init-parts"
    "$VQVAE_BIN" train "${common[@]}" "${run[@]}" checkpoint.every=2 checkpoint.dir="$parts" >"$parts.log" 2>&1
    check "$init: run with a checkpoint every 2 steps" [ $? -eq 0 ] || continue
    for at in 6 $P 16; do
        dir="$WORK/$init-from$at"
        "$VQVAE_BIN" train "${common[@]}" "${run[@]}" checkpoint.every=0 checkpoint.dir="$dir" \
            --resume "$(ckpt "$parts" $at)" >"$dir.log" 2>&1
        check "$init from step $at: resumed run" [ $? -eq 0 ] || continue
        check "$init from step $at: resumed at step $at" grep -q "resumed from .*: step $at," "$dir.log"
        if [ "$at" -le $P ]; then
            check "$init from step $at: the init ran after the resume, at step $P" \
                grep -q "step $P: encoder pretraining done; quantizing from here on" "$dir.log"
        else
            check "$init from step $at: no init after the resume (the codebook is the checkpoint's)" \
                bash -c "! grep -q 'pretraining done\|^kmeans:' '$dir.log'"
        fi
        check "$init from step $at: final checkpoint bitwise the reference's" \
            compare_h5 "$(ckpt "$ref" $N)" "$(ckpt "$dir" $N)" 0 model optim
        got=$(metric "$dir/metrics.jsonl" train restarts)
        check "$init from step $at: restart count $got, the reference's $want_restarts" \
            [ "${got:-missing}" = "${want_restarts:-none}" ]
    done
done
finish
