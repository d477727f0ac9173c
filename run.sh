#!/usr/bin/env bash
# The one command: set everything up on a fresh Debian/Ubuntu machine and run Synesthete
# on the embedded default (milvus-lite).
#
#   ./run.sh                 setup + demo catalogue + a demo query; then the bot if DISCORD_TOKEN is set
#   ./run.sh --setup-only    only install (apt ffmpeg, .venv with CPU torch, the project)
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

TOKEN="${DISCORD_TOKEN:-}"
if [ -z "$TOKEN" ] && [ -f .env ]; then
  TOKEN="$(grep -E '^DISCORD_TOKEN=' .env | tail -n1 | cut -d= -f2- || true)"
fi
if [ -n "$TOKEN" ]; then
  echo "== starting the Discord bot (Ctrl-C to stop)"
  exec "$BIN/synesthete-bot"
else
  cat <<'MSG'
== No DISCORD_TOKEN set, so the Discord bot was not started.
   To run it: create an application at https://discord.com/developers/applications,
   copy its bot token into .env as DISCORD_TOKEN=... (see .env.example and docs/bot.md),
   then run ./run.sh again (or .venv/bin/synesthete-bot).
   Meanwhile, try:  .venv/bin/synesthete query any-audio-file.mp3
                    .venv/bin/synesthete similar "track name"
MSG
fi
