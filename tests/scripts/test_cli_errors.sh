#!/usr/bin/env bash
# Bad input through the real binary: each case must exit with the expected code and print the
# expected text (naming the file, key or value at fault), and never crash (exit codes >= 128
# would be a signal).
source "$(dirname "$0")/lib/common.sh"

expect() {  # expect "description" EXIT_CODE "substring" -- args...
    local what=$1 code=$2 text=$3; shift 4
    "$VQVAE_BIN" "$@" >"$WORK/out.txt" 2>&1
    local rc=$?
    if [ $rc -ne "$code" ]; then
        fail "$what: exit code $rc, expected $code"; sed 's/^/    /' "$WORK/out.txt" | tail -n 5; return
    fi
    if ! grep -qiF -- "$text" "$WORK/out.txt"; then
        fail "$what: output lacks '$text'"; sed 's/^/    /' "$WORK/out.txt" | tail -n 5; return
    fi
    pass "$what"
}

printf 'train:\n  batch_sise: 4\n' >"$WORK/typo.yaml"
printf 'train:\n  lr: fast\n' >"$WORK/type.yaml"
printf 'model:\n  num_hiddens: [1, 2\n' >"$WORK/syntax.yaml"
mkdir -p "$WORK/idx"
printf 'not an idx file at all' >"$WORK/idx/train-images-idx3-ubyte"
printf 'junk' >"$WORK/notes.h5"
head -c 5000 /dev/urandom >"$WORK/random.h5"

expect "unknown command suggests" 2 "did you mean 'train'" -- trian
expect "unknown option" 2 "unknown option '--confg'" -- train --confg x.yaml
expect "option without value" 2 "--config needs a value" -- train --config
expect "info needs a path" 2 "'info' needs --checkpoint" -- info
expect "stray argument" 2 "unexpected argument 'oops'" -- train oops
expect "--help lists commands" 0 "reconstruct" -- --help
expect "missing config file" 1 "missing.yaml" -- train --config "$WORK/missing.yaml"
expect "unknown key suggests the nearest" 1 "train.batch_size" -- train --config "$WORK/typo.yaml"
expect "wrong type names key and value" 1 "fast" -- train --config "$WORK/type.yaml"
expect "YAML syntax error names the file" 1 "syntax.yaml" -- train --config "$WORK/syntax.yaml"
expect "bad override value" 1 "train.batch_size" -- train --config "$SMOKE" train.batch_size=0
expect "unknown override key" 1 "train.steps" -- train --config "$SMOKE" train.stepz=3
expect "missing dataset folder" 1 "$WORK/nowhere" -- train data.dataset=fashion_mnist data.path="$WORK/nowhere"
expect "bad IDX file names it" 1 "train-images-idx3-ubyte" -- train data.dataset=fashion_mnist data.path="$WORK/idx"
expect "checkpoint that is not HDF5" 1 "notes.h5" -- info "$WORK/notes.h5"
expect "random bytes as checkpoint" 1 "random.h5" -- eval --checkpoint "$WORK/random.h5"
expect "resume from a missing file" 1 "could not resume" -- train --config "$SMOKE" checkpoint.dir="$WORK/r" --resume "$WORK/none.h5"
expect "groupnorm: channels not divisible by the groups name both keys" 1 "model.norm_num_groups = 3" -- \
    train --config "$SMOKE" model.arch=groupnorm model.norm_num_groups=3
expect "groupnorm: image size not divisible by 2^(blocks-1)" 1 "multiples of 32" -- \
    train --config "$SMOKE" model.arch=groupnorm "model.block_out_channels=[32, 32, 32, 32, 32, 32]"
expect "global batch larger than the data" 1 "train.batch_size" -- train --config "$SMOKE" data.synthetic_count=16 train.batch_size=32
# a checkpoint of another architecture is refused on resume
"$VQVAE_BIN" train --config "$SMOKE" train.steps=2 checkpoint.dir="$WORK/arch" >/dev/null 2>&1
expect "resume with another architecture" 1 "num_hiddens" -- train --config "$SMOKE" model.num_hiddens=8 train.steps=4 \
    checkpoint.dir="$WORK/arch2" --resume "$WORK/arch/ckpt_00000002.h5"
# bf16 on the CPU: only oneDNN has it, and only with AVX512-BF16 (ONEDNN_MAX_CPU_ISA=AVX2 makes any
# x86 CPU look like one without it).
expect "bf16 with im2col is refused" 1 "train.cpu_conv=onednn" -- \
    train --config "$SMOKE" train.device=cpu train.precision=bf16 train.cpu_conv=im2col train.steps=1 \
    checkpoint.dir="$WORK/bf16"
if "$VQVAE_BIN" bench --config "$SMOKE" --steps 1 --warmup 0 train.cpu_conv=onednn >/dev/null 2>&1; then
    ONEDNN_MAX_CPU_ISA=AVX2 expect "bf16 without AVX512-BF16 is refused" 1 "needs AVX512-BF16" -- \
        train --config "$SMOKE" train.device=cpu train.precision=bf16 train.steps=1 checkpoint.dir="$WORK/bf16"
else
    skip_case "bf16 without AVX512-BF16: this build has no oneDNN"
fi
finish
