"""The catalogue tracks a head is trained (and ``eval`` is run) on: id, audio file, labels."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class CatalogueItem:
    track_id: str
    path: Path
    artist: str = ""
    genres: tuple[str, ...] = ()


def audio_signature(path: Path) -> str:
    """Content hash of an audio file (blake2b-128 of its bytes): the feature cache key."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def catalogue_items(settings, csv_path: Path | None = None, audio_dir: Path | None = None) -> list[CatalogueItem]:
    """Tracks with audio: from ``--csv`` + ``--audio`` (or a bare folder), else the CatalogueDB.

    Sorted by track id.  Raises ``SystemExit`` (a sentence for the terminal) when
    ``--csv`` comes without ``--audio``, when there is no catalogue, or when no track has audio.
    """
    from engine.catalogue import CatalogueDB
    from index_builder.ingest import read_folder, read_kaggle_csv

    items: list[CatalogueItem] = []
    if csv_path is not None:
        from index_builder.matching import match_folder

        if audio_dir is None:
            raise SystemExit("--csv needs --audio DIR")
        tracks = read_kaggle_csv(Path(csv_path), spotify_ids=False).tracks
        res = match_folder(tracks, Path(audio_dir), read_tags=None)
        for tid, p in sorted(res.matched.items()):
            t = tracks[tid]
            items.append(CatalogueItem(tid, Path(p), t.artist, tuple(t.genres)))
    elif audio_dir is not None:
        for tid, t in sorted(read_folder(Path(audio_dir), use_tags=False).items()):
            items.append(CatalogueItem(tid, Path(t.audio_path), t.artist, tuple(t.genres)))
    else:
        db_path = settings.catalogue_db_path
        if not db_path.exists():
            raise SystemExit(f"no catalogue at {db_path}; give --csv and --audio, or run build first")
        db = CatalogueDB(db_path, read_only=True)
        try:
            for t in db.all_tracks():
                if t.audio_path and Path(t.audio_path).is_file():
                    items.append(CatalogueItem(t.track_id, Path(t.audio_path), t.artist, tuple(t.genres)))
        finally:
            db.close()
        items.sort(key=lambda i: i.track_id)
    if not items:
        raise SystemExit("no catalogue tracks with audio to train on")
    return items


def labels_of(items: list[CatalogueItem], kind: str) -> np.ndarray | None:
    """One int label per item for ``--supervised`` (``artist`` or ``genre``: the first one), -1 = none.

    None for ``kind == "none"``.
    """
    if kind == "none":
        return None
    vals = [(it.artist if kind == "artist" else (it.genres[0] if it.genres else "")) for it in items]
    names = sorted({v for v in vals if v})
    ids = {n: i for i, n in enumerate(names)}
    return np.asarray([ids.get(v, -1) if v else -1 for v in vals], dtype=np.int64)
