"""The landmark index: an inverted ``hash -> (track, time)`` table in one SQLite file.

Where it lives: ``Settings.fingerprint_db_path`` = ``<data_dir>/fingerprints.sqlite``,
beside the Milvus vector store.  Why SQLite and not Milvus: identification is an
exact integer-key inverted lookup (thousands of hashes per query, each a B-tree
seek), which SQLite serves in microseconds per key from a clustered
``WITHOUT ROWID`` table, while milvus-lite has no efficient integer inverted
lookup (``in``/``like`` filters are full scans there).

Schema::

    fp(hash, track_key, t)   PRIMARY KEY (hash, track_key, t) WITHOUT ROWID
    tracks(track_key PRIMARY KEY, n_hashes, seconds, hashes BLOB)
    peaks(track_key PRIMARY KEY, n_peaks, peaks BLOB)

``peaks`` holds each track's single reference peaks (:mod:`engine.fingerprint.peaks`,
~2 bytes a peak), which stage 2 of a query reads for its few shortlisted tracks (one
primary-key read each) to derive their pairs, and the offset verification after it.  A track
without them cannot be scored, so it is never named: :meth:`FingerprintIndex.keys_without_peaks`
says which for ``about``, and ``synesthete-index build`` indexes those tracks again.

``fp`` is clustered on ``hash`` so one lookup reads one contiguous run of rows.
``tracks.hashes`` keeps the sorted distinct hashes of a track (zlib'd delta
uint32, ~1-2 bytes each for pairs, ~3 for the sparser triplets) so :meth:`remove_track` can delete by primary-key
prefix ``(hash, track_key)`` instead of scanning the table or paying for a
second index on ``track_key`` (which would almost double the file).

Keys: **triplet** hashes (landmark version 2, :func:`engine.fingerprint.landmarks.triplet_hashes`),
~430 k rows per hour of audio (pairs were ~780 k), ~12 bytes a row in the read snapshot.

Query cost: a two-stage lookup (:meth:`FingerprintIndex._shortlist_and_score`).  Stage 1 looks up
the query's triplets (with their +-1-frame variants): a 10-s note touches ~220 rows per catalogue
hour (pairs: ~6,300), at most ``max_candidates`` of them (the rarest hashes first), and their
offset histogram shortlists the ``VERIFY_TRACKS`` (16) best tracks.  Stage 2 derives those tracks'
*pairs* from their stored peaks and scores them with the query's pairs: a phone breaks triplets
more often than pairs, so the answer, its offset and its margin come from the pairs, as when
every pair row was scored (docs/identification.md, "Pairs or triplets").  Stage 2's work does not
grow with the catalogue; stage 1's grows ~30x slower than a pair index's did.

Concurrency: WAL mode, one connection per thread (``threading.local``) so many
``match`` calls run in parallel with each other and with one writer; writes are
serialised by a lock and each track is one transaction, so a reader never sees
a half-written track.  ``read_only=True`` opens ``mode=ro`` for query processes.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import sqlite3
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import StoreError
from engine.fileio import atomic_write
from engine.fingerprint.landmarks import (FRAMES_PER_S, HASH_BITS, LANDMARK_VERSION, REFERENCE, Fingerprint,
                                         extract_fingerprint, pair_peaks)
from engine.fingerprint.peaks import BIN_SPAN, aligned_peak_matches, pack_peaks, unpack_peaks

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: Tracks stage 1 (triplets) shortlists for stage 2 (their pairs), see ``_shortlist_and_score``.
#: 16, not 8: on the dev corpora's real phone recordings 8 missed songs the triplets ranked
#: 9th-16th (top-1 0.954 -> 0.971 on set a), and 16 is within 0-1.3 points of scoring every
#: track's pairs on the share named (docs/identification.md, "How many tracks to shortlist").
VERIFY_TRACKS = 16
#: Tracks whose derived pairs stay in memory (~0.4 MB each for a 4-min track).
PAIR_CACHE_TRACKS = 128
#: SQLite's default limit on bound parameters is 32766; stay well below it.
_IN_CHUNK = 20000


class StaleIndexError(StoreError):
    """The index was made by another landmark version (its hashes mean something else)."""


#: One row of the read snapshot: hash, index into the snapshot's sorted track keys, frame time.
SNAPSHOT_DTYPE = np.dtype([("h", "<u4"), ("k", "<u4"), ("t", "<u4")])


def _bump_generation(conn: sqlite3.Connection) -> None:
    """Every write bumps the generation, so a read snapshot knows when it is stale."""
    conn.execute("INSERT INTO meta(key, value) VALUES ('generation', 1) "
                 "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1")


@dataclass(frozen=True)
class FingerprintMatch:
    """One candidate track for a query.

    ``score``: number of query landmarks that agree on one time offset (±1 frame).
    ``offset_s``: where the query starts in the track (seconds).
    ``confidence``: 0..1, the margin confidence that *this* is the track (see
    :func:`confidence`; only the best candidate has one).  It is not a probability: the
    calibrated one is :func:`engine.identify.decide`'s.
    ``query_landmarks``: how many landmarks the query was matched with.
    ``peaks_matched`` / ``peaks_total``: the offset verification (:mod:`engine.fingerprint.peaks`):
    how many of the query's single peaks inside the track land on its peaks at ``offset_s``;
    ``peaks_matched`` is None when the index holds no peaks for the track (not verified).
    """

    track_key: int
    score: int
    offset_s: float
    confidence: float
    query_landmarks: int = 0
    peaks_matched: int | None = None
    peaks_total: int = 0


def confidence(best: int, other: int) -> float:
    """0..1 confidence that a candidate with score ``best`` is right, given the best *other* score.

    Why this form: for a wrong track, hashes agree on one offset only by
    chance, a small Poisson-like count whose size grows with the query's hash
    count and the catalogue size; the runner-up's score is a direct estimate of
    that chance level.  So we measure the margin over the runner-up in units of
    its Poisson spread (``sqrt(other + 1)``), and also demand an absolute margin
    (a 6-vs-1 "win" is not trustworthy).  ``z = 2.5`` and a margin of 4 votes
    each give 0.5.  On the dev corpus (238 tracks, 952 queries) no wrong top-1
    scored above 0.35 with these scales, and 0.5 kept ~90% of the right
    answers to full 10-s phone queries.
    """
    margin = best - other
    if margin <= 0:
        return 0.0
    z = margin / np.sqrt(other + 1.0)
    c_z = 1.0 - np.exp(-z * np.log(2.0) / 2.5)
    c_abs = 1.0 - np.exp(-margin * np.log(2.0) / 4.0)
    return float(np.clip(min(c_z, c_abs), 0.0, 1.0))


def _pack_hashes(h: np.ndarray) -> bytes:
    u = np.unique(h.astype(np.uint32))
    d = np.diff(u, prepend=np.uint32(0)).astype(np.uint32)
    return zlib.compress(d.tobytes(), 6)


def _unpack_hashes(blob: bytes) -> np.ndarray:
    d = np.frombuffer(zlib.decompress(blob), dtype=np.uint32)
    return np.cumsum(d, dtype=np.uint64).astype(np.int64)


def score_candidates(
    q_hash: np.ndarray,
    q_time: np.ndarray,
    r_hash: np.ndarray,
    r_track: np.ndarray,
    r_time: np.ndarray,
    top_k: int,
) -> list[FingerprintMatch]:
    """Offset-histogram scoring of DB rows against the query's landmarks.

    Every (query landmark, DB row) pair with equal hash votes for
    ``(track, t_ref - t_query)``; a track's score is its best offset's votes
    plus its two neighbours' (±1 frame: peaks can shift by one hop between a
    degraded recording and the original).  Each query landmark votes at most
    once per (track, offset), so repeated notes don't inflate a score.

    Every track with a matching hash gets its histogram.  Ranking tracks by their raw
    number of matching hashes first and scoring only the top few hundred was measured
    and rejected: at 228 h of catalogue it cut scoring time by ~40% but dropped top-1
    from 1.00 to 0.75, because chance matches (hundreds per track) swamp the aligned
    ones (tens) in a raw count (docs/identification.md).
    """
    if r_hash.size == 0 or q_hash.size == 0:
        return []
    # Map DB rows to dense track indices once (over rows, not over the larger set of pairs).
    tkeys, r_tidx = np.unique(np.asarray(r_track, dtype=np.int64), return_inverse=True)
    order = np.argsort(q_hash)  # the votes do not depend on the order of equal hashes: SIMD quicksort, ~6x stable's speed
    qh, qt = q_hash[order].astype(np.int64), q_time[order].astype(np.int64)
    lo = np.searchsorted(qh, r_hash, side="left")
    hi = np.searchsorted(qh, r_hash, side="right")
    cnt = hi - lo
    sel = cnt > 0
    if not sel.any():
        return []
    lo, cnt = lo[sel], cnt[sel]
    tr, rt = r_tidx[sel].astype(np.int64), r_time[sel].astype(np.int64)
    # expand every DB row into one pair per matching query landmark
    rep = np.repeat(np.arange(cnt.size), cnt)
    first = np.repeat(np.cumsum(cnt) - cnt, cnt)
    qidx = lo[rep] + (np.arange(rep.size) - first)
    offs = rt[rep] - qt[qidx]
    # (track, t_ref, query landmark) is unique (primary key + distinct query
    # landmarks), so every pair is already one vote of one query landmark.
    tidx = tr[rep]
    off_min = int(offs.min()) - 2
    span = int(offs.max()) - off_min + 3
    uk, votes = np.unique(tidx.astype(np.int64) * span + (offs - off_min), return_counts=True)
    # ±1 frame smoothing via lookups of the neighbouring keys in the sorted array
    total = votes.copy()
    for d in (-1, 1):
        pos = np.searchsorted(uk, uk + d)
        pos_c = np.minimum(pos, uk.size - 1)
        hit = (pos < uk.size) & (uk[pos_c] == uk + d)
        total[hit] += votes[pos_c[hit]]
    trk = uk // span
    off = uk % span + off_min
    # best offset per track
    o = np.lexsort((-total, trk))
    trk_s = trk[o]
    firsts = o[np.r_[True, trk_s[1:] != trk_s[:-1]]]
    best_tr, best_sc, best_off = tkeys[trk[firsts]], total[firsts], off[firsts]
    rank = np.argsort(-best_sc, kind="stable")[: max(top_k, 2)]
    scores = best_sc[rank]
    out: list[FingerprintMatch] = []
    for i, r in enumerate(rank[:top_k]):
        other = int(scores[1]) if i == 0 and scores.size > 1 else int(scores[0]) if i > 0 else 0
        out.append(
            FingerprintMatch(
                track_key=int(best_tr[r]),
                score=int(best_sc[r]),
                offset_s=float(best_off[r]) / FRAMES_PER_S,
                confidence=confidence(int(best_sc[r]), other) if i == 0 else 0.0,
                query_landmarks=int(q_hash.size),
            )
        )
    return out


class FingerprintIndex:
    """SQLite-backed landmark index; see the module docstring for layout and costs."""

    #: This backend keeps each track's single peaks for the offset verification.
    stores_peaks = True

    def __init__(self, path: str | Path, *, read_only: bool = False, max_candidates: int = 0,
                 reset_if_stale: bool = False, verify: bool = False) -> None:
        self.path = Path(path)
        #: whether :meth:`match` verifies its candidates (``Settings.identify_verification``)
        self.verify_matches = verify
        self.read_only = read_only
        #: Most DB rows one query scores (0 = all); see :meth:`_lookup_snapshot`.
        self.max_candidates = max(0, int(max_candidates))
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._pair_lock = threading.Lock()
        self._pair_cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._pair_cache_gen = -1
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        if read_only:
            if not self.path.is_file():
                raise StoreError(f"fingerprint index {self.path} does not exist")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        if not read_only:
            with self._write_lock:
                conn.executescript(
                    """
                    CREATE TABLE IF NOT EXISTS fp (
                        hash INTEGER NOT NULL, track_key INTEGER NOT NULL, t INTEGER NOT NULL,
                        PRIMARY KEY (hash, track_key, t)) WITHOUT ROWID;
                    CREATE TABLE IF NOT EXISTS tracks (
                        track_key INTEGER PRIMARY KEY, n_hashes INTEGER NOT NULL,
                        seconds REAL NOT NULL, added_at REAL NOT NULL, hashes BLOB NOT NULL);
                    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                    CREATE TABLE IF NOT EXISTS peaks (
                        track_key INTEGER PRIMARY KEY, n_peaks INTEGER NOT NULL, peaks BLOB NOT NULL);
                    """
                )
                conn.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
                empty = conn.execute("SELECT COUNT(*) FROM tracks").fetchone()[0] == 0
                if empty:  # a fresh (or emptied) index takes this engine's landmark version
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('landmark_version', ?)",
                                 (str(LANDMARK_VERSION),))
                conn.commit()
        if reset_if_stale and not read_only and self.landmark_version() != LANDMARK_VERSION:
            self._reset()
        self.check_landmark_version()

    def _reset(self) -> None:
        """Empty an index of another landmark version (the builder's way to redo every track)."""
        old = self.landmark_version()
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM fp")
            conn.execute("DELETE FROM tracks")
            conn.execute("DELETE FROM peaks")
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('landmark_version', ?)", (str(LANDMARK_VERSION),))
            _bump_generation(conn)
            conn.execute("COMMIT")
        log.warning("the fingerprint index was built with landmark version %d; it was emptied and every track "
                    "will be fingerprinted again with version %d", old, LANDMARK_VERSION)

    def landmark_version(self) -> int:
        """The landmark version the index's rows were made with (1 for indexes that predate the record)."""
        row = self._conn().execute("SELECT value FROM meta WHERE key='landmark_version'").fetchone()
        return int(row[0]) if row else 1

    def check_landmark_version(self) -> None:
        """Raise :class:`StaleIndexError` when the rows were made by another landmark version.

        Another version's hashes mean other things: matching them would give chance
        answers, so an old index is refused with what to do instead of being read.
        """
        found = self.landmark_version()
        if found != LANDMARK_VERSION:
            raise StaleIndexError(
                f"the fingerprint index {self.path} was built with landmark version {found}; this engine uses "
                f"version {LANDMARK_VERSION}. Rebuild it: `synesthete-index build`.")

    # ---- connections --------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("fingerprint index is closed")
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            if self.read_only:
                conn = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=30.0
                )
            else:
                conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30.0)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache per connection
            conn.execute("PRAGMA temp_store=MEMORY")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open fingerprint index {self.path}: {exc}") from exc
        self._local.conn = conn
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection (checkpointing the WAL of a writer)."""
        with self._conns_lock:
            for c in self._conns:
                try:
                    c.close()
                except sqlite3.Error:  # pragma: no cover - best effort
                    pass
            self._conns.clear()
        self._closed = True

    def __enter__(self) -> FingerprintIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing --------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError("fingerprint index was opened read-only")

    @staticmethod
    def _delete_rows(conn: sqlite3.Connection, track_key: int) -> bool:
        row = conn.execute("SELECT hashes FROM tracks WHERE track_key=?", (track_key,)).fetchone()
        if row is None:
            return False
        hashes = _unpack_hashes(row[0])
        conn.executemany(
            "DELETE FROM fp WHERE hash=? AND track_key=?", ((int(h), track_key) for h in hashes)
        )
        conn.execute("DELETE FROM tracks WHERE track_key=?", (track_key,))
        conn.execute("DELETE FROM peaks WHERE track_key=?", (track_key,))
        _bump_generation(conn)
        return True

    @staticmethod
    def _insert(conn: sqlite3.Connection, track_key: int, h: np.ndarray, t: np.ndarray, seconds: float) -> int:
        # sort by hash: inserts land in B-tree order (far fewer page splits)
        rows = np.unique(np.stack([h.astype(np.int64), t.astype(np.int64)], axis=1), axis=0)
        conn.executemany(
            "INSERT OR IGNORE INTO fp (hash, track_key, t) VALUES (?, ?, ?)",
            ((int(a), track_key, int(b)) for a, b in rows.tolist()),
        )
        conn.execute(
            "INSERT INTO tracks (track_key, n_hashes, seconds, added_at, hashes) VALUES (?,?,?,?,?)",
            (track_key, int(rows.shape[0]), float(seconds), time.time(), _pack_hashes(h)),
        )
        _bump_generation(conn)
        return int(rows.shape[0])

    def add_track(self, track_key: int, audio: np.ndarray, sr: int) -> int:
        """Fingerprint and store one track (replacing an older version); returns its row count.

        One transaction: a crash or a concurrent reader sees either the old
        version or the new one, never half of it.
        """
        return self.add_tracks_bulk([(track_key, audio, sr)])

    def add_tracks_bulk(self, items: Iterable[tuple[int, np.ndarray, int]]) -> int:
        """Add many tracks; each is still its own transaction (so a failure loses one track).

        Fingerprinting happens outside the write lock, so a pool of callers can
        extract in parallel while one writes.
        """
        total = 0
        for track_key, audio, sr in items:
            fp = extract_fingerprint(audio, sr, density="reference")
            total += self.add_landmarks(int(track_key), fp.hashes, fp.times, len(audio) / float(sr),
                                        peaks=(fp.peak_t, fp.peak_f))
        return total

    def add_landmarks(self, track_key: int, hashes: np.ndarray, times: np.ndarray, seconds: float,
                      peaks: tuple[np.ndarray, np.ndarray] | None = None) -> int:
        """Store landmarks computed elsewhere (an index-build worker), replacing the track's old ones.

        ``hashes``/``times``: its triplet keys; ``peaks``: its reference peaks ``(frames, band
        bins)`` (:func:`engine.fingerprint.landmarks.extract_fingerprint`), from which a query's
        stage 2 derives its pairs: without them the track can never be named (a warning;
        :meth:`keys_without_peaks` lists it and the build indexes it again).  One transaction: a
        crash or a concurrent reader sees either the old version or the new one, never half of it.
        """
        self._check_writable()
        track_key = int(track_key)
        conn = self._conn()
        blob = pack_peaks(*peaks) if peaks is not None else None  # before BEGIN: a bad peak leaves no open transaction
        if blob is None:
            log.warning("track %d is stored without its peaks: it cannot be named until it is indexed again",
                        track_key)
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                self._delete_rows(conn, track_key)
                n = self._insert(conn, track_key, hashes, times, seconds)
                if blob is not None:
                    conn.execute("INSERT OR REPLACE INTO peaks (track_key, n_peaks, peaks) VALUES (?,?,?)",
                                 (track_key, int(np.asarray(peaks[0]).size), blob))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise StoreError(f"cannot add track {track_key} to fingerprint index: {exc}") from exc
        log.debug("fingerprinted track %d: %.1f s, %d rows", track_key, seconds, n)
        return n

    def remove_track(self, track_key: int) -> bool:
        """Delete a track's rows; returns whether it was there."""
        self._check_writable()
        conn = self._conn()
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                found = self._delete_rows(conn, int(track_key))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise StoreError(f"cannot remove track {track_key}: {exc}") from exc
        return found

    # ---- reading --------------------------------------------------------------

    def track_keys(self) -> set[int]:
        return {r[0] for r in self._conn().execute("SELECT track_key FROM tracks")}

    def _has_peaks_table(self) -> bool:
        """Whether this index has a peaks table at all (an index of an older engine has none)."""
        return self._conn().execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='peaks'").fetchone() is not None

    def keys_without_peaks(self) -> set[int]:
        """Fingerprinted tracks whose peaks are not stored (all of them in an index that predates peaks)."""
        if not self._has_peaks_table():
            return self.track_keys()
        rows = self._conn().execute(
            "SELECT t.track_key FROM tracks t LEFT JOIN peaks p USING (track_key) WHERE p.track_key IS NULL")
        return {int(r[0]) for r in rows}

    def has_peaks(self) -> bool:
        """Whether every fingerprinted track can be verified (its peaks are stored)."""
        return not self.keys_without_peaks()

    def peak_codes(self, track_key: int) -> np.ndarray | None:
        """A track's sorted peak codes (:func:`engine.fingerprint.peaks.peak_codes`), None when not stored."""
        if not self._has_peaks_table():
            return None
        row = self._conn().execute("SELECT peaks FROM peaks WHERE track_key=?", (int(track_key),)).fetchone()
        try:
            return unpack_peaks(row[0]) if row is not None else None
        except (zlib.error, ValueError) as exc:
            raise StoreError(f"the peaks of track {track_key} are damaged: {exc}") from exc

    def verify(self, matches: list[FingerprintMatch], peak_t: np.ndarray, peak_f: np.ndarray) -> list[FingerprintMatch]:
        """The candidates with their offset verification filled in (:func:`engine.fingerprint.peaks.aligned_peak_matches`).

        ``peak_t``, ``peak_f``: the query's single peaks (frames, band bins).  A track whose
        peaks are not stored keeps ``peaks_matched=None``.
        """
        out = []
        for m in matches:
            codes = self.peak_codes(m.track_key)
            if codes is None:
                out.append(m)
                continue
            pm = aligned_peak_matches(peak_t, peak_f, codes, int(round(m.offset_s * FRAMES_PER_S)))
            out.append(dataclasses.replace(m, peaks_matched=pm.matched, peaks_total=pm.total))
        return out

    def stats(self) -> dict[str, int]:
        """``n_tracks``, ``n_hashes`` (rows), ``seconds`` of audio, ``file_bytes`` (db + WAL)."""
        conn = self._conn()
        n_tracks, n_rows, secs = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(n_hashes),0), COALESCE(SUM(seconds),0) FROM tracks"
        ).fetchone()
        size = 0
        for suffix in ("", "-wal"):
            p = Path(str(self.path) + suffix)
            if p.is_file():
                size += p.stat().st_size
        return {"n_tracks": int(n_tracks), "n_hashes": int(n_rows), "seconds": int(secs), "file_bytes": size}

    # ---- read snapshot ----------------------------------------------------------

    @property
    def snapshot_path(self) -> Path:
        """The sorted rows: ``<db>.snapshot.npy`` (row 0 is a header: generation, track count)."""
        return self.path.with_name(self.path.name + ".snapshot.npy")

    @property
    def keys_path(self) -> Path:
        """The snapshot's sorted track keys (int64): ``<db>.snapshot.npy.keys.npy``."""
        return self.snapshot_path.with_name(self.snapshot_path.name + ".keys.npy")

    def generation(self) -> int:
        row = self._conn().execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    def write_snapshot(self) -> Path:
        """Write the read-optimised copy of the index: one sorted, memory-mapped array.

        Why: a query looks up thousands of hashes; fetching their rows through
        Python's sqlite3 costs ~1 us a row (tens of thousands of rows a query),
        while ``np.searchsorted`` on a memory-mapped sorted array costs a few ms and
        only pages in what it touches (the OS page cache is shared by every query
        process).  The snapshot records the index's write generation and is ignored
        as soon as the SQLite index changes, so it can never serve stale answers.
        Both files go through :mod:`engine.fileio`: a reader sees the old file or the
        new one, and a crash mid-write leaves no half-written file behind.
        """
        conn = self._conn()
        gen = self.generation()
        keys = np.array(sorted(r[0] for r in conn.execute("SELECT track_key FROM tracks")), dtype=np.int64)
        n = conn.execute("SELECT COALESCE(SUM(n_hashes), 0) FROM tracks").fetchone()[0]
        arr = np.empty(int(n), dtype=SNAPSHOT_DTYPE)
        pos = 0
        # the primary key order (no sort: the table is clustered on it): a hash's rows are one run
        cur = conn.execute("SELECT hash, track_key, t FROM fp ORDER BY hash, track_key, t")
        while True:
            rows = cur.fetchmany(200_000)
            if not rows:
                break
            block = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=3 * len(rows)).reshape(-1, 3)
            m = block.shape[0]
            if pos + m > arr.size:  # the tracks table disagrees with fp: grow rather than fail
                arr = np.resize(arr, pos + m)
            arr["h"][pos : pos + m] = block[:, 0]
            arr["k"][pos : pos + m] = np.searchsorted(keys, block[:, 1])
            arr["t"][pos : pos + m] = block[:, 2]
            pos += m
        arr = arr[:pos]
        header = np.zeros(1, dtype=SNAPSHOT_DTYPE)
        header["h"], header["k"], header["t"] = gen & 0xFFFFFFFF, gen >> 32, len(keys)
        # keys first, then the rows: both atomic, so a crash leaves whole files; a rows file
        # whose header disagrees with the keys (generation, count) is ignored by readers
        atomic_write(self.keys_path, lambda fh: np.save(fh, keys))
        atomic_write(self.snapshot_path, lambda fh: np.save(fh, np.concatenate([header, arr])))
        self._snapshot = None
        log.info("fingerprint snapshot: %d rows, %d tracks, generation %d", pos, len(keys), gen)
        return self.snapshot_path

    def snapshot_is_current(self) -> bool:
        return self._load_snapshot() is not None

    def _load_snapshot(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The memory-mapped snapshot if it matches the current generation, else None."""
        gen = self.generation()
        cached = getattr(self, "_snapshot", None)
        if cached is not None and cached[0] == gen:
            return cached[1], cached[2]
        try:
            arr = np.load(self.snapshot_path, mmap_mode="r")
            keys = np.load(self.keys_path)
        except (OSError, ValueError) as exc:
            self._warn_no_snapshot(gen, f"it cannot be read ({exc.__class__.__name__}: {exc})")
            return None
        snap_gen = int(arr[0]["h"]) | (int(arr[0]["k"]) << 32)
        if snap_gen != gen or int(arr[0]["t"]) != len(keys):
            self._warn_no_snapshot(gen, f"it is stale (generation {snap_gen}, the index is at {gen})")
            return None
        self._snapshot = (gen, arr[1:], keys)
        return arr[1:], keys

    def _runs(self, hashes: np.ndarray, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` row ranges of each distinct query hash in the sorted snapshot."""
        srt = np.sort(hashes.astype(np.uint32))  # sort, then drop repeats: ~30x np.unique's hash path here
        uniq = srt[np.r_[True, srt[1:] != srt[:-1]]] if srt.size else srt
        col = arr["h"]
        return np.searchsorted(col, uniq, side="left"), np.searchsorted(col, uniq, side="right")

    def _budget_split(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Which runs (a bool mask) fit :attr:`max_candidates` rows, rarest hashes first (all without a budget)."""
        cnt = hi - lo
        keep = np.ones(cnt.size, bool)
        if self.max_candidates and int(cnt.sum()) > self.max_candidates:
            order = np.argsort(cnt, kind="stable")
            keep[:] = False
            keep[order[np.cumsum(cnt[order]) <= self.max_candidates]] = True
            keep[order[0]] = True  # even a budget under the rarest posting list scores something
        return keep

    @staticmethod
    def _gather(arr: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """The snapshot rows of the ranges ``[lo, hi)``, concatenated."""
        cnt = hi - lo
        if cnt.sum() == 0:
            return arr[:0]
        idx = np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(int(cnt.sum()))
        return arr[idx]

    def _warn_no_snapshot(self, gen: int, why: str) -> None:
        """Say once per index generation that queries read SQLite: right answers, but ~10x slower."""
        if getattr(self, "_warned_generation", None) == gen:
            return
        self._warned_generation = gen
        level = logging.DEBUG if not self.read_only else logging.WARNING  # a writer makes it stale on purpose
        log.log(level, "the fingerprint read snapshot %s is not used: %s; identification reads SQLite (slower). "
                "`synesthete-index build` writes it again", self.snapshot_path, why)

    def _lookup_snapshot(self, hashes: np.ndarray, arr: np.ndarray, keys: np.ndarray):
        """Rows ``(hash, track_key, t)`` of the query's triplet hashes, at most :attr:`max_candidates` of them (stage 1).

        Why a budget: a hash's posting list grows with the catalogue (a 10-s note's triplets
        touch ~220 rows per catalogue hour, docs/identification.md), so without one the
        scoring cost grows linearly with the catalogue.  Over budget, the hashes with the
        *shortest* posting lists are kept: a rare hash is strong evidence for the few tracks
        that have it, while a common one mostly adds chance votes (the idea of IDF).  Stage 2
        (:meth:`_shortlist_and_score`) scores the shortlist with every pair of its tracks.
        """
        lo, hi = self._runs(hashes, arr)
        keep = self._budget_split(lo, hi)
        rows = self._gather(arr, lo[keep], hi[keep])
        return (rows["h"].astype(np.int64), keys[rows["k"].astype(np.int64)], rows["t"].astype(np.int64))

    def _track_pairs(self, key: int, gen: int) -> tuple[np.ndarray, np.ndarray] | None:
        """A track's pair landmarks ``(hashes, anchor frames)`` derived from its stored peaks (None without them).

        Kept (read-only) for the :data:`PAIR_CACHE_TRACKS` tracks used last, for index generation
        ``gen`` (read once per query): a live recording asks for the same song every second, and
        the build's calibration for the same few candidates again and again.  A result computed
        while a write moved the generation on is not kept.
        """
        with self._pair_lock:
            if self._pair_cache_gen != gen:
                self._pair_cache.clear()
                self._pair_cache_gen = gen
            hit = self._pair_cache.get(key)
            if hit is not None:
                self._pair_cache.move_to_end(key)
                return hit
        codes = self.peak_codes(key)
        if codes is None or codes.size == 0:
            log.debug("track %d has no stored peaks: it cannot be scored", key)
            return None
        t, f = np.divmod(codes, BIN_SPAN)
        pairs = pair_peaks(t.astype(np.int32), f.astype(np.int32), REFERENCE.fan_out)
        for a in pairs:
            a.flags.writeable = False  # shared between threads
        with self._pair_lock:
            if self._pair_cache_gen == gen:
                self._pair_cache[key] = pairs
                while len(self._pair_cache) > PAIR_CACHE_TRACKS:
                    self._pair_cache.popitem(last=False)
        return pairs

    def _pair_rows(self, track_keys: list[int], wanted: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pair landmark rows ``(hash, track_key, t)`` of ``track_keys``, derived from their stored peaks.

        ``wanted``: a bool table over the 2**21 pair hashes; only rows whose hash it marks are
        kept (the query's hashes: the others cannot vote, and dropping them first makes the
        scoring ~100x cheaper).  A track without stored peaks (written by an engine that kept
        none) has no rows here; it cannot be scored and so is not named (``about`` and the build
        say to index it again).
        """
        parts = []
        gen = self.generation()
        for key in track_keys:
            pairs = self._track_pairs(key, gen)
            if pairs is None:
                continue
            h, ht = pairs
            if wanted is not None:
                keep = wanted[h]
                h, ht = h[keep], ht[keep]
            parts.append((h.astype(np.int64), np.full(h.size, key, np.int64), ht.astype(np.int64)))
        if not parts:
            e = np.zeros(0, np.int64)
            return e, e, e
        return tuple(np.concatenate(x) for x in zip(*parts))  # type: ignore[return-value]

    def _shortlist_and_score(self, fp: Fingerprint, rows: tuple[np.ndarray, np.ndarray, np.ndarray],
                             top_k: int) -> list[FingerprintMatch]:
        """Stage 2: the :data:`VERIFY_TRACKS` (16) best tracks of the triplet rows, scored with their pairs.

        Why two kinds of landmarks: a triplet hash is ~2**32 values, so its posting lists are
        ~30x shorter than a pair's and the shortlist costs little at any catalogue size; but a
        phone breaks triplets (three exact peaks) more often than pairs, so the evidence the
        answer rests on -- and the calibration reads -- is the pairs' offset histogram over the
        shortlist, as when every pair row was scored (docs/identification.md, "Pairs or triplets").
        The best other shortlisted track's score is the chance level the margin is measured
        against.
        """
        first = score_candidates(fp.hashes, fp.times, *rows, max(VERIFY_TRACKS, top_k))
        if not first:
            return []
        qh, qt = fp.pairs()
        wanted = np.zeros(1 << HASH_BITS, bool)
        wanted[qh] = True
        return score_candidates(qh, qt, *self._pair_rows([m.track_key for m in first], wanted), top_k)

    def _match_snapshot(self, fp: Fingerprint, arr: np.ndarray, keys: np.ndarray,
                        top_k: int) -> list[FingerprintMatch]:
        """Stage 1 on the snapshot (the rarest triplets' rows up to :attr:`max_candidates`), then stage 2."""
        h, k, t = self._lookup_snapshot(fp.hashes, arr, keys)
        return self._shortlist_and_score(fp, (h, k, t), top_k)

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All DB rows ``(hash, track_key, t)`` whose hash is in ``hashes``."""
        uniq = np.unique(hashes).tolist()
        conn = self._conn()
        parts: list[np.ndarray] = []
        for i in range(0, len(uniq), _IN_CHUNK):
            chunk = uniq[i : i + _IN_CHUNK]
            q = f"SELECT hash, track_key, t FROM fp WHERE hash IN ({','.join('?' * len(chunk))})"
            rows = conn.execute(q, chunk).fetchall()
            # fromiter over the flattened tuples: ~2x faster than np.asarray(list of tuples)
            parts.append(np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=3 * len(rows)))
        arr = np.concatenate(parts).reshape(-1, 3) if parts else np.zeros((0, 3), np.int64)
        return arr[:, 0], arr[:, 1], arr[:, 2]

    def match(self, audio: np.ndarray, sr: int, top_k: int = 5) -> list[FingerprintMatch]:
        """Best ``top_k`` catalogue tracks for a recording, best first (may be empty), verified when asked.

        The landmark stage ranks them (:meth:`_match_snapshot`, or SQLite without a current
        snapshot); with ``verify`` (the constructor's, ``Settings.identify_verification``)
        :meth:`verify` then counts the query's single peaks that land on each
        candidate's at its offset.  An empty index or a query without landmarks (silence)
        gives ``[]``.  Raises StoreError when the index cannot be read.
        """
        fp = extract_fingerprint(audio, sr, density="query")
        if fp.hashes.size == 0:
            return []
        try:
            snap = self._load_snapshot()
            if snap is not None:
                matches = self._match_snapshot(fp, snap[0], snap[1], top_k)
            else:
                matches = self._shortlist_and_score(fp, self.lookup(fp.hashes), top_k)
            return self.verify(matches, fp.peak_t, fp.peak_f) if self.verify_matches else matches
        except sqlite3.Error as exc:
            raise StoreError(f"fingerprint lookup failed: {exc}") from exc
