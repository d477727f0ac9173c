"""One settings object for the whole product, read once from the environment / .env.

Why one object: every limit a user can hit (bytes, seconds, timeouts) and every
location (data dir, Milvus URI) must be the same for the CLI, the bot, the index
builder and the web page.  Modules never read ``os.environ`` themselves; they are
handed a :class:`Settings`.  Every field is documented in ``.env.example``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "SYNESTHETE_"


def _default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "synesthete"


@dataclass(frozen=True)
class Settings:
    # --- where things live -------------------------------------------------
    data_dir: Path = field(default_factory=_default_data_dir)
    #: Milvus URI: empty = milvus-lite file ``<data_dir>/milvus.db``; or ``http://host:19530``.
    milvus_uri: str = ""
    milvus_token: str = ""
    #: Prefix of the Milvus collections, so several catalogues can share one server.
    collection_prefix: str = "synesthete"
    #: Where downloaded / converted model weights are cached.
    model_cache_dir: Path | None = None
    #: Fine-tuned head checkpoint; empty = ``<data_dir>/head.pt`` if present, else the untrained default.
    head_path: Path | None = None

    # --- model ---------------------------------------------------------------
    #: Feature backbone: musicnn (default, weights ship on PyPI), openl3, logmel.
    backbone: str = "musicnn"
    embedding_dim: int = 256
    #: Hop between catalogue segments (s).  = the musicnn patch: build speed matters.
    segment_hop_s: float = 3.0
    #: Hop between query segments (s): denser than the catalogue for better votes.
    query_hop_s: float = 1.5
    #: Milvus vector index: auto (server: HNSW; milvus-lite: FLAT, IVF_FLAT from 50k rows), FLAT, IVF_FLAT, HNSW.
    index_type: str = "auto"
    #: Similarity model fitted on the catalogue at the end of every build (docs/quality.md):
    #: pooled (default) | lda | off (track vectors = the segment head's means).
    similarity_method: str = "pooled"
    #: Supervised term of the similarity model from the catalogue's metadata: none | genre.
    similarity_supervised: str = "none"
    #: Weight of that term relative to the audio part of a track vector.
    similarity_supervised_weight: float = 0.5
    #: Database-side augmentation of track vectors: neighbours averaged in (0 = off).
    similarity_dba_k: int = 0
    #: torch intra-op threads per worker (0 = torch default).
    torch_threads: int = 0

    # --- audio limits --------------------------------------------------------
    max_upload_bytes: int = 25 * 1024 * 1024
    #: A query is cut after this many seconds of decoded audio.
    max_query_seconds: float = 60.0
    #: A catalogue track is cut after this many seconds (a long mix is still indexed).
    max_track_seconds: float = 900.0
    min_signal_seconds: float = 2.0
    decode_timeout_s: float = 30.0

    # --- answers ------------------------------------------------------------
    top_k: int = 5
    #: Discovery rule: at most this many answers per artist (the seed's own artist: one); 0 = raw ranking.
    answers_per_artist: int = 1
    #: Minimum identification confidence (0..1) to say "sounds like".
    identify_threshold: float = 0.5
    #: Most fingerprint rows one query may score (0 = no limit).  Posting lists grow with
    #: the catalogue; past this budget the rarest hashes are kept (docs/identification.md).
    fingerprint_max_candidates: int = 1_000_000

    # --- concurrency ---------------------------------------------------------
    #: Worker threads for decode + embed; bounds memory and CPU use.
    workers: int = 2
    #: Timeout for one whole query (decode + embed + search) in the async API.
    query_timeout_s: float = 60.0

    # --- bot -------------------------------------------------------------------
    #: Never printed: excluded from repr so a logged Settings cannot leak it.
    discord_token: str = field(default="", repr=False)
    #: Where the bot listens for audio: all | allowlist | mention (DMs always).
    bot_watch_mode: str = "mention"
    #: Comma-separated channel ids watched in allowlist mode (threads follow their parent).
    bot_allowed_channel_ids: str = ""
    #: Audio attachments answered per message (the rest are ignored, with a note).
    bot_max_attachments: int = 3
    #: Largest attachment downloaded, bytes (Discord free uploads: 10 MiB); at most 100 MiB.
    bot_max_attachment_bytes: int = 10 * 1024 * 1024
    #: Download timeout per attachment (s).
    bot_download_timeout_s: float = 30.0
    #: Per-user cooldown: at most ``rate`` queries per ``per_s`` seconds.
    bot_user_cooldown_rate: int = 3
    bot_user_cooldown_per_s: float = 30.0
    #: Queries running at once for one guild.
    bot_guild_concurrency: int = 2
    #: Health / Prometheus endpoint; port -1 disables it, 0 picks a free port.
    bot_metrics_host: str = "127.0.0.1"
    bot_metrics_port: int = 9108
    #: Feedback (thumbs up/down) SQLite file; empty = ``<data_dir>/feedback.sqlite``.
    bot_feedback_db: Path | None = None
    #: Guild to sync slash commands to instantly during development (0 = global sync).
    bot_dev_guild_id: int = 0
    #: Command sync at start: auto (guild if dev guild set, global only when changed) | always | never.
    bot_sync_commands: str = "auto"

    # --- web ---------------------------------------------------------------------
    #: Where ``synesthete-web`` listens (localhost by default; put a TLS proxy in front for the internet).
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    #: Largest HTTP request body, bytes; 0 = SYNESTHETE_MAX_UPLOAD_BYTES + 64 KiB (multipart headers).
    web_max_request_bytes: int = 0
    #: Per-client-IP token bucket for audio (/api/recommend, /api/listen): refill per minute, burst.
    web_rate_per_minute: float = 12.0
    web_rate_burst: int = 6
    #: Per-client-IP token bucket for the cheap calls (/api/search autocomplete, /api/similar).
    web_search_rate_per_minute: float = 240.0
    web_search_rate_burst: int = 40
    #: Take the client IP from X-Forwarded-For (only behind a reverse proxy you run).
    web_trust_forwarded: bool = False
    #: Longest recording the page's Record / Listen live buttons make (s).
    web_record_seconds: float = 15.0
    #: Listen live: seconds between running guesses, and the identification confidence that stops early.
    web_live_interval_s: float = 2.0
    web_live_stop_confidence: float = 0.8
    #: Listen live sessions open at once (each decodes its growing recording every interval).
    web_live_max_sessions: int = 8

    @property
    def resolved_web_max_request_bytes(self) -> int:
        return self.web_max_request_bytes or (self.max_upload_bytes + 64 * 1024)

    @property
    def milvus_lite_path(self) -> Path:
        return self.data_dir / "milvus.db"

    @property
    def resolved_milvus_uri(self) -> str:
        return self.milvus_uri or str(self.milvus_lite_path)

    @property
    def catalogue_db_path(self) -> Path:
        return self.data_dir / "catalogue.sqlite"

    @property
    def fingerprint_db_path(self) -> Path:
        return self.data_dir / "fingerprints.sqlite"

    @property
    def resolved_model_cache_dir(self) -> Path:
        return self.model_cache_dir or (self.data_dir / "models")

    @property
    def resolved_feedback_db_path(self) -> Path:
        return self.bot_feedback_db or (self.data_dir / "feedback.sqlite")

    @property
    def bot_allowed_channels(self) -> frozenset[int]:
        return frozenset(int(x) for x in self.bot_allowed_channel_ids.replace(";", ",").split(",") if x.strip())

    @property
    def resolved_head_path(self) -> Path:
        return self.head_path or (self.data_dir / "head.pt")

    @property
    def similarity_model_path(self) -> Path:
        """The fitted similarity model (written by the index builder, read by queries)."""
        return self.data_dir / "similarity.npz"

    @property
    def descriptors_db_path(self) -> Path:
        return self.data_dir / "descriptors.sqlite"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
    ) -> Settings:
        """Build settings from ``SYNESTHETE_*`` variables (and ``DISCORD_TOKEN``).

        Values in the real environment win over the .env file, as usual.
        """
        values: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            from dotenv import dotenv_values

            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        values.update(os.environ if env is None else env)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = "DISCORD_TOKEN" if f.name == "discord_token" else ENV_PREFIX + f.name.upper()
            if key not in values or values[key] == "":
                continue
            kwargs[f.name] = _coerce(f.name, f.type, values[key])
        return cls(**kwargs)


def _coerce(name: str, type_name: Any, raw: str) -> Any:
    t = str(type_name)
    try:
        if "Path" in t:
            return Path(raw).expanduser()
        if t in ("int", "<class 'int'>"):
            return int(raw)
        if t in ("float", "<class 'float'>"):
            return float(raw)
        if t in ("bool", "<class 'bool'>"):
            return raw.strip().lower() in ("1", "true", "yes", "on")
    except ValueError as exc:
        raise ValueError(f"setting {ENV_PREFIX}{name.upper()}={raw!r} is not a valid {t}") from exc
    return raw
