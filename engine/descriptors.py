"""Per-track backbone descriptors kept beside the index, so the similarity model can be refitted.

Why keep them: the similarity model (``engine.similarity``) is fitted on the
catalogue's own audio *after* the backbone pass, and refitted when the catalogue
changes; re-running the backbone over every track for that would cost as much as
the build itself.  Per track this stores the mean and the standard deviation of its segments'
descriptors (``(d,)`` float32 each: what a track vector is computed from) and a sample of at most ``SAMPLE_SEGMENTS`` segment descriptors (float16: what the
LDA method is fitted on), plus the mean musicnn tag probabilities when the backbone has
tags (for the reasons shown with an answer).

It also keeps what the reasons shown with an answer need (``engine.reasons``): the
mean musicnn tag probabilities, and tempo and key estimated from the audio.

One SQLite file (``<data_dir>/descriptors.sqlite``), written by the index builder
only; queries read the traits of the few tracks they answer with.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_SEGMENTS = 24
#: bump when the layout changes: an old file is dropped and every track re-described
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS descriptors (
    track_key INTEGER PRIMARY KEY,
    backbone TEXT NOT NULL,
    dim INTEGER NOT NULL,
    n_segments INTEGER NOT NULL,
    mean BLOB NOT NULL,
    std BLOB NOT NULL,
    sample BLOB NOT NULL,
    tags BLOB,
    bpm REAL,
    musical_key TEXT,
    head_vector BLOB
);
"""


@dataclass
class TrackDescriptor:
    track_key: int
    mean: np.ndarray  # (d,) float32
    std: np.ndarray  # (d,) float32 spread over the track's segments
    sample: np.ndarray  # (m, d) float32, m <= SAMPLE_SEGMENTS
    n_segments: int
    tags: np.ndarray | None = None  # (n_tags,) float32 probabilities
    bpm: float | None = None  # tempo estimated from the audio (engine.analysis)
    key: str | None = None  # e.g. "A minor"
    #: (D,) the identification head's mean segment vector: the track vector when no
    #: similarity model can be fitted (a catalogue too small or too uniform)
    head_vector: np.ndarray | None = None


def backbone_key(model_id: str) -> str:
    """The backbone part of an index model id (``musicnn-msd:abc+head:...`` -> ``musicnn-msd:abc``):
    descriptors depend on the backbone's weights only, not on the head."""
    return model_id.split("+", 1)[0]


def summarise(track_key: int, features: np.ndarray, tags: np.ndarray | None = None,
              bpm: float | None = None, key: str | None = None,
              head_vector: np.ndarray | None = None, sample_segments: int = SAMPLE_SEGMENTS) -> TrackDescriptor:
    """Mean, spread and an evenly spread sample of ``sample_segments`` of a track's segment
    descriptors ``(n, d)``.  Only the LDA method needs the sample (45 KB a track at d = 953),
    so the builder keeps none for the default pooled method."""
    f = np.asarray(features, np.float32)
    if f.ndim != 2 or len(f) == 0:
        raise ValueError(f"expected (n >= 1, d) features, got {f.shape}")
    idx = np.unique(np.linspace(0, len(f) - 1, min(sample_segments, len(f))).round().astype(int))
    return TrackDescriptor(track_key, f.mean(0), f.std(0), f[idx] if sample_segments > 0 else f[:0], len(f),
                           None if tags is None else np.asarray(tags, np.float32), bpm, key,
                           None if head_vector is None else np.asarray(head_vector, np.float32))


class DescriptorStore:
    """``track_key -> TrackDescriptor`` in SQLite; thread-safe; one writer (the builder)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        if read_only:
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=10)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
            self._conn.execute("PRAGMA journal_mode=WAL")
            if self._conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                self._conn.execute("DROP TABLE IF EXISTS descriptors")
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._conn.executescript(_SCHEMA)
            cols = {r[1] for r in self._conn.execute("PRAGMA table_info(descriptors)")}
            if "head_vector" not in cols:  # written before the fallback vectors were kept
                self._conn.execute("ALTER TABLE descriptors ADD COLUMN head_vector BLOB")
            self._conn.commit()

    def put_many(self, backbone: str, items: Iterable[TrackDescriptor]) -> None:
        rows = [(d.track_key, backbone, int(d.mean.shape[0]), d.n_segments,
                 np.ascontiguousarray(d.mean, "<f4").tobytes(), np.ascontiguousarray(d.std, "<f4").tobytes(),
                 np.ascontiguousarray(d.sample, "<f2").tobytes(),
                 None if d.tags is None else np.ascontiguousarray(d.tags, "<f4").tobytes(), d.bpm, d.key,
                 None if d.head_vector is None else np.ascontiguousarray(d.head_vector, "<f4").tobytes())
                for d in items]
        with self._lock, self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO descriptors (track_key, backbone, dim, n_segments, mean, std, sample, tags, bpm, "
                "musical_key, head_vector) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)

    def delete(self, keys: Iterable[int]) -> None:
        with self._lock, self._conn:
            self._conn.executemany("DELETE FROM descriptors WHERE track_key=?", [(int(k),) for k in keys])

    def keys(self, backbone: str) -> set[int]:
        with self._lock:
            return {r[0] for r in self._conn.execute("SELECT track_key FROM descriptors WHERE backbone=?",
                                                     (backbone,))}

    @staticmethod
    def _row(r: tuple) -> TrackDescriptor:
        key, dim, n, mean, std, sample, tags, bpm, mkey, head = r
        return TrackDescriptor(key, np.frombuffer(mean, "<f4").astype(np.float32),
                               np.frombuffer(std, "<f4").astype(np.float32),
                               np.frombuffer(sample, "<f2").astype(np.float32).reshape(-1, dim), n,
                               None if tags is None else np.frombuffer(tags, "<f4").astype(np.float32), bpm, mkey,
                               None if head is None else np.frombuffer(head, "<f4").astype(np.float32))

    def iter(self, backbone: str, keys: Iterable[int] | None = None) -> Iterator[TrackDescriptor]:
        """Descriptors of ``backbone`` (all, or those of ``keys``), in key order."""
        with self._lock:
            if keys is None:
                rows = self._conn.execute("SELECT track_key, dim, n_segments, mean, std, sample, tags, bpm, musical_key, head_vector FROM descriptors "
                                          "WHERE backbone=? ORDER BY track_key", (backbone,)).fetchall()
            else:
                rows = []
                ks = sorted(int(k) for k in keys)
                for i in range(0, len(ks), 500):
                    chunk = ks[i:i + 500]
                    rows += self._conn.execute(
                        f"SELECT track_key, dim, n_segments, mean, std, sample, tags, bpm, musical_key, head_vector FROM descriptors WHERE backbone=? "
                        f"AND track_key IN ({','.join('?' * len(chunk))}) ORDER BY track_key",
                        (backbone, *chunk)).fetchall()
        for r in rows:
            yield self._row(r)

    def traits(self, backbone: str, keys: Iterable[int]) -> dict[int, tuple[np.ndarray | None, float | None, str | None]]:
        """``{track_key: (tags, bpm, key)}`` for the reasons shown with answers (a few rows, fast)."""
        ks = sorted({int(k) for k in keys})
        out: dict[int, tuple[np.ndarray | None, float | None, str | None]] = {}
        with self._lock:
            for i in range(0, len(ks), 500):
                chunk = ks[i:i + 500]
                for k, tags, bpm, mkey in self._conn.execute(
                        f"SELECT track_key, tags, bpm, musical_key FROM descriptors WHERE backbone=? "
                        f"AND track_key IN ({','.join('?' * len(chunk))})", (backbone, *chunk)):
                    out[k] = (None if tags is None else np.frombuffer(tags, "<f4").astype(np.float32), bpm, mkey)
        return out

    def close(self) -> None:
        self._conn.close()
