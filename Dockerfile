# Synesthete, every front end in one image: the engine's web page + JSON API (synesthete-web),
# the Discord bot (synesthete-bot [--with-web]), the CLI and the index builder.
# Debian 12 + Python 3.11 + apt ffmpeg + CPU-only torch; runs as the unprivileged user
# "synesthete"; everything it writes goes to the volume /data.
#
#   docker build -t synesthete .                   # --build-arg DEMO=0: without the demo soundtracks (~300 MB)
#   docker run --rm -p 8080:8080 -v synesthete-data:/data synesthete
#       # builds the demo catalogue on first start, then serves http://localhost:8080/
#       # (with -e DISCORD_TOKEN=... the bot runs too, in the same process: synesthete-bot --with-web)
#   docker run --rm -v synesthete-data:/data synesthete synesthete query /data/demo/voice_note.ogg
#   docker compose up -d                            # engine + bot + Milvus standalone: compose.yaml
#
# See docs/scaling.md ("Containers"). Not built in CI: tests/test_deploy.py checks this file statically.
FROM python:3.11-slim-bookworm

# 1: the demo's free game soundtracks (index_builder.demo.DEMO_PACKAGES) are installed here,
# because the unprivileged user cannot apt-get them at run time
ARG DEMO=1

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    SYNESTHETE_DATA_DIR=/data \
    SYNESTHETE_WEB_HOST=0.0.0.0 \
    SYNESTHETE_BOT_METRICS_HOST=0.0.0.0
# (a container's localhost is unreachable from outside: listen on all of its interfaces;
#  which ports are published is decided by docker run -p / compose)

RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg ca-certificates \
 && if [ "$DEMO" = "1" ]; then \
      apt-get install -y --no-install-recommends colobot-common-sounds warzone2100-music hedgewars-data; \
    fi \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# CPU-only torch first, so the CUDA build is never pulled in
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY pyproject.toml README.md ./
# every package the console scripts import ([project.scripts] in pyproject.toml);
# web/static/* is package data, installed with the web package
COPY engine engine
COPY index_builder index_builder
COPY bot bot
COPY web web
# limits[async-redis]: several engine processes can share their rate limits through Redis
# (SYNESTHETE_WEB_RATE_LIMIT_STORAGE=async+redis://...; docs/scaling.md); same pin as pyproject.toml
RUN pip install . "limits[async-redis]==5.8.0" \
 && pip install --no-deps "musicnn==0.1.0"

RUN useradd --create-home --uid 10001 --user-group synesthete \
 && mkdir -p /data \
 && chown synesthete:synesthete /data
USER synesthete
# index, catalogue, fingerprints, model cache, feedback: keep them across containers
VOLUME ["/data"]

# 8080: the web page + JSON API (SYNESTHETE_WEB_PORT); 9108: the bot's /healthz and /metrics
# (SYNESTHETE_BOT_METRICS_PORT)
EXPOSE 8080 9108

# Healthy when every front end listening here answers GET /healthz with 200 and at least one
# does: the web app on SYNESTHETE_WEB_PORT (200 once the index has tracks), the bot on
# SYNESTHETE_BOT_METRICS_PORT (200 once connected to Discord). A port where nothing listens is
# skipped (the container runs the other front end); a 503 is unhealthy. Python's urllib: the
# slim image has no curl. The start period covers the demo build of the default command.
HEALTHCHECK --interval=30s --timeout=15s --start-period=10m --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.error, urllib.request\nanswered = 0\nfor name, default in ((\"SYNESTHETE_WEB_PORT\", \"8080\"), (\"SYNESTHETE_BOT_METRICS_PORT\", \"9108\")):\n    port = int(os.environ.get(name) or default)\n    if port <= 0:\n        continue\n    try:\n        urllib.request.urlopen(f\"http://127.0.0.1:{port}/healthz\", timeout=5).close()\n        answered += 1\n    except urllib.error.HTTPError as exc:\n        sys.exit(f\"{name}={port}: /healthz answered {exc.code}\")\n    except OSError:\n        pass\nsys.exit(0 if answered else \"no /healthz answered on the web or bot metrics port\")\n"]

# demo: index the soundtracks installed above (incremental: quick once built), then serve
CMD ["sh", "-c", "synesthete-index demo && if [ -n \"$DISCORD_TOKEN\" ]; then exec synesthete-bot --with-web; else exec synesthete-web; fi"]
