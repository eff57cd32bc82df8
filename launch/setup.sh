#!/usr/bin/env bash
# launch/setup.sh — install loco's dependencies, build it, prepare the default corpus.
#
#   bash launch/setup.sh          install + build + prepare data/default
#   bash launch/setup.sh test     ... then run the whole test suite (what CI runs)
#   bash launch/setup.sh run      ... then run the default job (launch/default-job.sh)
#
# Works on Debian 12 and Ubuntu 24.04 as root (or with sudo). Idempotent: packages already
# present are skipped, the build is incremental, the corpus is prepared once.
#
# Offline machines (clusters, the GPU lab): put the .deb files in a folder and set
# LOCO_PKG_DIR=/path/to/debs. Packages missing from the system are then unpacked from there into
# $LOCO_PKG_DIR/root (no registry needed) and the build is pointed at them.
#
# Environment:
#   LOCO_BUILD_DIR   build directory (default: build)
#   LOCO_BENCH_DEPS  1 = also install python3-torch + OpenBLAS for the PyTorch baselines
#   LOCO_CUDA        AUTO (default), ON or OFF: build the CUDA path
#   LOCO_PKG_DIR     folder of .deb files for offline installs (see above)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
build_dir=${LOCO_BUILD_DIR:-build}
mode=${1:-setup}
case "$mode" in
  setup|test|run) ;;
  -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
  *) echo "setup.sh: unknown mode '$mode' (setup, test or run)" >&2; exit 2 ;;
esac

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup.sh: run as root or install sudo" >&2; exit 1; }
  sudo_cmd=(sudo)
fi

packages=(build-essential cmake pkg-config git openmpi-bin libopenmpi-dev libyaml-dev zlib1g-dev
          libcriterion-dev libsodium-dev fortunes dict-gcide python3 iproute2 procps)
if [ "${LOCO_BENCH_DEPS:-0}" = 1 ]; then
  packages+=(python3-torch libopenblas0-pthread python3-numpy)
fi

# present PKG: installed by dpkg, or what it provides is already usable (images often carry
# tools installed some other way, e.g. cmake from pip).
present() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed" && return 0
  case "$1" in
    build-essential) command -v cc >/dev/null && command -v make >/dev/null ;;
    cmake|git|python3|pkg-config) command -v "$1" >/dev/null ;;
    openmpi-bin) command -v mpirun >/dev/null ;;
    libopenmpi-dev) command -v mpicc >/dev/null ;;
    zlib1g-dev) [ -f /usr/include/zlib.h ] ;;
    libyaml-dev) pkg-config --exists yaml-0.1 2>/dev/null ;;
    libsodium-dev) pkg-config --exists libsodium 2>/dev/null ;;
    libcriterion-dev) pkg-config --exists criterion 2>/dev/null ;;
    fortunes) [ -f /usr/share/games/fortunes/computers ] ;;
    dict-gcide) [ -f /usr/share/dictd/gcide.dict.dz ] ;;
    iproute2) command -v ip >/dev/null ;;
    procps) command -v ps >/dev/null ;;
    *) return 1 ;;
  esac
}

missing=()
for p in "${packages[@]}"; do
  present "$p" || missing+=("$p")
done

# unpack_offline DIR: unpack every .deb in DIR whose package dpkg does not have into DIR/root,
# repair library links that point at files the root lacks, and point pkg-config, CMake, the
# linker and the loader at the root. Writes DIR/root/env.sh for later shells.
unpack_offline() {
  local dir=$1 root=$1/root deb pkg n=0
  mkdir -p "$root"
  root=$(cd "$root" && pwd)
  for deb in "$dir"/*.deb; do
    [ -e "$deb" ] || continue
    pkg=$(dpkg-deb -f "$deb" Package)
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
      continue
    fi
    dpkg -x "$deb" "$root"
    n=$((n + 1))
  done
  say "unpacked $n packages from $dir into $root"
  local arch_dir link target base sys
  arch_dir=$(ls -d "$root"/usr/lib/*-linux-gnu 2>/dev/null | head -1 || true)
  # A -dev package's libX.so may point at a runtime library the system has under another
  # version (Debian vs Ubuntu): point it at the system's libX.so.N.
  for link in "$root"/usr/lib/*-linux-gnu/*.so; do
    [ -L "$link" ] || continue
    target=$(readlink "$link")
    if [ "${target#/}" != "$target" ] && [ -e "$root$target" ]; then
      ln -sf "$root$target" "$link"
    elif [ ! -e "$link" ]; then
      base=$(basename "$link")
      sys=$(ls /usr/lib/*-linux-gnu/"$base".* /lib/*-linux-gnu/"$base".* 2>/dev/null | head -1 || true)
      if [ -n "$sys" ]; then
        ln -sf "$sys" "$link"
      fi
    fi
  done
  # .pc files name /usr as their prefix; dependencies only needed for static linking are not
  # carried, so drop them (loco links shared libraries).
  local pc
  for pc in "$root"/usr/lib/*/pkgconfig/*.pc "$root"/usr/lib/pkgconfig/*.pc \
            "$root"/usr/share/pkgconfig/*.pc; do
    [ -e "$pc" ] || continue
    sed -i -e "s#^prefix=/usr\$#prefix=$root/usr#" -e '/^Requires.private:/d' \
        -e '/^Libs.private:/d' "$pc"
  done
  cat >"$root/env.sh" <<ENV
# Source this before running loco's binaries and tests built against $root.
export PATH="\$PATH:$root/usr/bin"
export PKG_CONFIG_PATH="$root/usr/lib/pkgconfig:$root/usr/share/pkgconfig${arch_dir:+:$arch_dir/pkgconfig}\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="${arch_dir:+$arch_dir}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export LOCO_CORPUS_ROOT="$root"
ENV
  # shellcheck disable=SC1091
  . "$root/env.sh"
  cmake_extra+=("-DCMAKE_PREFIX_PATH=$root/usr")
  say "later shells: . $root/env.sh"
}

cmake_extra=()
if [ ${#missing[@]} -gt 0 ] && [ -n "${LOCO_PKG_DIR:-}" ]; then
  say "missing: ${missing[*]}; installing offline from $LOCO_PKG_DIR"
  unpack_offline "$LOCO_PKG_DIR"
elif [ ${#missing[@]} -gt 0 ]; then
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "all packages present"
fi

say "configuring and building in $build_dir"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DLOCO_CUDA="${LOCO_CUDA:-AUTO}" \
      "${cmake_extra[@]}" >"$build_dir.cmake.log" 2>&1 || { cat "$build_dir.cmake.log"; exit 1; }
if ! cmake --build "$build_dir" -j"$(nproc)" >"$build_dir.build.log" 2>&1; then
  grep -E -B2 -A6 'error|Error' "$build_dir.build.log" | head -80
  echo "setup.sh: build failed; full log in $build_dir.build.log" >&2
  exit 1
fi

if [ ! -f data/default/train.tok ] || [ ! -f data/default/val.tok ]; then
  fortunes_dir=/usr/share/games/fortunes
  gcide=/usr/share/dictd/gcide.dict.dz
  [ -d "$fortunes_dir" ] || fortunes_dir=${LOCO_CORPUS_ROOT:-}$fortunes_dir
  [ -f "$gcide" ] || gcide=${LOCO_CORPUS_ROOT:-}$gcide
  say "preparing the default corpus (fortunes + dict-gcide) in data/default"
  "$build_dir/loco" data prepare --out data/default "$fortunes_dir" "$gcide"
fi
"$build_dir/loco" version

case "$mode" in
  test)
    say "running the test suite"
    cd "$build_dir"
    ctest --output-on-failure --timeout 1200 ;;
  run)
    exec bash "$here/launch/default-job.sh" ;;
  *) say "done. Next: bash launch/setup.sh run (default job) or bash launch/setup.sh test" ;;
esac
