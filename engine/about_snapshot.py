"""``synesthete about`` without opening the engine: a snapshot the engine writes, used while it is valid.

Why: ``about`` needs the model id the engine would serve and the calibration it would use, which
takes torch (the backbone's weights), pymilvus and scipy: ~3 s on 2 cores for a few lines of
text (issue 24; target <= 0.5 s).  So every time the engine answers ``about`` (and at the end of
every build) it writes ``<data_dir>/about.json``: the answer plus a **key** over everything that
answer depends on.  A later ``about`` reads the file and uses it only when the key still
matches; otherwise it opens the engine as before, so a stale snapshot can cost time, never
truth.

The key covers: every setting that can change the answer (``Settings`` fields but the serving
ones, hashed, so no secret is written), the
project's and musicnn's installed versions, and the size and mtime of the files the engine
loads its models from (similarity model, identification calibration, trained head).  The
catalogue's counts and build date are read live from its SQLite file (readers share it with a
running engine or a build), because a build in progress changes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from importlib import metadata
from pathlib import Path
from typing import Any

from .fileio import atomic_write_text
from .settings import Settings

log = logging.getLogger(__name__)

#: bump when the snapshot's layout changes: an older file then never matches
SNAPSHOT_VERSION = 1
#: settings ``about``'s answer cannot depend on (how a query is served, not what the index is).
#: Safe direction: a setting not listed is part of the key, so a new one costs time, never truth.
_NOT_IN_ABOUT_PREFIXES = ("bot_", "web_")
_NOT_IN_ABOUT = frozenset({"torch_threads", "workers", "max_upload_bytes", "max_query_seconds", "decode_timeout_s",
                           "query_timeout_s", "top_k", "answers_per_artist", "engine_token", "discord_token"})
#: the fields of ``SynestheteService.about()`` that are read live from the catalogue
LIVE_FIELDS = ("tracks", "indexed_tracks", "index_built")


def snapshot_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / "about.json"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def snapshot_key(settings: Settings) -> str:
    """A hex digest of everything ``about``'s non-live fields depend on (see the module docstring)."""
    h = hashlib.sha256(f"v{SNAPSHOT_VERSION} synesthete={_version('synesthete')} "
                       f"musicnn={_version('musicnn')}\n".encode())
    for f in dataclasses.fields(settings):
        if f.name.startswith(_NOT_IN_ABOUT_PREFIXES) or f.name in _NOT_IN_ABOUT:
            continue
        h.update(f"{f.name}={getattr(settings, f.name)!r}\n".encode())
    for path in (settings.similarity_model_path, settings.identify_calibration_path, settings.resolved_head_path,
                 settings.hubness_path):
        try:
            st = Path(path).stat()
            h.update(f"{path} {st.st_size} {st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{path} absent\n".encode())
    return h.hexdigest()


def write_snapshot(settings: Settings, info: dict[str, Any], key: str | None = None) -> None:
    """Remember ``info`` (what ``SynestheteService.about()`` returned); a failure is logged, not raised.

    ``key``: :func:`snapshot_key` as of when the engine loaded the models ``info`` describes
    (default: now).  Why: a long-running engine answering after a rebuild describes its old
    models; under the old key the snapshot is simply stale, never a wrong answer for the new files.

    Why not raised: the snapshot only saves time; a read-only data directory must not break
    ``about`` itself.
    """
    try:
        text = json.dumps({"key": key or snapshot_key(settings), "about": info}, indent=1, default=str)
        path = snapshot_path(settings)
        if path.exists() and path.read_text() == text:
            return  # /api/about can be asked often: no write (and fsync) when nothing changed
        atomic_write_text(path, text)
    except (OSError, TypeError, ValueError) as exc:
        log.debug("cannot write the about snapshot: %s", exc)


def read_snapshot(settings: Settings) -> dict[str, Any] | None:
    """``about``'s answer from the snapshot and the live catalogue; None when it cannot be trusted.

    None when: no snapshot, another key (a setting, a version or a model file changed), a
    remote engine (``SYNESTHETE_ENGINE_URL``: that engine answers), no catalogue, or the
    catalogue cannot be read (locked, corrupt: the engine's path says so properly).
    """
    path = snapshot_path(settings)
    if settings.engine_url or not path.exists() or not Path(settings.catalogue_db_path).exists():
        return None
    try:
        body = json.loads(path.read_text())
        if body.get("key") != snapshot_key(settings):
            log.info("the about snapshot is stale (settings, versions or model files changed): opening the engine")
            return None
        info = dict(body["about"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.info("cannot read the about snapshot (%s): opening the engine", exc)
        return None
    from .catalogue import CatalogueDB

    db = None
    try:
        db = CatalogueDB(settings.catalogue_db_path, read_only=True)
        info["tracks"] = db.count()
        info["indexed_tracks"] = db.count(indexed_only=True)
        info["index_built"] = db.get_meta("built_at")
    except Exception as exc:  # noqa: BLE001 - any failure: the engine's path reports it in its own words
        log.info("cannot read the catalogue for about (%s): opening the engine", exc)
        return None
    finally:
        if db is not None:
            db.close()
    return info
