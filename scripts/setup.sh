#!/usr/bin/env bash
# Installs what lowband needs from Debian packages (only what is missing: the toolchain and
# libraries, python3 for the data scripts, Fashion-MNIST), then configures and builds it in
# ./build. Idempotent: a second run installs nothing and rebuilds only changes.
# Works as root or through sudo. The CUDA backend is built when /usr/local/cuda has nvcc
# (override with LOWBAND_MESON_ARGS="-Dcuda=disabled" or -Dtoolkit_dir=...).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  g++ pkg-config meson ninja-build
  mpich libmpich-dev
  libyaml-cpp-dev libcli11-dev libopenblas-openmp-dev zlib1g-dev
  libgtest-dev
  clang libclang-rt-dev libomp-dev
  python3 dataset-fashion-mnist
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all Debian packages present"
fi

if [ ! -f build/build.ninja ]; then
  # shellcheck disable=SC2086
  meson setup build ${LOWBAND_MESON_ARGS:-}
fi
ninja -C build
echo "setup: built ./build/lowband"
