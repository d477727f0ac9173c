"""One settings object for the whole product, read once from the environment / .env.

Why one object: every limit a user can hit (bytes, seconds, timeouts) and every
location (data dir, Milvus URI) must be the same for the CLI, the bot, the index
builder and the web page.  Modules never read ``os.environ`` themselves; they are
handed a :class:`Settings`.  Every field is documented in ``.env.example``.

Validated once, when the object is made (:meth:`Settings.__post_init__`): values are
converted from the fields' type hints (``Literal`` fields accept only their choices), and
numeric limits are checked, so a bad value stops every console script at start-up with
one line naming the setting and what it accepts (``engine.startup``), never a traceback
and never half-way through a build.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

ENV_PREFIX = "SYNESTHETE_"

Backbone = Literal["musicnn", "openl3", "logmel"]
IndexType = Literal["auto", "FLAT", "IVF_FLAT", "HNSW"]
FingerprintBackend = Literal["sqlite", "milvus"]
SimilarityMethod = Literal["pooled", "lda", "off"]
SupervisedTerm = Literal["none", "genre", "artist"]
HubnessReduction = Literal["none", "mp"]
SimilarityModels = Literal["msd", "msd+mtt"]
WatchMode = Literal["all", "allowlist", "mention"]
SyncMode = Literal["auto", "always", "never"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

#: Lower bounds (inclusive) of numeric settings; a value below is refused at start-up.
_MINIMUM: dict[str, float] = {
    "embedding_dim": 1, "segment_hop_s": 0.1, "query_hop_s": 0.1, "similarity_supervised_weight": 0.0,
    "similarity_spread_weight": 0.0,
    "similarity_dba_k": 0, "torch_threads": 0, "max_upload_bytes": 1, "max_query_seconds": 1.0,
    "max_track_seconds": 1.0, "min_signal_seconds": 0.0, "decode_timeout_s": 0.1, "top_k": 1,
    "answers_per_artist": 0, "identify_threshold": 0.0, "fingerprint_max_candidates": 0,
    "identify_calibration_queries": 0,
    "speed_tolerance_pct": 0.0, "workers": 1, "query_timeout_s": 0.1, "bot_max_attachments": 1,
    "bot_max_attachment_bytes": 1, "bot_download_timeout_s": 0.1, "bot_user_cooldown_rate": 1,
    "bot_user_cooldown_per_s": 0.0, "bot_guild_concurrency": 1, "bot_answer_ttl_s": 0.0, "bot_shard_count": 0, "bot_metrics_port": -1, "web_port": 1,
    "web_max_request_bytes": 0, "web_rate_per_minute": 0.0, "web_rate_burst": 1,
    "web_search_rate_per_minute": 0.0, "web_search_rate_burst": 1, "web_record_seconds": 1.0,
    "web_live_interval_s": 0.1, "web_live_stop_confidence": 0.0, "web_live_max_sessions": 1,
}
#: Largest attachment the bot may be configured to download (Discord's largest upload).
BOT_MAX_ATTACHMENT_CEILING = 100 * 1024 * 1024
#: Upper bounds (inclusive).
_MAXIMUM: dict[str, float] = {
    "similarity_spread_weight": 4.0, "identify_threshold": 0.999, "identify_calibration_queries": 100_000, "web_live_stop_confidence": 1.0, "speed_tolerance_pct": 10.0,
    "bot_metrics_port": 65535, "web_port": 65535, "bot_max_attachment_bytes": BOT_MAX_ATTACHMENT_CEILING,
}


def env_key(name: str) -> str:
    """The environment variable of the field ``name`` (``DISCORD_TOKEN`` keeps its usual name)."""
    return "DISCORD_TOKEN" if name == "discord_token" else ENV_PREFIX + name.upper()


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
    backbone: Backbone = "musicnn"
    embedding_dim: int = 256
    #: Hop between catalogue segments (s).  = the musicnn patch: build speed matters.
    segment_hop_s: float = 3.0
    #: Hop between query segments (s): denser than the catalogue for better votes.
    query_hop_s: float = 1.5
    #: Milvus vector index: auto (server: HNSW; milvus-lite: FLAT, IVF_FLAT from 50k rows), FLAT, IVF_FLAT, HNSW.
    index_type: IndexType = "auto"
    #: Similarity model fitted on the catalogue at the end of every build (docs/quality.md):
    #: pooled (default) | lda | off (track vectors = the segment head's means).
    similarity_method: SimilarityMethod = "pooled"
    #: Supervised term of the similarity model from the catalogue's metadata: none | genre | artist.
    similarity_supervised: SupervisedTerm = "none"
    #: Weight of that term relative to the audio part of a track vector.
    similarity_supervised_weight: float = 0.5
    #: Database-side augmentation of track vectors: neighbours averaged in (0 = off).
    similarity_dba_k: int = 0
    #: Hubness reduction of the track search: none | mp (mutual proximity, Schnitzer et al. 2012;
    #: re-ranks the cosine candidates).  Pays off with many tracks; docs/quality.md.
    similarity_hubness: HubnessReduction = "none"
    #: Which musicnn models give the similarity descriptors (backbone musicnn): msd, or msd+mtt
    #: (MTT run beside MSD on the same patches; ~2x the backbone's cost).  docs/quality.md: chosen
    #: on two corpora by the worst one (issue 29).
    similarity_models: SimilarityModels = "msd+mtt"
    #: Weight of the spread (std over segments) of mean_pool beside a mean block (pooled; 0 = left out).
    #: Below the means': the statistic most specific to one catalogue's production (docs/quality.md).
    similarity_spread_weight: float = 0.5
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
    #: Least probability of being right (0..1) to say "sounds like", from the calibration the
    #: build fits (index_builder.calibrate).  Uncalibrated indexes use a fixed landmark margin instead.
    identify_threshold: float = 0.9
    #: Self-queries the build's identification calibration makes (index_builder.calibrate; ~0.4 s
    #: each on one core); 0 = no calibration, the fixed landmark-margin rule answers.
    identify_calibration_queries: int = 400
    #: The offset verification (issue 23): the landmark candidates are checked against the single
    #: spectral peaks of their tracks at the landmark offset, and the best is named on that evidence
    #: alone beyond a 1-in-10^10 chance.  Off: on the dev corpora it added 1-2 points of right
    #: answers on phone notes (11 in 1,257 recordings) and named 3 unknown songs
    #: (docs/identification.md, "Offset verification").
    identify_verification: bool = False
    #: Where the landmark index lives: "sqlite" (one machine, fastest) or "milvus" (sparse
    #: vectors in the Milvus database, spreads over a cluster; needs Milvus 2.4+ or milvus-lite).
    fingerprint_backend: FingerprintBackend = "sqlite"
    #: Most fingerprint rows a query's first stage scores (0 = no limit).  Posting lists grow
    #: with the catalogue; past this budget the rarest triplet hashes are scored first; the
    #: shortlist is then scored with its tracks' pairs (engine.fingerprint.index, docs/identification.md).
    fingerprint_max_candidates: int = 250_000
    #: Speed changes (%, faster or slower: radio, DJ sets, turntables) the landmarks try to
    #: undo when a recording at its own speed is not recognised; 0 = off (engine.fingerprint.speed).
    speed_tolerance_pct: float = 6.0

    # --- engine process -------------------------------------------------------
    #: Empty: this process opens the index itself.  ``http://host:8080``: the bot and the CLI
    #: ask a running engine (``synesthete serve`` / ``synesthete-web``) through its JSON API.
    engine_url: str = ""
    #: Shared secret of the engine and its trusted front ends (bots): their requests skip the
    #: per-address rate limits (the bot has its own per-user cooldowns).  Never printed.
    engine_token: str = field(default="", repr=False)

    # --- concurrency ---------------------------------------------------------
    #: Worker threads for decode + embed; bounds memory and CPU use.
    workers: int = 2
    #: Timeout for one whole query (decode + embed + search) in the async API.
    query_timeout_s: float = 60.0

    # --- bot -------------------------------------------------------------------
    #: Never printed: excluded from repr so a logged Settings cannot leak it.
    discord_token: str = field(default="", repr=False)
    #: Where the bot listens for audio: all | allowlist | mention (DMs always).
    bot_watch_mode: WatchMode = "mention"
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
    bot_sync_commands: SyncMode = "auto"
    #: How long an answer's buttons work after it was posted (s); 0 = no age limit (they still expire
    #: when the model changes).
    bot_answer_ttl_s: float = 7 * 24 * 3600.0
    #: Total gateway shards: 0 = Discord's recommendation (AutoShardedBot), 1 = one connection, N = N shards.
    bot_shard_count: int = 0
    #: Comma-separated shard numbers this process runs (0..count-1); empty = all.  Needs bot_shard_count.
    bot_shard_ids: str = ""

    # --- web ---------------------------------------------------------------------
    #: Where ``synesthete-web`` listens (localhost by default; put a TLS proxy in front for the internet).
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    #: Largest HTTP request body, bytes; 0 = SYNESTHETE_MAX_UPLOAD_BYTES + 64 KiB (multipart headers).
    web_max_request_bytes: int = 0
    #: Per-client-IP limit for audio (/api/recommend, /api/listen): requests per minute, burst (limits' moving window).
    web_rate_per_minute: float = 12.0
    web_rate_burst: int = 6
    #: Per-client-IP limit for the cheap calls (/api/search autocomplete, /api/similar).
    web_search_rate_per_minute: float = 240.0
    web_search_rate_burst: int = 40
    #: Where the rate limits are counted: empty = this process's memory; a ``limits`` storage URI
    #: (``async+redis://host:6379``) so several engine processes enforce one limit.
    web_rate_limit_storage: str = ""
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
    def hubness_path(self) -> Path:
        """Mutual proximity's catalogue statistics (written with the similarity model; engine.hubness)."""
        return self.data_dir / "hubness.npz"

    @property
    def descriptors_db_path(self) -> Path:
        return self.data_dir / "descriptors.sqlite"

    @property
    def identify_calibration_path(self) -> Path:
        """The identification calibration (written by the index builder, read by queries)."""
        return self.data_dir / "identify_calibration.json"

    def __post_init__(self) -> None:
        """Check every value once (types from the hints, Literal choices, numeric limits)."""
        hints = _hints()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and Path in (hints[f.name], *get_args(hints[f.name])):
                value = Path(value).expanduser()  # a str given in code: the type the field promises
                object.__setattr__(self, f.name, value)
            choices = _choices(hints[f.name])
            if choices and value not in choices:
                raise ValueError(f"setting {env_key(f.name)}={value!r}: use one of {', '.join(choices)}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"setting {env_key(f.name)}={value!r}: must be a finite number")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                low, high = _MINIMUM.get(f.name), _MAXIMUM.get(f.name)
                if (low is not None and value < low) or (high is not None and value > high):
                    bounds = (f"at least {low:g}" if high is None else f"at most {high:g}" if low is None
                              else f"between {low:g} and {high:g}")
                    raise ValueError(f"setting {env_key(f.name)}={value!r}: must be {bounds}")
        try:
            _ = self.bot_allowed_channels
        except ValueError as exc:
            raise ValueError(f"setting {env_key('bot_allowed_channel_ids')}={self.bot_allowed_channel_ids!r}: "
                             "comma-separated channel ids expected") from exc
        if self.engine_url and not self.engine_url.startswith(("http://", "https://")):
            raise ValueError(f"setting {env_key('engine_url')}={self.engine_url!r}: use http://host:port "
                             "(or leave it empty to open the index in this process)")
        if self.web_rate_limit_storage and not self.web_rate_limit_storage.startswith("async+"):
            raise ValueError(f"setting {env_key('web_rate_limit_storage')}={self.web_rate_limit_storage!r}: "
                             "use an async storage URI such as async+redis://host:6379 (or leave it empty)")

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

            try:
                values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
            except (UnicodeDecodeError, OSError) as exc:
                raise ValueError(f"settings file {env_file}: cannot read it ({exc})") from exc
        values.update(os.environ if env is None else env)
        hints = _hints()
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = env_key(f.name)
            if key not in values or values[key] == "":
                continue
            kwargs[f.name] = _coerce(key, hints[f.name], values[key])
        return cls(**kwargs)


@functools.lru_cache(maxsize=1)
def _hints() -> dict[str, Any]:
    """The real types of the fields (the module's annotations are strings)."""
    return get_type_hints(Settings)


def _choices(hint: Any) -> tuple[str, ...]:
    return tuple(get_args(hint)) if get_origin(hint) is Literal else ()


def _coerce(key: str, hint: Any, raw: str) -> Any:
    """``raw`` (an environment string) as the field's type; ValueError naming ``key`` otherwise."""
    args = [a for a in get_args(hint) if a is not type(None)]
    target = args[0] if get_origin(hint) is not Literal and args else hint  # X | None -> X
    if _choices(target):
        for choice in _choices(target):  # case-insensitive, stored as spelled in the choices
            if raw.strip().lower() == str(choice).lower():
                return choice
        raise ValueError(f"setting {key}={raw!r}: use one of {', '.join(_choices(target))}")
    try:  # a Path field keeps the str: __post_init__ makes it a Path, for env and code alike
        if target is bool:
            word = raw.strip().lower()
            if word not in _TRUE + _FALSE:
                raise ValueError(word)
            return word in _TRUE
        if target is int:
            return int(raw.strip().replace("_", ""))
        if target is float:
            return float(raw)
    except ValueError as exc:
        kind = {bool: "true or false", int: "a whole number", float: "a number"}.get(target, str(target))
        raise ValueError(f"setting {key}={raw!r}: must be {kind}") from exc
    return raw
