#!/usr/bin/env bash
# Install what Synesthete needs on a fresh Debian/Ubuntu machine, idempotently.
#
#   bash scripts/setup.sh          # to run it: ffmpeg (apt), .venv with CPU torch 2.13.0, the project,
#                                  # and the musicnn wheel that ships the pretrained weights
#   bash scripts/setup.sh --test   # the same + what only the tests need: the dev extras (pytest, ruff,
#                                  # selenium, librosa, ...), headless Chromium + chromedriver (apt) for
#                                  # the web page's browser tests, and a Milvus standalone server in
#                                  # .venv/milvus-server for the store tests' server leg
#
# Opt-outs (environment):
#   SKIP_APT=1            don't touch apt (install ffmpeg, and for --test chromium, yourself)
#   SKIP_BROWSER=1        --test without Chromium: the browser tests then skip, saying why
#   SKIP_MILVUS_SERVER=1  --test without the Milvus server: its store tests then skip, saying why
#
# musicnn is installed with --no-deps: its TensorFlow pin is obsolete and TF is never used at run time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TEST=0
case "${1:-}" in
  "") ;;
  --test) TEST=1 ;;
  *) echo "usage: bash scripts/setup.sh [--test]" >&2; exit 2 ;;
esac

PY="${PYTHON:-python3}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ "$TEST" = 1 ] && [ "${SKIP_BROWSER:-0}" != 1 ]; then
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
# a stamp per layer, so a pyproject.toml change reinstalls and `--test` after a plain setup adds only the extras
if ! "$VPY" -c 'import engine, torch, pymilvus, discord, musicnn' >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.synesthete-installed ]; then
  echo "== pip install (torch 2.13.0 CPU, the project)"
  "$VPY" -m pip install -q --upgrade pip
  "$VPY" -m pip install -q "torch==2.13.0"
  "$VPY" -m pip install -q -e .
  "$VPY" -m pip install -q --no-deps "musicnn==0.1.0"
  touch .venv/.synesthete-installed
fi
if [ "$TEST" = 1 ]; then
  if ! "$VPY" -c 'import pytest, pytest_asyncio, selenium, librosa' >/dev/null 2>&1 \
     || [ pyproject.toml -nt .venv/.synesthete-test-installed ]; then
    echo "== pip install the test extras (.[dev])"
    "$VPY" -m pip install -q -e ".[dev]"
    touch .venv/.synesthete-test-installed
  fi
  # A real Milvus standalone (the `milvus` wheel ships the server binary) for the store tests'
  # server leg and the benchmarks (tests/milvus_server.py).  Its own venv: it pins old deps.
  MVENV=.venv/milvus-server
  if [ "${SKIP_MILVUS_SERVER:-0}" != 1 ] && ! "$MVENV/bin/python" -c 'import milvus' >/dev/null 2>&1; then
    echo "== pip install milvus==2.3.5 (standalone server, for the tests) into $MVENV"
    "$PY" -m venv "$MVENV"
    "$MVENV/bin/python" -m pip install -q "milvus==2.3.5"
  fi
fi
echo "== environment ready$([ "$TEST" = 1 ] && echo ' for the tests'):" \
     "$("$VPY" -c 'import torch, pymilvus; print("torch", torch.__version__, "pymilvus", pymilvus.__version__)')"
