#!/usr/bin/env bash
# gpu_bundle.sh: download (here, on Debian 12 with apt) the Debian packages that vqvae_dist needs to
# BUILD and RUN on a lent GPU machine that has CUDA, cuDNN, NCCL, CMake and PyTorch but no Open
# MPI, HDF5, libyaml, OpenBLAS and no package registry. They go to .gpu_bundle/debs/ (ignored by
# git; name .gpu_bundle in the device tool's `carry`); tools/gpu_check.sh unpacks them there with
# `dpkg -x` into a private prefix (tools/gpu_env.sh). Also .gpu_bundle/include/: this machine's
# cuDNN and NCCL headers, used there only for a library found without its headers (some wheels).
# docs/GPU_RUNBOOK.md has the whole procedure.
#
#   tools/gpu_bundle.sh            download, list the packages with their sizes, check the total
#   tools/gpu_bundle.sh --check    also unpack into a temporary prefix here and check that the
#                                  headers, libraries and programs are there and that every library
#                                  and program resolves its dependencies inside the bundle (besides
#                                  glibc, libstdc++ and libgcc_s, which every machine has)
#   tools/gpu_bundle.sh --isolated (root, needs unshare) also: hide this machine's own copies of Open
#                                  MPI, HDF5, libyaml, OpenBLAS, libpng/zlib headers, pkg-config, ...
#                                  in a private mount namespace and run tools/gpu_check.sh's build
#                                  and nccl steps (CPU only: VQ_GPU_CHECK_DEVICE=cpu VQ_GPU_CUDA=OFF;
#                                  mpirun and training) against the bundle alone, as the GPU machine will
#
# The list below was made from `ldd build/vqvae_dist`, ldd of Open MPI's programs and plugins and of
# PMIx's plugins, mapped to packages with `dpkg -S`; --check re-derives the closure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DIR=$ROOT/.gpu_bundle
LIMIT_MIB=60

# Headers, linker names (.so) and pkg-config files for building.
BUILD_PKGS=(libopenmpi-dev libhdf5-dev libyaml-dev libopenblas-pthread-dev libpng-dev zlib1g-dev)
# Programs: mpirun/orted/the mpicc wrapper (openmpi-bin), their data files (openmpi-common),
# pkg-config (pkgconf) in case the machine has none.
TOOL_PKGS=(openmpi-bin openmpi-common pkgconf pkgconf-bin libpkgconf3)
# Run-time libraries: ours and what they load.
RUNTIME_PKGS=(
    libopenmpi3 libpmix2 libevent-core-2.1-7 libevent-pthreads-2.1-7 libhwloc15 libudev1   # Open MPI
    libfabric1 libucx0 libibverbs1 ibverbs-providers librdmacm1 libpsm2-2 libpsm-infinipath1  # its plugins'
    libmunge2 libnl-3-200 libnl-route-3-200 libnuma1 libuuid1 libatomic1                     #   transports
    libhdf5-103-1 libsz2 libaec0                                                              # HDF5 (serial)
    libcurl4 libnghttp2-14 libidn2-0 librtmp1 libssh2-1 libpsl5 libssl3 libgssapi-krb5-2      # HDF5 links curl
    libkrb5-3 libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2 libldap-2.5-0 libsasl2-2
    libbrotli1 libzstd1 libunistring2 libgnutls30 libhogweed6 libnettle8 libgmp10 libp11-kit0
    libtasn1-6 libffi8
    libyaml-0-2                                                                               # config
    libopenblas0-pthread libgfortran5 libquadmath0                                            # CPU backend
    libpng16-16 zlib1g                                                                        # PNG, zlib
)
PACKAGES=("${BUILD_PKGS[@]}" "${TOOL_PKGS[@]}" "${RUNTIME_PKGS[@]}")

mode=${1:-}
case "$mode" in "" | --check | --isolated) ;; *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;; esac

# ---- download ----------------------------------------------------------------------------------
mkdir -p "$DIR/debs"
rm -f "$DIR"/debs/*.deb
echo "gpu_bundle: downloading ${#PACKAGES[@]} packages into $DIR/debs"
if ! (cd "$DIR/debs" && apt-get download -q "${PACKAGES[@]}" >"$DIR/download.log" 2>&1); then
    echo "gpu_bundle: apt-get download failed; try 'apt-get update' first:" >&2
    tail -n 20 "$DIR/download.log" >&2
    exit 1
fi
{
    echo "# .gpu_bundle/debs: $(date -u +%FT%TZ), $(grep PRETTY_NAME /etc/os-release | cut -d= -f2)"
    for deb in "$DIR"/debs/*.deb; do
        printf '%-32s %-28s %8.1f KiB\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" \
            "$(echo "$(stat -c %s "$deb") / 1024" | bc -l)"
    done
} >"$DIR/PACKAGES.txt"
cat "$DIR/PACKAGES.txt"
rm -rf "$DIR/include"
mkdir -p "$DIR/include"
cp /usr/local/cuda/include/cudnn*.h /usr/local/cuda/include/nccl*.h "$DIR/include/" 2>/dev/null ||
    echo "gpu_bundle: no cuDNN/NCCL headers in /usr/local/cuda/include to copy (a fallback only)"
total=$(du -cb "$DIR"/debs/*.deb "$DIR"/include | tail -n 1 | cut -f1)
count=$(ls "$DIR"/debs/*.deb | wc -l)
printf 'gpu_bundle: %d packages, %.1f MiB in all (limit %d MiB; the device tool carries 64 MiB)\n' \
    "$count" "$(echo "$total / 1048576" | bc -l)" "$LIMIT_MIB"
if [ "$count" -ne "${#PACKAGES[@]}" ]; then
    echo "gpu_bundle: asked for ${#PACKAGES[@]} packages, got $count" >&2
    exit 1
fi
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
    echo "gpu_bundle: too big; the largest:" >&2
    ls -S -l "$DIR"/debs/*.deb | head -n 5 >&2
    exit 1
fi
[ -z "$mode" ] && exit 0

# ---- check: unpack into a temporary prefix and look ---------------------------------------------
prefix=$(mktemp -d /tmp/gpu_bundle_check.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
echo "gpu_bundle: unpacking into $prefix with tools/gpu_env.sh (VQ_GPU_LIBS=all)"
(
    set +e   # gpu_env.sh is written for scripts without -e (its lookups fail softly)
    BUNDLE=$DIR PREFIX=$prefix/p VQ_GPU_LIBS=all
    # shellcheck source=tools/gpu_env.sh
    source "$ROOT/tools/gpu_env.sh"
    gpu_env_setup "$prefix" || exit 1
) >"$prefix/setup.log" 2>&1 || { cat "$prefix/setup.log"; exit 1; }
P=$prefix/p
U=$P/usr
L=$U/lib/x86_64-linux-gnu
bad=0
need() {   # need PATH...: each must exist (after following links)
    local f
    for f in "$@"; do
        if [ -e "$f" ]; then echo "  ok   ${f#"$P"/}"; else echo "  MISSING ${f#"$P"/}"; bad=$((bad + 1)); fi
    done
}
echo "gpu_bundle: headers"
need "$L"/openmpi/include/mpi.h "$U"/include/hdf5/serial/hdf5.h "$U"/include/yaml.h \
     "$U"/include/x86_64-linux-gnu/openblas-pthread/cblas.h "$U"/include/png.h "$U"/include/zlib.h
echo "gpu_bundle: libraries to link (.so) and pkg-config files"
need "$L"/openmpi/lib/libmpi.so "$L"/hdf5/serial/libhdf5.so "$L"/libyaml.so \
     "$L"/openblas-pthread/libopenblas.so "$L"/libpng.so "$L"/libz.so \
     "$L"/pkgconfig/yaml-0.1.pc "$L"/pkgconfig/openblas.pc "$L"/pkgconfig/libpng.pc "$L"/pkgconfig/zlib.pc
echo "gpu_bundle: programs and data"
need "$U"/bin/orterun "$U"/bin/orted "$U"/bin/opal_wrapper "$U"/bin/mpicc.openmpi "$U"/bin/pkgconf \
     "$U"/share/openmpi/mpicc-wrapper-data.txt "$L"/openmpi/lib/openmpi3/mca_ess_singleton.so \
     "$L"/pmix2/lib/pmix/pmix_mca_pcompress_zlib.so
echo "gpu_bundle: dependencies of every library and program, with LD_LIBRARY_PATH=the bundle only"
base='^(linux-vdso|libc|libm|libdl|libpthread|librt|libresolv|libutil|ld-linux-x86-64|libstdc\+\+|libgcc_s)\.so'
export LD_LIBRARY_PATH=$P/lib-bundle:$L/ucx   # UCX's transport modules load each other from their folder
outside=$(
    find "$U/bin" "$L" -type f \( -name '*.so*' -o -perm -u+x \) 2>/dev/null | while read -r f; do
        file -b "$f" | grep -q '^ELF' || continue
        ldd "$f" 2>/dev/null | awk -v f="${f#"$P"/}" '/=>/ {print $1, $3, f} /not found/ {print $1, "NOT-FOUND", f}'
    done | while read -r soname path from; do
        [[ "$soname" =~ $base ]] && continue
        case "$path" in "$P"/*) continue ;; esac
        echo "$soname -> $path (needed by $from)"
    done | sort -u
)
if [ -n "$outside" ]; then
    echo "$outside" | sed 's/^/  OUTSIDE /'
    echo "  (libraries above resolve outside the bundle: on the GPU machine they must exist or be added)"
    # only a failure when something is not found at all, or a needed library comes from this system
    bad=$((bad + $(echo "$outside" | grep -c .)))
else
    echo "  ok   all dependencies resolve inside the bundle (plus glibc, libstdc++, libgcc_s)"
fi
echo "gpu_bundle: Open MPI from the prefix"
(
    export OPAL_PREFIX=$U PMIX_INSTALL_PREFIX=$U
    "$U"/bin/ompi_info --path prefix --path pkglibdir 2>&1 | sed 's/^/  /'
    "$U"/bin/mpicc.openmpi --showme:compile 2>&1 | sed 's/^/  mpicc --showme:compile: /'
)
if [ "$bad" -ne 0 ]; then
    echo "gpu_bundle: --check FAILED ($bad problems above)"
    exit 1
fi
echo "gpu_bundle: --check passed"
[ "$mode" = --check ] && exit 0

# ---- isolated: build and run with this machine's own copies hidden ------------------------------
[ "$(id -u)" = 0 ] || { echo "gpu_bundle: --isolated needs root (mount namespace)" >&2; exit 1; }
HIDE_PKGS=(libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common libpmix2 libpmix-dev libhdf5-dev libhdf5-103-1
           hdf5-helpers hdf5-tools libyaml-dev libyaml-0-2 libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread
           libopenblas0 libgfortran5 libsz2 libaec0 libaec-dev libpng-dev zlib1g-dev pkgconf pkgconf-bin pkg-config
           libpkgconf3 libevent-core-2.1-7 libevent-pthreads-2.1-7 libevent-dev libhwloc15 libhwloc-dev
           libhwloc-plugins libfabric1 libucx0 libpsm2-2 libpsm-infinipath1 libmunge2 mpi-default-bin mpi-default-dev)
hide_list=$prefix/hide.txt
for pkg in "${HIDE_PKGS[@]}"; do
    dpkg -L "$pkg" 2>/dev/null || true
done | while read -r f; do   # regular files only: a -dev package's link (libz.so) may point into a kept package
    if [ -f "$f" ] && [ ! -L "$f" ]; then echo "$f"; fi
done | sort -u >"$hide_list"
for f in /etc/alternatives/mpi* /etc/alternatives/*openmpi* /etc/alternatives/*blas* /etc/alternatives/*lapack* \
         /etc/alternatives/h5* /usr/bin/mpicc /usr/bin/mpirun /usr/bin/mpiexec /usr/bin/pkg-config /usr/bin/h5cc; do
    if [ -e "$f" ]; then readlink -f "$f"; fi
done | sort -u >>"$hide_list"
echo "gpu_bundle: --isolated: hiding $(wc -l <"$hide_list") files of this machine's own packages"
: >"$prefix/poison"
chmod 644 "$prefix/poison"
out=$ROOT/.gpu_runs/isolated-check
mkdir -p "$out"
unshare -m --propagation private bash -c '
    set -u
    while read -r f; do mount --bind "$1" "$f" 2>/dev/null; done <"$2"
    echo "hidden: /usr/include/hdf5/serial/hdf5.h is now $(stat -c %s /usr/include/hdf5/serial/hdf5.h) bytes," \
         "libmpi.so.40 $(stat -L -c %s /usr/lib/x86_64-linux-gnu/libmpi.so.40) bytes"
    VQ_GPU_PREFIX="$3/p" VQ_GPU_BUILD="$4/build-gpu-isolated" VQ_GPU_CHECK_DEVICE=cpu VQ_GPU_CUDA=OFF OUT="$5" \
        VQ_GPU_CHECK_STEPS=nccl VQ_GPU_CHECK_BUDGET=1500 bash tools/gpu_check.sh
' _ "$prefix/poison" "$hide_list" "$prefix" "$ROOT" "$out"
rc=$?
if grep -qE "FAIL|TIMEOUT|NOT RUN" "$out/summary.txt" 2>/dev/null || [ $rc -ne 0 ]; then
    echo "gpu_bundle: --isolated FAILED (see $out/summary.txt and the logs in .gpu_runs/)"
    exit 1
fi
echo "gpu_bundle: --isolated passed: configured, built and trained under mpirun from the bundle alone"
