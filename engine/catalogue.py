"""The query-time catalogue: track metadata, links, and search by name.

Metadata lives in a SQLite side table (``<data_dir>/catalogue.sqlite``), not in
Milvus scalar fields.  Why: name search needs a text index (FTS5 trigram), the
Kaggle CSV lists one track under several genres (a join, not a vector field),
and milvus-lite evaluates ``like`` filters as full scans.  Milvus keeps only what
it is good at: vectors keyed by ``track_key``.

Reading catalogue *sources* (the Kaggle CSV, a folder of audio, tags) is the index
builder's job: ``index_builder/ingest.py``.  This module holds only what a query
process needs too: :class:`Track`, :class:`CatalogueDB`, the name folding and
dedup rules, and the constants both sides share (:data:`AUDIO_EXTENSIONS`,
:data:`SPOTIFY_FEATURES`, :data:`SPOTIFY_ID_RE`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path
from urllib.parse import quote

from .errors import EmptyIndexError, StoreError, StoreLockedError

log = logging.getLogger(__name__)

#: a real Spotify track id (base62, 22 characters): only these get a direct track link
SPOTIFY_ID_RE = re.compile(r"^[0-9A-Za-z]{22}$")
#: file extensions taken as audio, both for catalogue folders and for attachments a person sends
AUDIO_EXTENSIONS = {".mp3", ".ogg", ".opus", ".oga", ".m4a", ".aac", ".mp4", ".wav", ".flac", ".webm", ".wma", ".aiff", ".aif"}

#: Spotify's audio features in the Kaggle CSV, with the range each must lie in
SPOTIFY_FEATURES: dict[str, tuple[float, float]] = {
    "acousticness": (0.0, 1.0), "danceability": (0.0, 1.0), "energy": (0.0, 1.0),
    "instrumentalness": (0.0, 1.0), "liveness": (0.0, 1.0), "loudness": (-70.0, 10.0),
    "speechiness": (0.0, 1.0), "valence": (0.0, 1.0), "tempo": (0.0, 300.0),
}


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


_DIGIT_RUNS = re.compile(r"(\d+)")


def natural_key(text: str) -> list[str | int]:
    """Sort key that reads numbers as numbers, so "Track 2" comes before "Track 10".

    Why: catalogues number their tracks ("Track 1".."Track 25", "Ambient 10"), and equal
    matches listed in character order (1, 10, 11, 2, ...) look like no order at all.
    ``re.split`` with a group alternates text and digit runs, so two keys always compare
    text with text and numbers with numbers.
    """
    return [int(part) if i % 2 else part for i, part in enumerate(_DIGIT_RUNS.split(fold(text)))]


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
    #: Spotify's audio features from the CSV (SPOTIFY_FEATURES, those present and in range), or None
    audio_features: dict[str, float] | None = None

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

    @classmethod
    def from_dict(cls, d: dict) -> Track:
        """The track of a ``to_dict`` (extra keys such as ``link`` or a score are ignored)."""
        return cls(track_id=d["track_id"], name=d["name"], artist=d.get("artist", ""),
                   genres=list(d.get("genres") or []), popularity=int(d.get("popularity") or 0),
                   duration_ms=d.get("duration_ms"), link_kind=d.get("link_kind", "spotify"),
                   audio_path=d.get("audio_path"), audio_features=d.get("audio_features"))


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
    -- fold("title artist"): what name search matches (FTS5 trigram) and ranks
    search_text TEXT NOT NULL,
    -- fold("artist title"): the other order, for anchored prefixes ("beyonce hal...")
    artist_text TEXT NOT NULL DEFAULT '',
    -- the FTS rowid: popularity << 40 | a sequence number, so FTS5 can walk the
    -- matches most-popular-first and stop at a LIMIT (see CatalogueDB.search)
    search_rowid INTEGER,
    -- Spotify audio features (JSON) when the CSV has them: what places a row without audio
    features    TEXT
);
CREATE INDEX IF NOT EXISTS tracks_dedup ON tracks(dedup_key);
CREATE UNIQUE INDEX IF NOT EXISTS tracks_search_rowid ON tracks(search_rowid);
CREATE INDEX IF NOT EXISTS tracks_search_text ON tracks(search_text);
CREATE INDEX IF NOT EXISTS tracks_artist_text ON tracks(artist_text);
CREATE INDEX IF NOT EXISTS tracks_artist ON tracks(artist);
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
    search_text, content='tracks', content_rowid='search_rowid', tokenize='trigram'
);
CREATE TRIGGER IF NOT EXISTS tracks_ai AFTER INSERT ON tracks BEGIN
  INSERT INTO tracks_fts(rowid, search_text) VALUES (new.search_rowid, new.search_text);
END;
CREATE TRIGGER IF NOT EXISTS tracks_ad AFTER DELETE ON tracks BEGIN
  INSERT INTO tracks_fts(tracks_fts, rowid, search_text) VALUES ('delete', old.search_rowid, old.search_text);
END;
CREATE TRIGGER IF NOT EXISTS tracks_au AFTER UPDATE ON tracks BEGIN
  INSERT INTO tracks_fts(tracks_fts, rowid, search_text) VALUES ('delete', old.search_rowid, old.search_text);
  INSERT INTO tracks_fts(rowid, search_text) VALUES (new.search_rowid, new.search_text);
END;
"""


_SEQ_BITS = 40
#: words of a query that go into the FTS5 AND (the longest; the ranking uses all of them)
MAX_FTS_WORDS = 3
_SEQ_MASK = (1 << _SEQ_BITS) - 1


def _search_rowid(popularity: int, seq: int) -> int:
    return (max(0, min(int(popularity), 1000)) << _SEQ_BITS) | (seq & _SEQ_MASK)


def _fts_phrase(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


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
                    raise EmptyIndexError(f"catalogue database {self.path} does not exist; build the index first")
                self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=10)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._migrate()
                self._conn.executescript(_SCHEMA)
                self._conn.commit()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise StoreLockedError(f"{self.path} is locked: {exc}") from exc
            raise StoreError(f"cannot open catalogue {self.path}: {exc}") from exc
        self._conn.row_factory = sqlite3.Row
        self._cache: dict[int, Track] = {}
        self._next_seq: int | None = None
        self._vocab: tuple[int, dict[int, list[str]]] | None = None
        cols = {r[1] for r in self._conn.execute("PRAGMA table_info(tracks)")}
        #: an index built before search_rowid existed, opened read-only: search still works, slower
        self._fts_rowid = "search_rowid" if "search_rowid" in cols else "track_key"
        self._has_artist_text = "artist_text" in cols

    def _migrate(self) -> None:
        """Catalogues written before search_rowid/artist_text/features: add them (and rebuild the FTS index)."""
        cols = {r[1] for r in self._conn.execute("PRAGMA table_info(tracks)")}
        if cols and "features" not in cols:
            with self._conn:
                self._conn.execute("ALTER TABLE tracks ADD COLUMN features TEXT")
        if not cols or "search_rowid" in cols:
            return
        log.info("upgrading %s for fast name search (one-off)", self.path)
        with self._conn:
            for trig in ("tracks_ai", "tracks_ad", "tracks_au"):
                self._conn.execute(f"DROP TRIGGER IF EXISTS {trig}")
            self._conn.execute("DROP TABLE IF EXISTS tracks_fts")
            self._conn.execute("ALTER TABLE tracks ADD COLUMN artist_text TEXT NOT NULL DEFAULT ''")
            self._conn.execute("ALTER TABLE tracks ADD COLUMN search_rowid INTEGER")
            rows = self._conn.execute("SELECT track_key, name, artist, popularity FROM tracks").fetchall()
            self._conn.executemany(
                "UPDATE tracks SET artist_text=?, search_rowid=? WHERE track_key=?",
                [(fold(f"{a} {n}"), _search_rowid(p, i + 1), k) for i, (k, n, a, p) in enumerate(rows)])
        self._conn.executescript(_SCHEMA)
        with self._conn:
            self._conn.execute("INSERT INTO tracks_fts(tracks_fts) VALUES ('rebuild')")

    # ---- writing --------------------------------------------------------------

    def upsert_tracks(self, tracks: Iterable[Track]) -> int:
        tracks = list(tracks)
        with self._lock, self._conn:
            # a track keeps its sequence number; new tracks get the next ones
            seqs: dict[int, int] = {}
            keys = [t.track_key for t in tracks]
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = f"SELECT track_key, search_rowid FROM tracks WHERE track_key IN ({','.join('?' * len(chunk))})"
                seqs.update({k: r & _SEQ_MASK for k, r in self._conn.execute(q, chunk) if r is not None})
            if self._next_seq is None:
                top = self._conn.execute("SELECT MAX(search_rowid & ?) FROM tracks", (_SEQ_MASK,)).fetchone()[0]
                self._next_seq = int(top or 0) + 1
            rows = []
            for t in tracks:
                seq = seqs.get(t.track_key)
                if seq is None:
                    seq = seqs[t.track_key] = self._next_seq
                    self._next_seq += 1
                rows.append((t.track_key, t.track_id, t.name, t.artist, json.dumps(t.genres, ensure_ascii=False),
                             t.popularity, t.duration_ms, t.link_kind, t.audio_path, dedup_key(t),
                             fold(f"{t.name} {t.artist}"), fold(f"{t.artist} {t.name}"),
                             _search_rowid(t.popularity, seq),
                             json.dumps(t.audio_features) if t.audio_features else None))
            self._conn.executemany(
                """INSERT INTO tracks(track_key, track_id, name, artist, genres, popularity, duration_ms,
                                      link_kind, audio_path, dedup_key, search_text, artist_text, search_rowid,
                                      features)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT(track_key) DO UPDATE SET
                     name=excluded.name, artist=excluded.artist, genres=excluded.genres,
                     popularity=excluded.popularity, duration_ms=excluded.duration_ms,
                     link_kind=excluded.link_kind, audio_path=excluded.audio_path,
                     dedup_key=excluded.dedup_key, search_text=excluded.search_text,
                     artist_text=excluded.artist_text, search_rowid=excluded.search_rowid,
                     features=excluded.features""",
                rows,
            )
        self._cache.clear()
        self._vocab = None
        return len(rows)

    def delete_tracks(self, keys: Iterable[int]) -> None:
        keys = list(keys)
        with self._lock, self._conn:
            self._conn.executemany("DELETE FROM tracks WHERE track_key=?", [(k,) for k in keys])
            self._conn.executemany("DELETE FROM indexed WHERE track_key=?", [(k,) for k in keys])
        self._cache.clear()
        self._vocab = None

    def mark_indexed(self, track_key: int, audio_sig: str, model_id: str, n_segments: int) -> None:
        from datetime import datetime

        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO indexed VALUES (?,?,?,?,?)",
                (track_key, audio_sig, model_id, n_segments, datetime.now(UTC).isoformat(timespec="seconds")),
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
        feats = r["features"] if "features" in r.keys() else None
        return Track(r["track_id"], r["name"], r["artist"], json.loads(r["genres"]), r["popularity"],
                     r["duration_ms"], r["link_kind"], r["audio_path"], json.loads(feats) if feats else None)

    def has_spotify_ids(self) -> bool:
        """Whether any track has a real Spotify id (a ``--not-spotify`` build has none): Spotify links
        can only name tracks of such a catalogue."""
        with self._lock:
            return self._conn.execute("SELECT 1 FROM tracks WHERE link_kind='spotify' LIMIT 1").fetchone() is not None

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

    def keys_by_artist(self, artist: str, *, indexed_only: bool = True, limit: int = 5000) -> list[int]:
        """Track keys of one artist (exact name), those with vectors only by default."""
        join = "JOIN indexed USING(track_key)" if indexed_only else ""
        with self._lock:
            rows = self._conn.execute(f"SELECT track_key FROM tracks {join} WHERE artist=? LIMIT ?",
                                      (artist, limit)).fetchall()
        return [r[0] for r in rows]

    def all_tracks(self) -> Iterator[Track]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM tracks ORDER BY track_key").fetchall()
        for r in rows:
            yield self._row_to_track(r)

    def search(self, text: str, limit: int = 10) -> list[SearchHit]:
        """Prefix + typo/accent-tolerant name search (title and artist), best match first.

        Candidates, each step bounded (p95 < 20 ms at 232k tracks, docs/performance.md):
        1. anchored prefixes of "title artist" and "artist title" (B-tree range scans);
        2. every query word (3+ letters) as a substring, in any order: FTS5 trigram
           AND query walked in rowid order = most popular first, stopped at a LIMIT;
        3. only when 1-2 found too few good matches: words that look misspelt are
           widened to their nearest catalogue words (rapidfuzz over the vocabulary,
           "metalica" -> metallica), then the same AND query; finally any word (OR).
        Ranked by rapidfuzz match quality (all words covered, whole-string closeness,
        prefix bonus), then popularity, then the name in natural order ("Track 2" before
        "Track 10"); duplicates (same artist + title) show once.
        """
        limit = max(1, min(int(limit), 25))
        q = fold(text)
        if not q:
            return []
        tokens = q.split()
        # the longest words (3+ letters) select; more words only add FTS work, the ranking uses all
        words = sorted({t for t in tokens if len(t) >= 3}, key=lambda w: (-len(w), w))[:MAX_FTS_WORDS]
        words.sort(key=tokens.index)
        cands: dict[int, sqlite3.Row] = {}
        with self._lock:
            self._prefix_candidates(q, 30, cands)
            if words:
                self._fts_candidates(" AND ".join(_fts_phrase(w) for w in words), 120, cands)
            scored = self._rank(q, [], cands)
            good = sum(1 for x in scored if x[0] >= 80)
            if words and good < limit and len(q) >= 4:
                alts = self._alternatives(words)
                if any(len(a) > 1 for a in alts):
                    expr = " AND ".join("(" + " OR ".join(_fts_phrase(w) for w in a) + ")" for a in alts)
                    self._fts_candidates(expr, 120, cands)
                    scored = self._rank(q, alts, cands)
                    good = sum(1 for x in scored if x[0] >= 80)
                if good < limit and len(words) > 1:
                    # any of the two longest words (or their corrections)
                    longest = sorted(alts, key=lambda a: -len(a[0]))[:2]
                    expr = " OR ".join(_fts_phrase(w) for a in longest for w in a)
                    self._fts_candidates(expr, 120, cands)
                    scored = self._rank(q, alts, cands)
        hits, seen = [], set()
        for score, _, _, r in scored:
            if score < 50 or r["dedup_key"] in seen:
                continue
            seen.add(r["dedup_key"])
            hits.append(SearchHit(self._row_to_track(r), min(100.0, score) / 100.0))
            if len(hits) >= limit:
                break
        return hits

    def _prefix_candidates(self, q: str, n: int, out: dict[int, sqlite3.Row]) -> None:
        """The n most popular tracks whose "title artist" or "artist title" starts with q."""
        cols = ("search_text", "artist_text") if self._has_artist_text else ("search_text",)
        hi = q + "\uffff"
        for col in cols:
            # a short prefix matches thousands of rows: sorting them all costs 100+ ms at 232k,
            # walking the popularity-ordered search_rowid index until n match costs a few
            wide = self._fts_rowid == "search_rowid" and self._conn.execute(
                f"SELECT COUNT(*) FROM (SELECT 1 FROM tracks WHERE {col} >= ? AND {col} < ? LIMIT 1500)",
                (q, hi)).fetchone()[0] >= 1500
            sql = (f"SELECT * FROM tracks INDEXED BY tracks_search_rowid WHERE {col} >= ? AND {col} < ? "
                   "ORDER BY search_rowid DESC LIMIT ?") if wide else (
                   f"SELECT * FROM tracks WHERE {col} >= ? AND {col} < ? ORDER BY popularity DESC LIMIT ?")
            for r in self._conn.execute(sql, (q, hi, n)):
                out.setdefault(r["track_key"], r)

    def _fts_candidates(self, expr: str, n: int, out: dict[int, sqlite3.Row]) -> None:
        col = self._fts_rowid
        for r in self._conn.execute(
                f"SELECT t.* FROM tracks t WHERE t.{col} IN "
                f"(SELECT rowid FROM tracks_fts WHERE tracks_fts MATCH ? ORDER BY rowid DESC LIMIT ?)", (expr, n)):
            out.setdefault(r["track_key"], r)

    def _vocabulary(self) -> dict[int, list[str]]:
        """Distinct words (3+ letters) of titles and artists, by length; rebuilt when the file changes."""
        # data_version changes when another connection (an index build) commits; our own
        # writes reset self._vocab in upsert_tracks / delete_tracks
        stamp = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if self._vocab is None or self._vocab[0] != stamp:
            words: set[str] = set()
            for (st,) in self._conn.execute("SELECT search_text FROM tracks"):
                words.update(w for w in st.split() if len(w) >= 3)
            by_len: dict[int, list[str]] = {}
            for w in words:
                by_len.setdefault(len(w), []).append(w)
            self._vocab = (stamp, by_len)
        return self._vocab[1]

    def _alternatives(self, words: list[str]) -> list[list[str]]:
        """Each query word plus its nearest catalogue words (edit-distance ratio >= 75)."""
        from rapidfuzz import fuzz, process

        vocab = self._vocabulary()
        out = []
        for i, w in enumerate(words):
            alts = [w]
            if len(w) >= 4:
                last = i == len(words) - 1  # still being typed: longer words may complete it
                pool = [x for n in range(len(w) - 2, len(w) + (4 if last else 3)) for x in vocab.get(n, ())]
                for cand, _score, _ in process.extract(w, pool, scorer=fuzz.ratio, limit=4, score_cutoff=75):
                    if cand != w:
                        alts.append(cand)
            out.append(alts)
        return out

    @staticmethod
    def _rank(q: str, alts: list[list[str]], cands: dict[int, sqlite3.Row]) -> list[tuple]:
        from rapidfuzz import fuzz

        # the query with each corrected word replaced by its best correction, scored too (small
        # penalty).  Every other token stays where it was: numbers and short words are never
        # corrected, but "warzon trak 18" must still ask for track 18, not any "warzone track"
        variants = [(q, 0.0)]
        if alts:
            best_fix = {a[0]: a[1] for a in alts if len(a) > 1}
            fixed = " ".join(best_fix.get(t, t) for t in q.split())
            if fixed != q:
                variants.append((fixed, 4.0))
        scored = []
        for r in cands.values():
            st = r["search_text"]
            at = r["artist_text"] if "artist_text" in r.keys() else st  # noqa: SIM118 - sqlite3.Row
            best = 0.0
            for v, penalty in variants:
                if len(v) <= 2:  # one or two letters typed: any prefix match, most popular first
                    best = 78.0 if (st.startswith(v) or at.startswith(v)) else 0.0
                    continue
                cover = fuzz.token_set_ratio(v, st)
                whole = max(fuzz.ratio(v, st), fuzz.ratio(v, at))
                score = 0.75 * cover + 0.25 * whole - penalty
                if st.startswith(v) or at.startswith(v):
                    score += 8
                elif all(f" {t}" in f" {st}" for t in v.split()):
                    score += 4  # every word starts a word of the track (not mid-word)
                st_words = st.split()
                if all(any(w.startswith(t) for w in st_words) for t in v.split()):
                    # autocomplete: every typed word begins a word of the track ("orie" ->
                    # "Oriental ..."), which whole-string similarity scores far too low
                    score = max(score, 95.0 + 5.0 * len(v) / max(len(st), 1) - penalty)
                best = max(best, score)
            # match quality first (in steps of 2 points), then popularity, then the name as a person
            # reads numbers: equal matches of equal popularity (a numbered album) in a visible order
            scored.append((best, int(best // 2), r["popularity"], r))
        scored.sort(key=lambda x: (-x[1], -x[2], natural_key(x[3]["search_text"])))
        return [(s, p, k, r) for s, k, p, r in scored]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
