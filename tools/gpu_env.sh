# shellcheck shell=bash
# gpu_env.sh: source it. The environment of a lent GPU machine that has the CUDA toolkit, cuDNN,
# NCCL, CMake and PyTorch but none of our Debian dependencies (Open MPI, HDF5, libyaml, OpenBLAS,
# libpng) and no package registry: they travel as .debs (tools/gpu_bundle.sh, folder .gpu_bundle,
# carried with the call) and are unpacked with `dpkg -x` into a private prefix. Used by
# tools/gpu_check.sh (the GPU check) and tools/gpu_bundle.sh --check.
#   gpu_env_setup LOGDIR   unpack the bundle (if BUNDLE/debs has .debs; else the system's
#                          libraries are used), put it first on the paths, find cuDNN and NCCL,
#                          and write LOGDIR/versions.txt. Needs ROOT, BUNDLE, PREFIX set.
#   gpu_configure BUILD ON|OFF|AUTO   cmake with the prefix and, with CUDA, sm_90 and the
#                          cuDNN/NCCL found (TORCH_PYTHON: the Python for the torch tests);
#                          GPU_BUILD_TARGETS lists the targets a check needs.
ARCH=x86_64-linux-gnu

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
    # Libraries without headers (some wheels): the headers gpu_bundle.sh copied from the toolkit here.
    [ -n "$CUDNN_LIB" ] && [ -z "$CUDNN_H" ] && CUDNN_H=$(first "$BUNDLE/include/cudnn_version.h")
    [ -n "$NCCL_LIB" ] && [ -z "$NCCL_H" ] && NCCL_H=$(first "$BUNDLE/include/nccl.h")
    export NVCC CUDA_HOME CUDNN_H NCCL_H CUDNN_LIB NCCL_LIB
}

set_env() {
    if [ -d "$PREFIX/usr" ]; then   # the bundle, relocated: Open MPI and PMIx must be told where it is
        export LD_LIBRARY_PATH=$PREFIX/lib-bundle${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        export PATH=$PREFIX/bin-vq:$PATH
        export OPAL_PREFIX=$PREFIX/usr PMIX_INSTALL_PREFIX=$PREFIX/usr
    fi
    # we run as root there; no InfiniBand in the VM: the shared-memory and TCP transports, and no
    # cross-memory attach (often refused in VMs and containers)
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none
    export OMPI_MCA_mca_base_component_show_load_errors=0
    export PYTHONUNBUFFERED=1
    find_cuda_parts
    local d
    for d in "$CUDNN_LIB" "$NCCL_LIB"; do   # cuDNN loads its engine libraries by name
        [ -n "$d" ] && case ":${LD_LIBRARY_PATH:-}:" in *":$(dirname "$d"):"*) ;; *)
            export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$(dirname "$d") ;; esac
    done
}
record_versions() {   # record_versions FILE
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
        echo "== bundle: $(ls "$BUNDLE"/debs 2>/dev/null | wc -l) packages"
        cat "$BUNDLE/PACKAGES.txt" 2>/dev/null
        echo "== libraries taken from the system instead of the bundle (VQ_GPU_LIBS=${VQ_GPU_LIBS:-missing}):"
        cat "$PREFIX/libs-from-system.txt" 2>/dev/null
        echo "== Open MPI: $(ompi_info --version 2>&1 | head -n 1)"
        ompi_info --path prefix --path libdir --path pkglibdir 2>&1
    } >"$1" 2>&1
}
gpu_configure() {   # gpu_configure BUILD ON|OFF
    local BUILD=$1 CUDA_MODE=$2 gen=() args=()
    if command -v ninja >/dev/null; then gen=(-G Ninja); fi
    if [ -f "$BUILD/CMakeCache.txt" ]; then
        local had
        had=$(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$BUILD/CMakeCache.txt")
        if [ "$had" != "${gen[1]:-Unix Makefiles}" ] ||
           ! grep -qxF "VQ_DEPS_PREFIX:PATH=$([ -d "$PREFIX/usr" ] && echo "$PREFIX")" "$BUILD/CMakeCache.txt"; then
            echo "removing $BUILD (configured with another generator or prefix)"
            rm -rf "$BUILD"
        fi
    fi
    local deps=""
    [ -d "$PREFIX/usr" ] && deps=$PREFIX
    args=(-DCMAKE_BUILD_TYPE=Release -DVQ_DEPS_PREFIX="$deps" -DVQ_CUDA="$CUDA_MODE"
          -DVQ_TORCH_PYTHON="$TORCH_PYTHON")
    if [ "$CUDA_MODE" != OFF ] && [ -n "$NVCC" ]; then
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

# The targets a GPU check builds: the program and every GPU test program (ctest -L gpu runs them
# all; one not built is "Not Run", a failure), from tests/gpu/test_*.c as CMakeLists.txt registers
# them; a string, so that it can be exported.
GPU_BUILD_TARGETS="vqvae_dist $(cd "$ROOT/tests/gpu" && ls test_*.c | sed 's/\.c$//' | xargs)"

gpu_env_setup() {   # gpu_env_setup LOGDIR
    local debs=("$BUNDLE"/debs/*.deb)
    if [ -e "${debs[0]}" ]; then
        unpack_bundle >"$1/unpack.log" 2>&1 || { cat "$1/unpack.log"; return 1; }
        tail -n 1 "$1/unpack.log"
        make_lib_dir
    else
        echo "no .debs in $BUNDLE/debs: using this system's MPI, HDF5, yaml, OpenBLAS and libpng"
        rm -rf "$PREFIX"
    fi
    set_env
    record_versions "$1/versions.txt"
}
