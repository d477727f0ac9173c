"""The catalogue: track metadata, links, and search by name.

Metadata lives in a SQLite side table (``<data_dir>/catalogue.sqlite``), not in
Milvus scalar fields.  Why: name search needs a text index (FTS5 trigram), the
Kaggle CSV lists one track under several genres (a join, not a vector field),
and milvus-lite evaluates ``like`` filters as full scans.  Milvus keeps only what
it is good at: vectors keyed by ``track_key``.

Input layouts:
- the Kaggle "Ultimate Spotify Tracks DB" CSV (genre, artist_name, track_name,
  track_id, popularity, ...); the same track_id under several genres is one track
  with several genres; malformed rows are reported with their line number;
- a plain folder of audio files (title/artist from tags or the file name, a
  stable id per file).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import sqlite3
import threading
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import quote

from .errors import StoreError, StoreLockedError

log = logging.getLogger(__name__)

SPOTIFY_ID_RE = re.compile(r"^[0-9A-Za-z]{22}$")
AUDIO_EXTENSIONS = {".mp3", ".ogg", ".opus", ".oga", ".m4a", ".aac", ".mp4", ".wav", ".flac", ".webm", ".wma", ".aiff", ".aif"}

REQUIRED_COLUMNS = ("track_id", "track_name", "artist_name")


def track_key_for(track_id: str) -> int:
    """A stable positive int64 for a track id (Milvus primary keys are integers)."""
    return int.from_bytes(hashlib.blake2b(track_id.encode("utf-8"), digest_size=8).digest(), "big") >> 1


def fold(text: str) -> str:
    """Lower-case, accents removed, punctuation to spaces: 'Beyoncé – Halo' -> 'beyonce halo'."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.lower().replace("&", " and ")
    text = re.sub(r"[^\w]+", " ", text, flags=re.UNICODE)
    return " ".join(text.split())


@dataclass
class Track:
    track_id: str
    name: str
    artist: str
    genres: list[str] = field(default_factory=list)
    popularity: int = 0
    duration_ms: int | None = None
    #: "spotify" when track_id is a real Spotify id, else "search" (link to a Spotify search)
    link_kind: str = "spotify"
    audio_path: str | None = None

    @property
    def track_key(self) -> int:
        return track_key_for(self.track_id)

    @property
    def link(self) -> str:
        if self.link_kind == "spotify" and SPOTIFY_ID_RE.match(self.track_id):
            return f"https://open.spotify.com/track/{self.track_id}"
        return "https://open.spotify.com/search/" + quote(f"{self.artist} {self.name}".strip())

    @property
    def title(self) -> str:
        return f"{self.artist} – {self.name}" if self.artist else self.name

    def to_dict(self) -> dict:
        d = asdict(self)
        d["link"] = self.link
        return d


@dataclass
class CsvProblem:
    line: int
    reason: str


@dataclass
class CsvReadResult:
    tracks: dict[str, Track]
    problems: list[CsvProblem]
    rows: int


def read_kaggle_csv(path: Path, *, spotify_ids: bool = True) -> CsvReadResult:
    """Read a Kaggle-layout CSV; merge duplicate track_ids; report bad rows.

    ``spotify_ids=False`` marks the ids as local (they get Spotify *search* links).
    Missing required columns is fatal (ValueError); a bad row is skipped and reported.
    """
    tracks: dict[str, Track] = {}
    problems: list[CsvProblem] = []
    rows = 0
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"{path} is empty") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path}: missing required column(s) {', '.join(missing)}; found {header}")
        col = {name: i for i, name in enumerate(header)}
        for row in reader:
            line = reader.line_num
            rows += 1
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                problems.append(CsvProblem(line, f"{len(row)} fields, expected {len(header)}"))
                continue
            get = lambda name: row[col[name]].strip() if name in col else ""  # noqa: E731
            tid, name, artist = get("track_id"), get("track_name"), get("artist_name")
            if not tid:
                problems.append(CsvProblem(line, "empty track_id"))
                continue
            if not name:
                problems.append(CsvProblem(line, f"empty track_name for {tid}"))
                continue
            if spotify_ids and not SPOTIFY_ID_RE.match(tid):
                problems.append(CsvProblem(line, f"track_id {tid!r} is not a Spotify id; linking to a search"))
            popularity = 0
            if get("popularity"):
                try:
                    popularity = int(float(get("popularity")))
                except ValueError:
                    problems.append(CsvProblem(line, f"popularity {get('popularity')!r} is not a number; using 0"))
            duration = None
            if get("duration_ms"):
                try:
                    duration = int(float(get("duration_ms")))
                except ValueError:
                    problems.append(CsvProblem(line, f"duration_ms {get('duration_ms')!r} is not a number"))
            genre = get("genre")
            existing = tracks.get(tid)
            if existing is not None:
                if genre and genre not in existing.genres:
                    existing.genres.append(genre)
                existing.popularity = max(existing.popularity, popularity)
                continue
            link_kind = "spotify" if spotify_ids and SPOTIFY_ID_RE.match(tid) else "search"
            tracks[tid] = Track(tid, name, artist, [genre] if genre else [], popularity, duration, link_kind)
    return CsvReadResult(tracks, problems, rows)


def _tag_metadata(path: Path) -> tuple[str | None, str | None]:
    """Title/artist from the file's tags via ffprobe (already a dependency)."""
    import subprocess

    try:
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-print_format", "json", "-show_entries", "format_tags=title,artist", str(path)],
            capture_output=True, timeout=15, check=False,
        ).stdout
        tags = {k.lower(): v for k, v in json.loads(out or b"{}").get("format", {}).get("tags", {}).items()}
    except Exception:  # noqa: BLE001 - tags are a nicety; the file name is the fallback
        return None, None
    return tags.get("title"), tags.get("artist")


def parse_artist_title(stem: str) -> tuple[str, str]:
    """'Artist - Title' (as spotify_dl and most rippers write) -> (artist, title)."""
    stem = re.sub(r"^\d{1,3}[\s._-]+", "", stem).replace("_", " ").strip()
    for sep in (" - ", " – ", " — "):
        if sep in stem:
            artist, title = stem.split(sep, 1)
            return artist.strip(), title.strip()
    return "", stem


def folder_track_id(root: Path, path: Path) -> str:
    """A stable id per file: a hash of its path relative to the catalogue folder."""
    rel = path.relative_to(root).as_posix()
    return "local-" + hashlib.blake2b(rel.encode("utf-8"), digest_size=10).hexdigest()


def iter_audio_files(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith("."):
            yield p


def read_folder(root: Path, *, use_tags: bool = True) -> dict[str, Track]:
    """A catalogue from a folder of audio, without a CSV."""
    tracks: dict[str, Track] = {}
    for p in iter_audio_files(root):
        title, artist = _tag_metadata(p) if use_tags else (None, None)
        if not title:
            artist_guess, title = parse_artist_title(p.stem)
            artist = artist or artist_guess
        genre = p.parent.name if p.parent != root else ""
        tid = folder_track_id(root, p)
        tracks[tid] = Track(tid, title, artist or "", [genre] if genre else [], 0, None, "search", str(p))
    return tracks


# ---------------------------------------------------------------------------
# SQLite catalogue database
# ---------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tracks (
    track_key   INTEGER PRIMARY KEY,
    track_id    TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    artist      TEXT NOT NULL,
    genres      TEXT NOT NULL DEFAULT '[]',
    popularity  INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER,
    link_kind   TEXT NOT NULL DEFAULT 'spotify',
    audio_path  TEXT,
    -- the same song listed twice (Kaggle has such rows under different ids)
    dedup_key   TEXT NOT NULL,
    search_text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tracks_dedup ON tracks(dedup_key);
-- what is in the vector index for this track: the audio's identity + the model
CREATE TABLE IF NOT EXISTS indexed (
    track_key   INTEGER PRIMARY KEY,
    audio_sig   TEXT NOT NULL,
    model_id    TEXT NOT NULL,
    n_segments  INTEGER NOT NULL,
    indexed_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS tracks_fts USING fts5(
    search_text, content='tracks', content_rowid='track_key', tokenize='trigram'
);
CREATE TRIGGER IF NOT EXISTS tracks_ai AFTER INSERT ON tracks BEGIN
  INSERT INTO tracks_fts(rowid, search_text) VALUES (new.track_key, new.search_text);
END;
CREATE TRIGGER IF NOT EXISTS tracks_ad AFTER DELETE ON tracks BEGIN
  INSERT INTO tracks_fts(tracks_fts, rowid, search_text) VALUES ('delete', old.track_key, old.search_text);
END;
CREATE TRIGGER IF NOT EXISTS tracks_au AFTER UPDATE ON tracks BEGIN
  INSERT INTO tracks_fts(tracks_fts, rowid, search_text) VALUES ('delete', old.track_key, old.search_text);
  INSERT INTO tracks_fts(rowid, search_text) VALUES (new.track_key, new.search_text);
END;
"""


def dedup_key(track: Track) -> str:
    return fold(track.artist) + "|" + fold(re.sub(r"\s*[\(\[].*?[\)\]]", "", track.name))


@dataclass
class SearchHit:
    track: Track
    score: float


class CatalogueDB:
    """Track metadata + name search in one SQLite file; safe to share between threads."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.RLock()
        try:
            if read_only:
                if not self.path.exists():
                    raise StoreError(f"catalogue database {self.path} does not exist; build the index first")
                self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=10)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.executescript(_SCHEMA)
                self._conn.commit()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise StoreLockedError(f"{self.path} is locked: {exc}") from exc
            raise StoreError(f"cannot open catalogue {self.path}: {exc}") from exc
        self._conn.row_factory = sqlite3.Row
        self._cache: dict[int, Track] = {}

    # ---- writing --------------------------------------------------------------

    def upsert_tracks(self, tracks: Iterable[Track]) -> int:
        rows = [
            (t.track_key, t.track_id, t.name, t.artist, json.dumps(t.genres, ensure_ascii=False), t.popularity,
             t.duration_ms, t.link_kind, t.audio_path, dedup_key(t), fold(f"{t.name} {t.artist}"))
            for t in tracks
        ]
        with self._lock, self._conn:
            self._conn.executemany(
                """INSERT INTO tracks(track_key, track_id, name, artist, genres, popularity, duration_ms,
                                      link_kind, audio_path, dedup_key, search_text)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT(track_key) DO UPDATE SET
                     name=excluded.name, artist=excluded.artist, genres=excluded.genres,
                     popularity=excluded.popularity, duration_ms=excluded.duration_ms,
                     link_kind=excluded.link_kind, audio_path=excluded.audio_path,
                     dedup_key=excluded.dedup_key, search_text=excluded.search_text""",
                rows,
            )
        self._cache.clear()
        return len(rows)

    def delete_tracks(self, keys: Iterable[int]) -> None:
        keys = list(keys)
        with self._lock, self._conn:
            self._conn.executemany("DELETE FROM tracks WHERE track_key=?", [(k,) for k in keys])
            self._conn.executemany("DELETE FROM indexed WHERE track_key=?", [(k,) for k in keys])
        self._cache.clear()

    def mark_indexed(self, track_key: int, audio_sig: str, model_id: str, n_segments: int) -> None:
        from datetime import datetime, timezone

        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO indexed VALUES (?,?,?,?,?)",
                (track_key, audio_sig, model_id, n_segments, datetime.now(timezone.utc).isoformat(timespec="seconds")),
            )

    def unmark_indexed(self, keys: Iterable[int]) -> None:
        with self._lock, self._conn:
            self._conn.executemany("DELETE FROM indexed WHERE track_key=?", [(k,) for k in keys])

    def indexed_state(self) -> dict[int, tuple[str, str]]:
        with self._lock:
            rows = self._conn.execute("SELECT track_key, audio_sig, model_id FROM indexed").fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def set_meta(self, key: str, value: str) -> None:
        with self._lock, self._conn:
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, value))

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    # ---- reading --------------------------------------------------------------

    @staticmethod
    def _row_to_track(r: sqlite3.Row) -> Track:
        return Track(r["track_id"], r["name"], r["artist"], json.loads(r["genres"]), r["popularity"],
                     r["duration_ms"], r["link_kind"], r["audio_path"])

    def count(self, *, indexed_only: bool = False) -> int:
        table = "indexed" if indexed_only else "tracks"
        with self._lock:
            return self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def get_many(self, keys: Iterable[int]) -> dict[int, Track]:
        keys = list(keys)
        out = {k: self._cache[k] for k in keys if k in self._cache}
        missing = [k for k in keys if k not in out]
        if missing:
            with self._lock:
                for i in range(0, len(missing), 500):
                    chunk = missing[i : i + 500]
                    q = f"SELECT * FROM tracks WHERE track_key IN ({','.join('?' * len(chunk))})"
                    for r in self._conn.execute(q, chunk):
                        t = self._row_to_track(r)
                        out[r["track_key"]] = t
                        if len(self._cache) < 100_000:
                            self._cache[r["track_key"]] = t
        return out

    def get(self, track_id: str) -> Track | None:
        with self._lock:
            r = self._conn.execute("SELECT * FROM tracks WHERE track_id=?", (track_id,)).fetchone()
        return self._row_to_track(r) if r else None

    def dedup_keys(self, keys: Iterable[int]) -> dict[int, str]:
        keys = list(keys)
        out: dict[int, str] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = f"SELECT track_key, dedup_key FROM tracks WHERE track_key IN ({','.join('?' * len(chunk))})"
                out.update({r[0]: r[1] for r in self._conn.execute(q, chunk)})
        return out

    def all_tracks(self) -> Iterator[Track]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM tracks ORDER BY track_key").fetchall()
        for r in rows:
            yield self._row_to_track(r)

    def search(self, text: str, limit: int = 10) -> list[SearchHit]:
        """Prefix + typo-tolerant name search (title and artist), best first.

        Substring matches come from FTS5's trigram index; a typo breaks a few
        trigrams but keeps most, so candidates are gathered by trigram overlap
        (OR of the query's trigrams) and then re-ranked by rapidfuzz's token
        similarity, then popularity.  Duplicates (same artist + title) show once.
        """
        from rapidfuzz import fuzz

        limit = max(1, min(int(limit), 25))
        q = fold(text)
        if not q:
            return []
        candidates: dict[int, sqlite3.Row] = {}
        with self._lock:
            if len(q) >= 3:
                phrase = '"' + q.replace('"', "") + '"'
                for r in self._conn.execute(
                    "SELECT t.* FROM tracks_fts f JOIN tracks t ON t.track_key=f.rowid "
                    "WHERE tracks_fts MATCH ? ORDER BY t.popularity DESC LIMIT 200", (phrase,)):
                    candidates[r["track_key"]] = r
                if len(candidates) < limit:
                    grams = sorted({q[i : i + 3] for i in range(len(q) - 2) if " " not in q[i : i + 3].strip()})
                    if grams:
                        expr = " OR ".join('"' + g.replace('"', "") + '"' for g in grams)
                        for r in self._conn.execute(
                            "SELECT t.* FROM tracks_fts f JOIN tracks t ON t.track_key=f.rowid "
                            "WHERE tracks_fts MATCH ? ORDER BY bm25(tracks_fts) LIMIT 300", (expr,)):
                            candidates.setdefault(r["track_key"], r)
            else:
                for r in self._conn.execute(
                    "SELECT * FROM tracks WHERE search_text >= ? AND search_text < ? ORDER BY popularity DESC LIMIT 100",
                    (q, q + "\uffff")):
                    candidates[r["track_key"]] = r
        scored = []
        for key, r in candidates.items():
            st = r["search_text"]
            score = max(fuzz.token_set_ratio(q, st), fuzz.partial_ratio(q, st) * 0.95)
            if st.startswith(q) or fold(r["name"]).startswith(q):
                score += 5
            scored.append((score, r["popularity"], key, r))
        scored.sort(key=lambda x: (-x[0], -x[1]))
        hits, seen = [], set()
        for score, _, _, r in scored:
            if score < 50 or r["dedup_key"] in seen:
                continue
            seen.add(r["dedup_key"])
            hits.append(SearchHit(self._row_to_track(r), min(100.0, score) / 100.0))
            if len(hits) >= limit:
                break
        return hits

    def close(self) -> None:
        with self._lock:
            self._conn.close()
