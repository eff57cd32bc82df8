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

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done

cmake_extra=()
if [ ${#missing[@]} -gt 0 ] && [ -n "${LOCO_PKG_DIR:-}" ]; then
  # Offline: unpack the missing packages' .deb files into a private root.
  root="$LOCO_PKG_DIR/root"
  mkdir -p "$root"
  for deb in "$LOCO_PKG_DIR"/*.deb; do
    [ -e "$deb" ] || continue
    dpkg -x "$deb" "$root"
  done
  say "unpacked $(ls "$LOCO_PKG_DIR"/*.deb 2>/dev/null | wc -l) packages from $LOCO_PKG_DIR into $root"
  arch_dir=$(ls -d "$root"/usr/lib/*-linux-gnu 2>/dev/null | head -1 || true)
  export PKG_CONFIG_PATH="$root/usr/lib/pkgconfig:$root/usr/share/pkgconfig${arch_dir:+:$arch_dir/pkgconfig}${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  # pkg-config files name /usr as their prefix; point them at the private root.
  export PKG_CONFIG_SYSROOT_DIR=""
  for pc in "$root"/usr/lib/*/pkgconfig/*.pc "$root"/usr/lib/pkgconfig/*.pc "$root"/usr/share/pkgconfig/*.pc; do
    [ -e "$pc" ] && sed -i "s#^prefix=/usr\$#prefix=$root/usr#" "$pc"
  done
  export LD_LIBRARY_PATH="${arch_dir:+$arch_dir:}${LD_LIBRARY_PATH:-}"
  export LOCO_CORPUS_ROOT="$root"
  cmake_extra+=("-DCMAKE_PREFIX_PATH=$root/usr")
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
  corpus_root=${LOCO_CORPUS_ROOT:-}
  say "preparing the default corpus (fortunes + dict-gcide) in data/default"
  "$build_dir/loco" data prepare --out data/default \
    "$corpus_root/usr/share/games/fortunes" "$corpus_root/usr/share/dictd/gcide.dict.dz"
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
