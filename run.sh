#!/usr/bin/env bash
# The one command: set everything up on a fresh Debian/Ubuntu machine and run Synesthete
# on the embedded default (milvus-lite).
#
#   ./run.sh                 setup + demo catalogue + a demo query, then serve: the web page on
#                            http://localhost:8080 and, when DISCORD_TOKEN is set, the Discord bot
#   ./run.sh --setup-only    only install (apt ffmpeg, .venv with CPU torch, the project)
#   ./run.sh --no-serve      setup + demo + query, then stop
#
# Data goes to $SYNESTHETE_DATA_DIR (default ~/.local/share/synesthete).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

bash scripts/setup.sh
[ "${1:-}" = "--setup-only" ] && exit 0

BIN=.venv/bin
echo "== building the demo catalogue (Debian game soundtracks; first run ~5-10 min)"
"$BIN/synesthete-index" demo

DATA_DIR="$("$BIN/python" -c 'from engine.settings import Settings; print(Settings.from_env().data_dir)')"
NOTE="$DATA_DIR/demo/voice_note.ogg"
echo
echo "== a voice-message-like recording of a demo track: synesthete query $NOTE"
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
   Meanwhile, try the web page below, or in another terminal (after Ctrl-C here):
       .venv/bin/synesthete query any-audio-file.mp3
       .venv/bin/synesthete similar "track name"
== starting the web page (Ctrl-C to stop)
MSG
  exec "$BIN/synesthete-web"
fi
