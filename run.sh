#!/usr/bin/env bash
# The two commands: set up and run Synesthete on a fresh Debian/Ubuntu machine (on the embedded
# default store, milvus-lite), or set up for the tests and run them.
#
#   ./run.sh                 setup + demo catalogue + a demo query, then serve: the web page on
#                            http://localhost:8080 and, when DISCORD_TOKEN is set, the Discord bot
#   ./run.sh --no-serve      setup + demo + query, then stop
#   ./run.sh --setup-only    only install what running needs (apt ffmpeg, .venv with CPU torch, the project)
#   ./run.sh --test [ARGS]   install what the tests need too (scripts/setup.sh --test: dev extras,
#                            Chromium + chromedriver, a Milvus server venv), then .venv/bin/python -m pytest ARGS
#
# Data goes to $SYNESTHETE_DATA_DIR (default ~/.local/share/synesthete).  The opt-outs
# (SKIP_APT, SKIP_BROWSER, SKIP_MILVUS_SERVER) are described in scripts/setup.sh and the README.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [ "${1:-}" = "--test" ]; then
  shift
  bash scripts/setup.sh --test
  rc=0
  .venv/bin/python -m pytest "$@" || rc=$?
  # pytest exit 5 = no tests were collected: a failure of the suite, not a pass
  if [ "$rc" = 5 ]; then echo "no tests were collected" >&2; exit 1; fi
  exit "$rc"
fi
case "${1:-}" in
  ""|--no-serve|--setup-only) ;;
  *) echo "usage: ./run.sh [--no-serve | --setup-only | --test [pytest args]]" >&2; exit 2 ;;
esac

bash scripts/setup.sh
[ "${1:-}" = "--setup-only" ] && exit 0

BIN=.venv/bin
echo "== building the demo catalogue (Debian game soundtracks; the first run takes a few minutes)"
"$BIN/synesthete-index" demo

DATA_DIR="$("$BIN/python" -c 'from engine.settings import Settings; print(Settings.from_env().data_dir)')"
NOTE="$DATA_DIR/demo/voice_note.ogg"
echo
echo "== a voice-message-like recording of a demo track: $BIN/synesthete query $NOTE"
"$BIN/synesthete" query "$NOTE"
echo

[ "${1:-}" = "--no-serve" ] && exit 0

TOKEN="${DISCORD_TOKEN:-}"
if [ -z "$TOKEN" ] && [ -f .env ]; then
  TOKEN="$(grep -E '^DISCORD_TOKEN=' .env | tail -n1 | cut -d= -f2- || true)"
fi
# milvus-lite lets one process open the index, so the bot and the web page share one process
if [ -n "$TOKEN" ]; then
  echo "== starting the Discord bot and the web page (Ctrl-C to stop)"
  exec "$BIN/synesthete-bot" --with-web
else
  cat <<'MSG'
== No DISCORD_TOKEN set, so the Discord bot is not started.
   To run it: create an application at https://discord.com/developers/applications,
   put its bot token into .env as DISCORD_TOKEN=... (see .env.example and docs/bot.md),
   then run ./run.sh again.
   Meanwhile, try the web page below, or in another terminal (it asks this server):
       .venv/bin/synesthete query any-audio-file.mp3
       .venv/bin/synesthete similar "track name"
== starting the web page (Ctrl-C to stop)
MSG
  exec "$BIN/synesthete-web"
fi
