"""One settings object for the whole product, read once from the environment / .env.

Why one object: every limit a user can hit (bytes, seconds, timeouts) and every
location (data dir, Milvus URI) must be the same for the CLI, the bot, the index
builder and the web page.  Modules never read ``os.environ`` themselves; they are
handed a :class:`Settings`.  Every field is documented in ``.env.example``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

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
    #: Milvus vector index: auto (FLAT on milvus-lite, HNSW on a server), FLAT, IVF_FLAT, HNSW.
    index_type: str = "auto"
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
    #: Minimum identification confidence (0..1) to say "sounds like".
    identify_threshold: float = 0.5

    # --- concurrency ---------------------------------------------------------
    #: Worker threads for decode + embed; bounds memory and CPU use.
    workers: int = 2
    #: Timeout for one whole query (decode + embed + search) in the async API.
    query_timeout_s: float = 60.0

    # --- bot -------------------------------------------------------------------
    discord_token: str = ""

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
    def resolved_head_path(self) -> Path:
        return self.head_path or (self.data_dir / "head.pt")

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
    ) -> "Settings":
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
