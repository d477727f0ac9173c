# Synesthete: Debian-based Python 3.11 + apt ffmpeg + CPU torch.
#   docker build -t synesthete .
#   docker run --rm -it -v synesthete-data:/data --env-file .env synesthete            # demo catalogue + bot
#   docker run --rm -it -v synesthete-data:/data synesthete synesthete query /data/demo/voice_note.ogg
FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    SYNESTHETE_DATA_DIR=/data

RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# CPU-only torch first, so the CUDA build is never pulled in
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY pyproject.toml README.md ./
COPY engine engine
COPY index_builder index_builder
COPY bot bot
RUN pip install . \
 && pip install --no-deps "musicnn==0.1.0"

VOLUME ["/data"]
# demo: apt-installs a few Debian game soundtracks inside the container and indexes them
CMD ["sh", "-c", "synesthete-index demo && if [ -n \"$DISCORD_TOKEN\" ]; then exec synesthete-bot; else synesthete query /data/demo/voice_note.ogg; fi"]
