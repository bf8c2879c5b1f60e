#!/usr/bin/env bash
# gpu_session.sh: build, test, train, benchmark and profile vqvae_dist on a lent GPU machine that
# has the CUDA toolkit, cuDNN, NCCL, CMake and PyTorch but none of our Debian dependencies (Open
# MPI, HDF5, libyaml, OpenBLAS) and no package registry. Those come as .debs from
# tools/gpu_bundle.sh (folder .gpu_bundle/, carried with the call), unpacked into a private prefix.
# Run from the repository root, never interactive; docs/GPU_RUNBOOK.md has the exact calls.
#
#   tools/gpu_session.sh PHASE...        e.g.  tools/gpu_session.sh build test
#
# Phases (each step is time-bounded; a failure is recorded and the next step still runs):
#   setup     unpack the bundle into the prefix (once; kept while the machine stays warm), set the
#             environment, record versions (GPU, driver, nvcc, cuDNN, NCCL, torch, git). Implied by
#             every other phase.
#   build     configure (CUDA for sm_90, deps from the prefix) and build into build-gpu/ (reused by
#             later calls while the machine stays warm); ldd; an MPI start-up check.
#   test      ctest -L gpu (a skipped GPU test is a failure here), then the PyTorch parity test on
#             the GPU (VQ_PARITY_DEVICE=cuda).
#   cputest   the rest of the suite: ctest -LE gpu (cpu, mpi, torch labels).
#   train     configs/cifar.yaml's model on synthetic CIFAR-shaped data, batch 256: 2000 steps on
#             the GPU for each quantizer, then the same on the CPU backend for as long as the time
#             budget allows (SIGTERM: checkpoint, exit 75); loss curves side by side.
#   nccl      tests/scripts/test_gpu_nccl.sh; np=1 dist.backend=nccl vs mpi; np=2 dist.backend=mpi
#             on one GPU; np=2 dist.backend=nccl on one GPU must be refused with a message.
#   bench     bench/compare.py: ours vs PyTorch eager and torch.compile, batch 256, EMA.
#   profile   nsys (if it is there and works) or Nsight Compute per-kernel summary of training steps.
#   sanitize  compute-sanitizer memcheck, racecheck and initcheck of one GPU training step.
#   all       setup build test train nccl bench profile (more than one 10-minute call: see the runbook)
#
# Outputs. Everything a call writes goes to .gpu_runs/<time>-<phases>/ (logs, metrics, results),
# and at the end into $OUT: summary.txt (one line per step: ok / FAIL / TIMEOUT, seconds, log) and
# gpu_session-<time>.tar.gz (the whole folder without checkpoints). $OUT defaults to that folder's
# out/ when unset (running it elsewhere to check it).
#
# Environment (all optional):
#   VQ_GPU_DEADLINE   seconds this call may take in all (default 560, inside the tool's 600): no step
#                     starts past it, running steps are cut to it, and the outputs are still packed
#   VQ_GPU_BUNDLE     folder with debs/ (default .gpu_bundle)
#   VQ_GPU_PREFIX     where the debs are unpacked (default .gpu_prefix; not carried, so it survives
#                     between calls while the machine is warm, and the carried bundle cannot wipe it)
#   VQ_GPU_BUILD      build folder (default build-gpu)
#   VQ_GPU_CUDA       ON (default) or OFF: OFF builds without CUDA, to check this script where there
#                     is no GPU (the GPU steps then fail or skip)
#   VQ_GPU_LIBS       missing (default): bundle libraries that the system has too (zlib, OpenSSL,
#                     curl, ...) come from the system; all: every library from the bundle
#   VQ_GPU_TRAIN_STEPS (2000), VQ_GPU_CPU_TRAIN_S (seconds per quantizer on the CPU, 90),
#   VQ_BENCH_ARGS     replaces compare.py's default arguments after --bin/--out/--name
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD
START=$(date +%s)
DEADLINE=$((START + ${VQ_GPU_DEADLINE:-560}))
BUNDLE=${VQ_GPU_BUNDLE:-$ROOT/.gpu_bundle}
PREFIX=${VQ_GPU_PREFIX:-$ROOT/.gpu_prefix}
BUILD=${VQ_GPU_BUILD:-$ROOT/build-gpu}
CUDA_MODE=${VQ_GPU_CUDA:-ON}
BIN=$BUILD/vqvae_dist
ARCH=x86_64-linux-gnu
export ROOT PREFIX BUILD BIN BUNDLE CUDA_MODE ARCH

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
phases=()
for p in "$@"; do
    case "$p" in
        setup | unpack | build | test | cputest | train | nccl | bench | profile | sanitize) phases+=("$p") ;;
        all) phases+=(build test train nccl bench profile) ;;
        -h | --help) usage ;;
        *) echo "gpu_session.sh: unknown phase '$p'" >&2; usage ;;
    esac
done

stamp=$(date -u +%Y%m%dT%H%M%SZ)
CALL=$ROOT/.gpu_runs/$stamp-$(IFS=+; echo "${phases[*]}")
mkdir -p "$CALL"
OUT=${OUT:-$CALL/out}
mkdir -p "$OUT"
SUMMARY=$CALL/summary.txt
export CALL
{
    echo "# tools/gpu_session.sh ${phases[*]}   started $(date -u +%FT%TZ) on $(hostname)"
    echo "# folder $CALL"
} >"$SUMMARY"

note() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $((DEADLINE - $(date +%s))); }

# step NAME LIMIT CMD...: run CMD (a program or an exported function) with LIMIT seconds (cut to
# the call's deadline), output in $CALL/NAME.log; one summary line. Returns CMD's exit code.
# STEP_OK_CODES (space-separated) lists extra exit codes that count as ok.
step() {
    local name=$1 limit=$2 rc t0 dt verdict remaining
    shift 2
    remaining=$(($(left) - 15))
    if [ "$remaining" -lt 10 ]; then
        printf '%-30s %-24s %5s  %s\n' "$name" "NOT RUN (deadline)" "-" "" >>"$SUMMARY"
        echo "== $name: not run, the call's deadline is near"
        return 125
    fi
    [ "$limit" -gt "$remaining" ] && limit=$remaining
    echo "== $name (limit ${limit}s): $*"
    t0=$(date +%s)
    if declare -F "$1" >/dev/null; then
        timeout -k 20 "$limit" bash -c "$(declare -f); $(printf '%q ' "$@")" >"$CALL/$name.log" 2>&1 </dev/null
    else
        timeout -k 20 "$limit" "$@" >"$CALL/$name.log" 2>&1 </dev/null
    fi
    rc=$?
    dt=$(($(date +%s) - t0))
    verdict=ok
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        verdict="TIMEOUT (${limit}s)"
    elif [ $rc -ne 0 ] && [[ " ${STEP_OK_CODES:-} " != *" $rc "* ]]; then
        verdict="FAIL (exit $rc)"
    elif [ $rc -ne 0 ]; then
        verdict="ok (exit $rc)"
    fi
    printf '%-30s %-24s %5ss  %s\n' "$name" "$verdict" "$dt" "$name.log" >>"$SUMMARY"
    echo "   -> $verdict in ${dt}s; last lines:"
    tail -n 6 "$CALL/$name.log" | cut -c1-300 | sed 's/^/   | /'
    return $rc
}

pack() {
    trap - EXIT INT TERM
    local tarball=$OUT/gpu_session-$stamp.tar.gz
    note "# finished $(date -u +%FT%TZ), $(($(date +%s) - START))s"
    cp "$SUMMARY" "$OUT/summary.txt"
    # checkpoints and cores stay behind (sizes); the folder names are relative to .gpu_runs
    tar -czf "$tarball" -C "$ROOT/.gpu_runs" --exclude='*.h5' --exclude='*.h5.tmp' --exclude='core*' \
        --exclude='*.qdstrm' "$(basename "$CALL")" 2>/dev/null
    if [ "$(stat -c %s "$tarball")" -gt $((15 * 1024 * 1024)) ]; then   # the tool returns files up to 16 MiB
        tar -czf "$tarball" -C "$ROOT/.gpu_runs" --exclude='*.h5' --exclude='*.h5.tmp' --exclude='core*' \
            --exclude='*.qdstrm' --exclude='*.nsys-rep' --exclude='*.ncu-rep' --exclude='*.sqlite' \
            "$(basename "$CALL")" 2>/dev/null
    fi
    echo
    echo "==================== summary ($SUMMARY) ===================="
    cat "$SUMMARY"
    echo "outputs: $OUT/summary.txt, $tarball ($(du -h "$tarball" | cut -f1))"
}
trap pack EXIT
trap 'note "# stopped by a signal"; exit 130' INT TERM

# ---- setup: unpack the bundle, environment, versions ----------------------------------------

# Debian packages that the machine's system may provide too (generic libraries): with
# VQ_GPU_LIBS=missing their libraries are used only when the system lacks the soname.
PREFER_SYSTEM="zlib1g libpng16-16 libcurl4 libnghttp2-14 libidn2-0 librtmp1 libssh2-1 libpsl5 libssl3
 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2 libldap-2.5-0
 libsasl2-2 libbrotli1 libzstd1 libunistring2 libgnutls30 libhogweed6 libnettle8 libgmp10 libp11-kit0
 libtasn1-6 libffi8 libudev1 libuuid1 libatomic1 libnuma1 libnl-3-200 libnl-route-3-200"

unpack_bundle() {
    local debs=("$BUNDLE"/debs/*.deb)
    if [ ! -e "${debs[0]}" ]; then
        echo "no .deb files in $BUNDLE/debs: run tools/gpu_bundle.sh here and carry .gpu_bundle" >&2
        return 1
    fi
    local want have
    want=$(cd "$BUNDLE/debs" && ls -l ./*.deb | awk '{print $5, $NF}' | md5sum | cut -c1-32)
    have=$(cat "$PREFIX/.bundle-stamp" 2>/dev/null)
    if [ "$want" = "$have" ] && [ -d "$PREFIX/usr" ]; then
        echo "prefix $PREFIX is up to date (${#debs[@]} packages)"
        return 0
    fi
    rm -rf "$PREFIX"
    mkdir -p "$PREFIX/.files"
    local deb pkg
    for deb in "${debs[@]}"; do
        pkg=$(basename "$deb" | cut -d_ -f1)
        if command -v dpkg-deb >/dev/null; then
            dpkg-deb -x "$deb" "$PREFIX" && dpkg-deb --fsys-tarfile "$deb" | tar -t >"$PREFIX/.files/$pkg" || return 1
        else   # no dpkg: a .deb is an ar archive holding data.tar.*
            local member
            member=$(ar t "$deb" | grep '^data\.tar') || return 1
            ar p "$deb" "$member" | tar -x -a -f - -C "$PREFIX" 2>/dev/null ||
                ar p "$deb" "$member" | tar -x --xz -f - -C "$PREFIX" || return 1
            ar p "$deb" "$member" | tar -t --xz -f - >"$PREFIX/.files/$pkg" 2>/dev/null
        fi
    done
    # Debian 12 packages still ship some files under /lib and /bin (the system merges them into
    # /usr): merge them here, then point absolute symlinks (e.g. libz.so -> /lib/...) into the prefix.
    local d
    for d in lib bin sbin; do
        if [ -d "$PREFIX/$d" ] && [ ! -L "$PREFIX/$d" ]; then
            mkdir -p "$PREFIX/usr/$d"
            cp -a "$PREFIX/$d/." "$PREFIX/usr/$d/" && rm -rf "${PREFIX:?}/$d" && ln -s "usr/$d" "$PREFIX/$d"
        fi
    done
    local link target
    while IFS= read -r -d '' link; do
        target=$(readlink "$link")
        case "$target" in
            /lib/* | /bin/* | /sbin/*) ln -sfn "$PREFIX/usr$target" "$link" ;;
            /*) ln -sfn "$PREFIX$target" "$link" ;;
        esac
    done < <(find "$PREFIX/usr" -type l -lname '/*' -print0)
    # alternatives that dpkg -x does not create
    [ -e "$PREFIX/usr/lib/$ARCH/pkgconfig/openblas.pc" ] ||
        ln -s ../openblas-pthread/pkgconfig/openblas.pc "$PREFIX/usr/lib/$ARCH/pkgconfig/openblas.pc" 2>/dev/null
    echo "$want" >"$PREFIX/.bundle-stamp"
    echo "unpacked ${#debs[@]} packages into $PREFIX ($(du -sh "$PREFIX" | cut -f1))"
}

# lib-bundle/: links to the bundle's shared libraries that this run takes from the bundle (all of
# ours; the generic ones only where the system lacks them); it goes first on LD_LIBRARY_PATH.
make_lib_dir() {
    local dir=$PREFIX/lib-bundle mode=${VQ_GPU_LIBS:-missing} pkg f so base
    rm -rf "$dir"
    mkdir -p "$dir"
    local syslibs
    syslibs=$(ldconfig -p 2>/dev/null | awk '/=>/{print $1}' | sort -u)
    : >"$PREFIX/libs-from-system.txt"
    local list
    for list in "$PREFIX"/.files/*; do
        pkg=$(basename "$list")
        while read -r f; do
            f=${f#.}
            case "$f" in */lib/*.so.[0-9]* | */lib/*/*.so.[0-9]*) ;; *) continue ;; esac
            case "$f" in */openmpi/lib/openmpi3/* | */pmix2/lib/pmix/* | */ucx/* | */libfabric/* | \
                */libibverbs/*) continue ;; esac   # plugins: found by their own libraries
            base=$(basename "$f")
            so=$(echo "$base" | sed -E 's/(\.so\.[0-9]+).*/\1/')
            if [ "$mode" != all ] && [[ " $(echo $PREFER_SYSTEM) " == *" $pkg "* ]] && echo "$syslibs" | grep -qxF "$so"; then
                echo "$so ($pkg)" >>"$PREFIX/libs-from-system.txt"
                continue
            fi
            f=$PREFIX/usr${f#/usr}
            [ -e "$f" ] && ln -sfn "$f" "$dir/$base" && [ "$base" != "$so" ] && ln -sfn "$f" "$dir/$so"
        done <"$list"
    done
    mkdir -p "$PREFIX/bin-vq"
    for f in mpirun mpiexec orterun; do ln -sfn "$PREFIX/usr/bin/orterun" "$PREFIX/bin-vq/$f"; done
    ln -sfn "$PREFIX/usr/bin/ompi_info" "$PREFIX/bin-vq/ompi_info"
    command -v pkg-config >/dev/null || ln -sfn "$PREFIX/usr/bin/pkgconf" "$PREFIX/bin-vq/pkg-config"
}

# cuDNN and NCCL: in the CUDA toolkit if possible (CMake looks there), else anywhere we can find
# them (e.g. Python's nvidia-cudnn-* / nvidia-nccl-* wheels); sets CUDNN_LIB NCCL_LIB and friends.
find_cuda_parts() {
    NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
    CUDA_HOME=${CUDA_HOME:-$( [ -n "$NVCC" ] && dirname "$(dirname "$(readlink -f "$NVCC")")")}
    local inc=("$CUDA_HOME/include" "$CUDA_HOME/targets/x86_64-linux/include" /usr/local/cuda/include
               /usr/include "/usr/include/$ARCH")
    local lib=("$CUDA_HOME/lib64" "$CUDA_HOME/lib" "$CUDA_HOME/targets/x86_64-linux/lib" /usr/local/cuda/lib64
               "/usr/lib/$ARCH")
    local py n
    for py in python3 /usr/bin/python3; do   # pip's nvidia-cudnn-*, nvidia-nccl-* (PyTorch's own)
        command -v "$py" >/dev/null || continue
        for n in $("$py" -c 'import nvidia; print(" ".join(nvidia.__path__))' 2>/dev/null); do
            inc+=("$n/cudnn/include" "$n/nccl/include" "$n/cu13/include" "$n/cu12/include")
            lib+=("$n/cudnn/lib" "$n/nccl/lib" "$n/cu13/lib" "$n/cu12/lib")
        done
    done
    first() { local f; for f in "$@"; do [ -s "$f" ] && { echo "$f"; return; }; done; }
    CUDNN_H=$(first "${inc[@]/%//cudnn_version.h}")
    NCCL_H=$(first "${inc[@]/%//nccl.h}")
    local cudnn_so=() nccl_so=() d   # the linker names first, then versioned ones (pip wheels have only those)
    for d in "${lib[@]}"; do cudnn_so+=("$d/libcudnn.so"); nccl_so+=("$d/libnccl.so"); done
    for d in "${lib[@]}"; do cudnn_so+=("$d"/libcudnn.so.[0-9]*); nccl_so+=("$d"/libnccl.so.[0-9]*); done
    CUDNN_LIB=$(first "${cudnn_so[@]}")
    NCCL_LIB=$(first "${nccl_so[@]}")
    export NVCC CUDA_HOME CUDNN_H NCCL_H CUDNN_LIB NCCL_LIB
}

set_env() {
    export LD_LIBRARY_PATH=$PREFIX/lib-bundle${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export PATH=$PREFIX/bin-vq:$PATH
    export OPAL_PREFIX=$PREFIX/usr PMIX_INSTALL_PREFIX=$PREFIX/usr
    # we run as root there; no InfiniBand in the VM: the shared-memory and TCP transports, and no
    # cross-memory attach (often refused in VMs and containers)
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none
    export OMPI_MCA_mca_base_component_show_load_errors=0
    export PYTHONUNBUFFERED=1
    find_cuda_parts
    local d
    for d in "$CUDNN_LIB" "$NCCL_LIB"; do   # cuDNN loads its engine libraries by name
        [ -n "$d" ] && case ":$LD_LIBRARY_PATH:" in *":$(dirname "$d"):"*) ;; *)
            LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$(dirname "$d") ;; esac
    done
}
mpirun_cmd() { MPIRUN=(mpirun --oversubscribe --bind-to none); }
cifar_synth() {
    CIFAR_SYNTH=(--config configs/cifar.yaml data.dataset=synthetic data.synthetic_count=50000 data.channels=3
                 data.image_size=32 train.batch_size=256 train.eval_every=0 train.eval_batches=8 checkpoint.every=0)
}

record_versions() {
    {
        echo "== date: $(date -u +%FT%TZ)   host: $(hostname)   user: $(id -un)"
        echo "== git: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo 'no git here')"
        git -C "$ROOT" status --short 2>/dev/null | head -n 40
        echo "== os:"; grep -E '^(PRETTY_NAME|VERSION_ID)=' /etc/os-release 2>/dev/null; uname -a
        echo "== glibc: $(ldd --version 2>&1 | head -n 1)   (the bundle is Debian 12: needs glibc >= 2.36)"
        echo "== cpu: $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
        echo "== memory: $(free -g 2>/dev/null | awk '/Mem:/{print $2 " GiB"}')"
        echo "== nvidia-smi -L:"; timeout 60 nvidia-smi -L 2>&1
        echo "== nvidia-smi:"; timeout 60 nvidia-smi 2>&1
        echo "== nvidia-smi -q (clocks, power, ECC):"
        timeout 60 nvidia-smi -q -d CLOCK,POWER,ECC,PERFORMANCE 2>&1 | head -n 120
        echo "== nvcc ($NVCC):"; [ -n "$NVCC" ] && "$NVCC" --version
        echo "== CUDA_HOME: $CUDA_HOME"
        echo "== cuDNN header: ${CUDNN_H:-not found}"
        [ -n "$CUDNN_H" ] && grep -E '#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) ' "$CUDNN_H"
        echo "== cuDNN library: ${CUDNN_LIB:-not found}"
        echo "== NCCL header: ${NCCL_H:-not found}"
        [ -n "$NCCL_H" ] && grep -E '#define NCCL_(MAJOR|MINOR|PATCH) ' "$NCCL_H"
        echo "== NCCL library: ${NCCL_LIB:-not found}"
        echo "== gcc: $(gcc --version 2>&1 | head -n 1)"
        echo "== cmake: $(cmake --version 2>&1 | head -n 1)   ninja: $(ninja --version 2>&1)"
        echo "== python3: $(command -v python3) $(python3 --version 2>&1)"
        python3 - <<'EOF' 2>&1
import torch
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(),
      'available', torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print('device', p.name, 'sm', f'{p.major}.{p.minor}', 'SMs', p.multi_processor_count,
          'memory GiB', round(p.total_memory / 2**30, 1))
    try:
        print('nccl (torch)', torch.cuda.nccl.version())
    except Exception as e:
        print('nccl (torch): ?', e)
import h5py, numpy
print('h5py', h5py.__version__, 'numpy', numpy.__version__)
EOF
        echo "== profilers: nsys=$(find_nsys || echo none) ncu=$(command -v ncu || echo none)" \
             "compute-sanitizer=$(command -v compute-sanitizer || ls "$CUDA_HOME"/bin/compute-sanitizer 2>/dev/null || echo none)"
        echo "== bundle: $(ls "$BUNDLE"/debs 2>/dev/null | wc -l) packages"
        cat "$BUNDLE/PACKAGES.txt" 2>/dev/null
        echo "== libraries taken from the system instead of the bundle (VQ_GPU_LIBS=${VQ_GPU_LIBS:-missing}):"
        cat "$PREFIX/libs-from-system.txt" 2>/dev/null
        echo "== Open MPI: $(ompi_info --version 2>&1 | head -n 1)"
        ompi_info --path prefix --path libdir --path pkglibdir 2>&1
    } >"$CALL/versions.txt" 2>&1
    grep -E '^== (git|os|glibc)|PRETTY|NVIDIA H|^GPU |release|CUDNN_MAJOR|NCCL_MAJOR|^torch|^device' \
        "$CALL/versions.txt" | head -n 20
}

find_nsys() {
    command -v nsys 2>/dev/null && return 0
    ls -d /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems*/bin/nsys /usr/local/cuda*/nsight-systems*/bin/nsys \
        2>/dev/null | head -n 1 | grep . && return 0
    return 1
}

setup() {
    echo "== setup: bundle $BUNDLE -> prefix $PREFIX"
    if ! unpack_bundle >"$CALL/unpack.log" 2>&1; then
        cat "$CALL/unpack.log"
        note "setup                          FAIL (unpacking the bundle; see unpack.log)"
        return 1
    fi
    tail -n 1 "$CALL/unpack.log"
    make_lib_dir
    set_env
    record_versions
    local glibc
    glibc=$(ldd --version 2>&1 | head -n 1 | grep -oE '[0-9]+\.[0-9]+$')
    if [ -n "$glibc" ] && [ "$(printf '%s\n2.36\n' "$glibc" | sort -V | head -n 1)" != 2.36 ]; then
        note "WARNING: glibc $glibc < 2.36: the Debian 12 libraries of the bundle may not load"
    fi
    note "setup                          ok  ($(($(date +%s) - START))s; versions.txt)"
}

# ---- build ---------------------------------------------------------------------------------------
configure() {
    local gen=() args=()
    if command -v ninja >/dev/null; then gen=(-G Ninja); fi
    if [ -f "$BUILD/CMakeCache.txt" ]; then
        local had
        had=$(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$BUILD/CMakeCache.txt")
        if [ "$had" != "${gen[1]:-Unix Makefiles}" ] ||
           ! grep -qxF "VQ_DEPS_PREFIX:PATH=$PREFIX" "$BUILD/CMakeCache.txt"; then
            echo "removing $BUILD (configured with another generator or prefix)"
            rm -rf "$BUILD"
        fi
    fi
    args=(-DCMAKE_BUILD_TYPE=Release -DVQ_DEPS_PREFIX="$PREFIX" -DVQ_CUDA="$CUDA_MODE"
          -DVQ_TORCH_PYTHON="$(command -v python3)")
    if [ "$CUDA_MODE" != OFF ]; then
        args+=(-DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_COMPILER="$NVCC")
        # cuDNN / NCCL outside the toolkit: name the libraries and their header folders
        local inc=()
        case "$CUDNN_LIB" in "$CUDA_HOME"/* | /usr/local/cuda/*) ;; ?*)
            args+=(-DCUDNN_LIBRARY="$CUDNN_LIB"); inc+=("$(dirname "$CUDNN_H")") ;; esac
        case "$NCCL_LIB" in "$CUDA_HOME"/* | /usr/local/cuda/*) ;; ?*)
            args+=(-DNCCL_LIBRARY="$NCCL_LIB"); inc+=("$(dirname "$NCCL_H")") ;; esac
        if [ ${#inc[@]} -gt 0 ]; then   # as -I flags: they come before nvcc's own include folder
            local flags
            flags=$(printf -- '-I%s ' "${inc[@]}")
            args+=(-DCMAKE_C_FLAGS="$flags" -DCMAKE_CUDA_FLAGS="$flags")
            echo "cuDNN/NCCL outside the toolkit: $flags"
        fi
    fi
    echo "cmake -S $ROOT -B $BUILD ${gen[*]} ${args[*]}"
    cmake -S "$ROOT" -B "$BUILD" "${gen[@]}" "${args[@]}"
}
compile() { cmake --build "$BUILD" -j"$(nproc)"; }
check_binary() {
    ldd "$BIN"
    ! ldd "$BIN" | grep -q "not found"
}
mpi_check() {
    set -e
    mpirun_cmd
    echo "-- singleton (no mpirun), CPU, 5 steps"
    "$BIN" train --config configs/smoke.yaml train.device=cpu train.steps=5 log.every=5 checkpoint.every=0 \
        checkpoint.dir="$CALL/mpi-check-1"
    echo "-- mpirun -np 2, CPU, 5 steps, dist.verify_every=5"
    "${MPIRUN[@]}" -np 2 "$BIN" train --config configs/smoke.yaml train.device=cpu train.steps=5 log.every=5 \
        checkpoint.every=0 dist.verify_every=5 checkpoint.dir="$CALL/mpi-check-2"
}
phase_build() {
    step build-configure 300 configure || return 1
    step build-compile 420 compile || return 1
    step build-ldd 30 check_binary
    step build-mpi-check 120 mpi_check
}

have_build() {
    [ -x "$BIN" ] && return 0
    note "no build at $BIN: run the build phase first (same machine, while it is warm)"
    return 1
}

# ---- test ----------------------------------------------------------------------------------------
ctest_gpu() {
    cd "$BUILD" || return 1
    export VQ_REQUIRE_GPU=1 VQ_GPU_TEST_REPORT=$CALL/gpu-test-report.txt
    ctest -L gpu --output-on-failure --timeout 600 | tee "$CALL/ctest-gpu.txt"
    local rc=${PIPESTATUS[0]}
    if grep -q "Not Run\|Skipped" "$CALL/ctest-gpu.txt"; then
        echo "GPU tests were SKIPPED on a GPU machine: counted as a failure"; rc=1
    fi
    return "$rc"
}
ctest_parity_cuda() {
    cd "$BUILD" || return 1
    VQ_PARITY_DEVICE=cuda VQ_REQUIRE_TORCH=1 ctest -R '^test_parity$' --output-on-failure --timeout 600
}
ctest_cpu() {
    cd "$BUILD" || return 1
    VQ_REQUIRE_TORCH=1 ctest -LE gpu -j"$(( $(nproc) > 8 ? 8 : $(nproc) ))" --output-on-failure --timeout 600
}
phase_test() {
    have_build || return 1
    step test-gpu 420 ctest_gpu
    GPU_CTEST_RAN=1   # test_gpu_nccl is among them
    step test-parity-cuda 240 ctest_parity_cuda
}
phase_cputest() {
    have_build || return 1
    step test-cpu 540 ctest_cpu
}

# ---- train ---------------------------------------------------------------------------------------
train_run() {   # train_run NAME DEVICE QUANTIZER STEPS [overrides...]   (exec: a SIGTERM reaches the trainer)
    local name=$1 device=$2 q=$3 steps=$4
    shift 4
    cifar_synth
    exec "$BIN" train "${CIFAR_SYNTH[@]}" quantizer.type="$q" train.device="$device" train.steps="$steps" \
        log.every=10 checkpoint.dir="$CALL/train/$name" "$@"
}
curves() {
    python3 - "$CALL/train" <<'EOF'
import glob, json, os, statistics, sys
root = sys.argv[1]
runs = {}
for path in sorted(glob.glob(os.path.join(root, '*', 'metrics.jsonl'))):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    runs[os.path.basename(os.path.dirname(path))] = [r for r in rows if r.get('kind') == 'train']
names = sorted(runs)
steps = sorted({r['step'] for n in names for r in runs[n]})
lines = ['step ' + ' '.join(f'{n + " loss":>16} {n + " nmse":>16}' for n in names)]
for s in steps:
    row = [f'{s:>4}']
    for n in names:
        r = next((r for r in runs[n] if r['step'] == s), None)
        row.append(f"{r['loss']:>16.5f} {r['nmse']:>16.5f}" if r else f"{'-':>16} {'-':>16}")
    lines.append(' '.join(row))
lines.append('')
for n in names:
    rates = [r['images_per_s'] for r in runs[n][2:]] or [0]
    last = runs[n][-1] if runs[n] else {}
    lines.append(f"{n}: {len(runs[n])} points, last step {last.get('step')}, loss {last.get('loss')}, nmse "
                 f"{last.get('nmse')}, perplexity {last.get('perplexity')}, median images/s {statistics.median(rates):.0f}")
open(os.path.join(root, 'curves.txt'), 'w').write('\n'.join(lines) + '\n')
print('\n'.join(lines[-len(names):]))
try:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for n in names:
        xs = [r['step'] for r in runs[n]]
        axes[0].plot(xs, [r['loss'] for r in runs[n]], label=n)
        axes[1].plot(xs, [r['perplexity'] for r in runs[n]], label=n)
    axes[0].set_yscale('log'); axes[0].set_title('loss'); axes[1].set_title('perplexity')
    for a in axes:
        a.set_xlabel('step'); a.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(root, 'curves.png'), dpi=90)
    print('wrote curves.png')
except Exception as e:
    print('no plot:', e)
EOF
}
phase_train() {
    have_build || return 1
    mkdir -p "$CALL/train"
    local steps=${VQ_GPU_TRAIN_STEPS:-2000} cpu_s=${VQ_GPU_CPU_TRAIN_S:-90} q
    for q in ema vq; do
        step "train-gpu-$q" 300 train_run "gpu-$q" cuda "$q" "$steps"
    done
    for q in ema vq; do   # as many steps as fit: SIGTERM at the budget -> checkpoint, exit 75
        STEP_OK_CODES=75 step "train-cpu-$q" $((cpu_s + 60)) timeout --preserve-status -s TERM -k 60 "$cpu_s" \
            bash -c "$(declare -f cifar_synth train_run); train_run cpu-$q cpu $q $steps"
    done
    step train-curves 60 curves
}

# ---- nccl ----------------------------------------------------------------------------------------
nccl_runs() {
    mpirun_cmd
    local common=(--config configs/cifar.yaml data.dataset=synthetic data.synthetic_count=8192 train.steps=300
                  log.every=100 checkpoint.every=0 train.device=cuda train.eval_every=0 train.eval_batches=2)
    local rc=0
    echo "---- np=1 dist.backend=nccl, batch 256"
    "${MPIRUN[@]}" -np 1 "$BIN" train "${common[@]}" train.batch_size=256 dist.backend=nccl \
        checkpoint.dir="$CALL/nccl/np1-nccl" || rc=1
    echo "---- np=1 dist.backend=mpi, batch 256"
    "${MPIRUN[@]}" -np 1 "$BIN" train "${common[@]}" train.batch_size=256 dist.backend=mpi \
        checkpoint.dir="$CALL/nccl/np1-mpi" || rc=1
    echo "---- np=2 dist.backend=mpi on one GPU, batch 128 per rank, dist.verify_every=100"
    CUDA_VISIBLE_DEVICES=0 "${MPIRUN[@]}" -np 2 "$BIN" train "${common[@]}" train.batch_size=128 dist.backend=mpi \
        dist.verify_every=100 checkpoint.dir="$CALL/nccl/np2-mpi" || rc=1
    echo "---- np=2 dist.backend=nccl on one GPU: must be refused with a message"
    if CUDA_VISIBLE_DEVICES=0 timeout 120 "${MPIRUN[@]}" -np 2 "$BIN" train "${common[@]}" train.steps=5 \
        train.batch_size=128 dist.backend=nccl checkpoint.dir="$CALL/nccl/np2-nccl" >"$CALL/nccl/np2-nccl.log" 2>&1; then
        echo "FAIL: np=2 dist.backend=nccl on one GPU ran"; rc=1
    else
        echo "refused as expected:"; grep -i "error" "$CALL/nccl/np2-nccl.log" | head -n 3
    fi
    for d in np1-nccl np1-mpi np2-mpi; do
        echo "$d: $(grep '"kind":"train"' "$CALL/nccl/$d/metrics.jsonl" 2>/dev/null | tail -n 1 | cut -c1-400)"
    done
    return $rc
}
ctest_nccl() {
    cd "$BUILD" || return 1
    if [ ! -f "$ROOT/tests/scripts/test_gpu_nccl.sh" ]; then
        echo "tests/scripts/test_gpu_nccl.sh is not in this tree: nothing to run"; return 1
    fi
    VQ_REQUIRE_GPU=1 ctest -R '^test_gpu_nccl$' --output-on-failure --timeout 600
}
phase_nccl() {
    have_build || return 1
    mkdir -p "$CALL/nccl"
    if [ -n "${GPU_CTEST_RAN:-}" ]; then
        note "nccl-ctest                     (test_gpu_nccl ran with the test phase above: see test-gpu)"
    else
        step nccl-ctest 300 ctest_nccl
    fi
    step nccl-runs 300 nccl_runs
}

# ---- bench ---------------------------------------------------------------------------------------
bench_compare() {
    if [ ! -f "$ROOT/bench/compare.py" ]; then
        echo "bench/compare.py is not in this tree (written by another change): no benchmark"; return 1
    fi
    local gpu name
    gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 | grep -oiE 'h100|h200|a100|l40s?|[a-z][0-9]{2,3}' | head -n 1 | tr 'A-Z' 'a-z')
    name=$(date -u +%F)-${gpu:-gpu}
    echo "results folder: bench/$name (copy to bench/results/$name)"
    # shellcheck disable=SC2086
    python3 "$ROOT/bench/compare.py" --bin "$BIN" --python "$(command -v python3)" --out "$CALL/bench" --name "$name" \
        ${VQ_BENCH_ARGS:---device cuda --batch 256 --steps 200 --warmup 20 --repeat 2 --loss-steps 1000 quantizer.type=ema}
}
phase_bench() {
    have_build || return 1
    step bench 540 bench_compare
}

# ---- profile / sanitize --------------------------------------------------------------------------
profile_nsys() {
    local nsys
    nsys=$(find_nsys) || { echo "no nsys on this machine"; return 3; }
    mkdir -p "$CALL/profile"
    cifar_synth
    "$nsys" profile --trace=cuda,nvtx,osrt --force-overwrite true -o "$CALL/profile/train" --stats=true \
        "$BIN" train "${CIFAR_SYNTH[@]}" train.device=cuda train.steps=60 log.every=20 checkpoint.dir="$CALL/profile/run"
}
profile_ncu() {
    command -v ncu >/dev/null || { echo "no ncu on this machine"; return 3; }
    cifar_synth
    # skip start-up and warm-up (about 10 steps' launches), then every kernel of the next steps
    ncu --clock-control none --launch-skip "${VQ_NCU_SKIP:-1500}" --launch-count "${VQ_NCU_COUNT:-300}" \
        --print-summary per-kernel \
        "$BIN" train "${CIFAR_SYNTH[@]}" train.device=cuda train.steps=40 log.every=20 checkpoint.dir="$CALL/profile/ncu-run"
}
phase_profile() {
    have_build || return 1
    if ! find_nsys >/dev/null; then
        note "profile: no nsys on this machine; Nsight Compute's per-kernel summary instead"
        step profile-ncu 300 profile_ncu
    elif ! step profile-nsys 240 profile_nsys; then
        note "profile: nsys failed; Nsight Compute's per-kernel summary instead"
        step profile-ncu 300 profile_ncu
    fi
}
sanitize_one() {   # sanitize_one TOOL
    local cs
    cs=$(command -v compute-sanitizer || ls "$CUDA_HOME"/bin/compute-sanitizer 2>/dev/null) || { echo "no compute-sanitizer"; return 3; }
    "$cs" --tool "$1" --error-exitcode 3 "$BIN" debug-step --config configs/smoke.yaml --out "$CALL/sanitize-$1" \
        train.device=cuda
}
phase_sanitize() {
    have_build || return 1
    local t
    for t in memcheck racecheck initcheck; do
        step "sanitize-$t" 180 sanitize_one "$t"
    done
}

# ---- main ----------------------------------------------------------------------------------------
setup || exit 1
for p in "${phases[@]}"; do
    case "$p" in
        setup | unpack) ;;
        *) "phase_$p" ;;
    esac
done
exit 0
