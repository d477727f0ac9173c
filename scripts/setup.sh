#!/usr/bin/env bash
# Install everything Synesthete needs on a fresh Debian/Ubuntu machine, idempotently:
# ffmpeg (apt), a virtualenv in .venv with CPU torch 2.13.0, the project (+ dev extras),
# and the musicnn wheel that ships the pretrained weights (--no-deps: its TensorFlow pin
# is obsolete and TF is never used at run time).
#
#   bash scripts/setup.sh            # runtime + dev/test dependencies
#   SKIP_APT=1 bash scripts/setup.sh # don't touch apt
#   SKIP_BROWSER=1 bash scripts/setup.sh # no chromium (the web page's browser tests then skip)
#   SKIP_MILVUS_SERVER=1 bash scripts/setup.sh # no Milvus standalone (its store tests then skip)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY="${PYTHON:-python3}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
# headless Chromium + its driver for the web page's browser tests (tests/web); SKIP_BROWSER=1 skips them
if [ "${SKIP_BROWSER:-0}" != 1 ]; then
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
fi
if [ "${SKIP_APT:-0}" != 1 ] && [ "${#need_apt[@]}" -gt 0 ]; then
  echo "== apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq -o DPkg::Lock::Timeout=600
  $SUDO apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${need_apt[@]}" >/dev/null
fi
command -v ffmpeg >/dev/null || { echo "ffmpeg is required (apt-get install ffmpeg)" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
if ! "$VPY" -c 'import engine, torch, pymilvus, discord, musicnn' >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.synesthete-installed ]; then
  echo "== pip install (torch 2.13.0 CPU, project, dev extras)"
  "$VPY" -m pip install -q --upgrade pip
  "$VPY" -m pip install -q "torch==2.13.0"
  "$VPY" -m pip install -q -e ".[dev]"
  "$VPY" -m pip install -q --no-deps "musicnn==0.1.0"
  touch .venv/.synesthete-installed
fi
# A real Milvus standalone (the `milvus` wheel ships the server binary) for the store tests'
# server leg and the benchmarks (tests/milvus_server.py).  Its own venv: it pins old deps.
MVENV=.venv/milvus-server
if [ "${SKIP_MILVUS_SERVER:-0}" != 1 ] && ! "$MVENV/bin/python" -c 'import milvus' >/dev/null 2>&1; then
  echo "== pip install milvus==2.3.5 (standalone server) into $MVENV"
  "$PY" -m venv "$MVENV"
  "$MVENV/bin/python" -m pip install -q "milvus==2.3.5"
fi
echo "== environment ready: $("$VPY" -c 'import torch, pymilvus; print("torch", torch.__version__, "pymilvus", pymilvus.__version__)')"
