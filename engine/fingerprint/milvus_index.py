"""The landmark index in Milvus: sparse vectors of landmark hashes per track window, then offset verification.

Why: the SQLite index (``engine.fingerprint.index``) lives on one machine.  A catalogue of
the Kaggle DB's size (~11,000 hours) needs an index that spreads over machines, and
Milvus, already the project's vector engine, does that (shards over query nodes).  Milvus
has no integer inverted lookup, but from 2.4 it has *sparse vectors* with an inverted
index and inner-product search, which is the same thing seen from the other side:

* **stage 1 (retrieval, in Milvus).**  Each track is cut into windows of
  :data:`WINDOW_FRAMES` (5 s); a window's row holds a sparse vector with a 1 at each
  landmark hash it contains.  A query's sparse vector has a 1 at each of its hashes, so the
  inner product is the number of hashes a window shares with the query, *ignoring time*.
  The :data:`CANDIDATE_WINDOWS` best windows come back.
* **stage 2 (verification, here).**  Each window row also carries its landmarks with their
  times (``ARRAY<INT64>``, ``hash << 16 | frame``), so the offset histogram
  (:func:`engine.fingerprint.index.score_candidates`) runs on those few windows' rows only:
  the same scoring and margin confidence as the SQLite index.

This is the "inverted index retrieval, then offset verification" design of large-scale
audio fingerprinting (Wang 2003 already verifies candidates by offset; Panako and
audfprint do the same over a hash table).  Stage 2 costs the same at any catalogue size;
stage 1 is Milvus's own inverted-index search, which a cluster spreads over nodes.

Needs milvus-lite >= 2.4 or a Milvus >= 2.4 server (sparse vectors); the project's Milvus
2.3.5 server helper has none, and opening this index there raises StoreError saying so.
Measured costs and recall: docs/identification.md.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from engine.errors import EmptyIndexError, StoreError
from engine.fingerprint.index import FingerprintMatch, StaleIndexError, score_candidates
from engine.fingerprint.landmarks import HASH_BITS, LANDMARK_VERSION, REFERENCE, extract_landmarks, pair_peaks
from engine.store import VectorStore, milvus_call

log = logging.getLogger(__name__)

#: Window length in landmark frames (312 = 5.0 s at 62.5 frames/s).
WINDOW_FRAMES = 312
#: Windows stage 1 hands to the offset verification.
CANDIDATE_WINDOWS = 32
#: Landmarks one window row can hold (Milvus's ARRAY limit is 4096; the reference density
#: makes at most 240 a second, 1,200 in a window).
MAX_LANDMARKS = 4096
#: ``hash << TIME_BITS | frame within the window``.
TIME_BITS = 16
LAYOUT_PROPERTY = "synesthete.landmarks"
#: The first search after loading may build the sparse index (milvus-lite): it may take this long (s).
WARM_UP_TIMEOUT_S = 3600.0
#: Window rows per insert call (~20 KB each).
INSERT_CHUNK = 200


def window_rows(track_key: int, hashes: np.ndarray, times: np.ndarray) -> list[dict[str, Any]]:
    """One Milvus row per :data:`WINDOW_FRAMES` window of a track's landmarks (``hashes``/``times`` (n,))."""
    h = np.asarray(hashes, np.int64)
    t = np.asarray(times, np.int64)
    order = np.lexsort((h, t))
    h, t = h[order], t[order]
    win = t // WINDOW_FRAMES
    rows = []
    for w in np.unique(win):
        sel = win == w
        start = int(w) * WINDOW_FRAMES
        packed = (h[sel] << TIME_BITS) | (t[sel] - start)
        packed = np.unique(packed)[:MAX_LANDMARKS]
        rows.append({"track_key": int(track_key), "start": start,
                     "hashes": {int(x): 1.0 for x in np.unique(h[sel])}, "landmarks": packed.tolist()})
    return rows


def rows_to_landmarks(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(hash, track_key, frame)`` arrays of the windows stage 1 returned."""
    if not rows:
        e = np.zeros(0, np.int64)
        return e, e, e
    hs, ks, ts = [], [], []
    for r in rows:
        lm = np.asarray(r["landmarks"], np.int64)
        hs.append(lm >> TIME_BITS)
        ts.append((lm & ((1 << TIME_BITS) - 1)) + int(r["start"]))
        ks.append(np.full(lm.size, int(r["track_key"]), np.int64))
    return np.concatenate(hs), np.concatenate(ks), np.concatenate(ts)


class MilvusFingerprintIndex:
    """The landmark index as a Milvus collection ``<prefix>_landmarks`` (same methods as ``FingerprintIndex``).

    Shares the :class:`~engine.store.VectorStore`'s connection (milvus-lite allows one
    process per database file, so one client serves both).  Errors of the server map to
    ``StoreUnavailableError`` as every store call does (:func:`engine.store.milvus_call`).
    """

    #: The single peaks of the offset verification are not kept here (not done: a peaks field per window).
    stores_peaks = False

    def __init__(self, store: VectorStore, *, prefix: str = "synesthete", read_only: bool = False,
                 reset_if_stale: bool = False) -> None:
        self._store = store
        self.uri = store.uri
        self.name = f"{prefix}_landmarks"
        self.read_only = read_only
        self._lock = store._lock  # one client, one lock: the store's calls and ours never interleave
        self._open(reset_if_stale)

    # milvus_call's retry and message need these of the store it wraps
    def _reload(self) -> bool:
        try:
            self._store._client.load_collection(self.name)
            return True
        except Exception:  # noqa: BLE001 - the retry then reports the original error
            return False

    @property
    def _client(self) -> Any:
        return self._store._client

    def _layout(self) -> dict[str, int]:
        return {"landmark_version": LANDMARK_VERSION, "window_frames": WINDOW_FRAMES, "time_bits": TIME_BITS}

    @milvus_call
    def _open(self, reset_if_stale: bool) -> None:
        c = self._client
        if c.has_collection(self.name):
            found = self._found_layout()
            if found != self._layout():
                if not (reset_if_stale and not self.read_only):
                    raise StaleIndexError(
                        f"the landmark collection {self.name} was built with {found or 'an unknown layout'}; this "
                        f"engine uses {self._layout()}. Rebuild it: `synesthete-index build`.")
                log.warning("landmark collection %s has layout %s; it is dropped and every track will be "
                            "fingerprinted again", self.name, found)
                c.drop_collection(self.name)
        if not c.has_collection(self.name):
            if self.read_only:
                raise EmptyIndexError(f"there is no landmark collection {self.name} in {self.uri}: build the index first")
            self._create()
        c.load_collection(self.name)
        if self.read_only:
            self.warm_up()

    def warm_up(self) -> None:
        """One search with a long timeout, so the first real query does not pay for the index build.

        milvus-lite builds a sparse index lazily on the first search after loading: 417 s at
        10k windows on 2 cores (docs/identification.md), far past a query's timeout.  A server
        builds it at insert time, so this returns at once there.
        """
        log.info("loading the landmark collection %s (milvus-lite builds its sparse index on first use)", self.name)
        with self._lock:
            self._client.search(self.name, data=[{0: 1.0}], anns_field="hashes", limit=1, output_fields=["track_key"],
                                search_params={"metric_type": "IP"}, timeout=WARM_UP_TIMEOUT_S)

    def _found_layout(self) -> dict:
        """The layout the collection was made with: its property, else its schema description."""
        desc = self._client.describe_collection(self.name)
        for text in ((desc.get("properties") or {}).get(LAYOUT_PROPERTY), desc.get("description")):
            try:
                found = json.loads(text or "{}")
            except (TypeError, ValueError):
                continue
            found = found.get(LAYOUT_PROPERTY, found) if isinstance(found, dict) else None
            if found:
                return found
        return {}

    def _create(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=True, enable_dynamic_field=False,
                                            description=json.dumps({LAYOUT_PROPERTY: self._layout()}))
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("track_key", DataType.INT64)
        schema.add_field("start", DataType.INT64)
        schema.add_field("hashes", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("landmarks", DataType.ARRAY, element_type=DataType.INT64, max_capacity=MAX_LANDMARKS)
        params = self._client.prepare_index_params()
        params.add_index("hashes", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        params.add_index("track_key", index_type="INVERTED")
        try:
            self._client.create_collection(self.name, schema=schema, index_params=params, consistency_level="Strong")
        except Exception as exc:
            if "sparse" in str(exc).lower() or "datatype" in str(exc).lower() or "not supported" in str(exc).lower():
                raise StoreError(f"Milvus at {self.uri} has no sparse vectors (they need Milvus 2.4 or newer); "
                                 "use SYNESTHETE_FINGERPRINT_BACKEND=sqlite with it") from exc
            raise
        self._client.alter_collection_properties(self.name, properties={LAYOUT_PROPERTY: json.dumps(self._layout())})
        log.info("created landmark collection %s (%s)", self.name, self._layout())

    def landmark_version(self) -> int:
        return LANDMARK_VERSION

    # ---- writing ----------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError("landmark index was opened read-only")

    @milvus_call
    def add_landmarks(self, track_key: int, hashes: np.ndarray, times: np.ndarray, seconds: float,
                      peaks: tuple[np.ndarray, np.ndarray] | None = None) -> int:
        """Replace a track's windows.  Delete then insert: a reader may briefly see neither, never a mix.

        This backend indexes *pair* landmarks (its windows are scored by their pairs' offset
        histogram, stage 2 below): given the track's ``peaks`` (frames, band bins), as the build
        gives them with the SQLite backend's triplet ``hashes``, its pairs are derived from them;
        without peaks, ``hashes``/``times`` must be pairs (:func:`extract_landmarks`).  The peaks
        themselves are not stored (:attr:`stores_peaks`): its candidates stay unverified.
        """
        self._check_writable()
        if peaks is not None:
            hashes, times = pair_peaks(np.asarray(peaks[0], np.int32), np.asarray(peaks[1], np.int32),
                                       REFERENCE.fan_out)
        elif np.asarray(hashes).size and int(np.max(hashes)) >= 1 << HASH_BITS:
            raise ValueError("these are not pair landmarks (a hash >= 2**21): give the track's peaks instead")
        rows = window_rows(int(track_key), hashes, times)
        with self._lock:
            self._client.delete(self.name, filter=f"track_key == {int(track_key)}")
            for i in range(0, len(rows), INSERT_CHUNK):  # a multi-hour file stays under gRPC's message size
                self._client.insert(self.name, rows[i:i + INSERT_CHUNK])
        return int(sum(len(r["landmarks"]) for r in rows))

    def add_track(self, track_key: int, audio: np.ndarray, sr: int) -> int:
        h, t = extract_landmarks(audio, sr, density="reference")
        return self.add_landmarks(int(track_key), h, t, len(audio) / float(sr))

    @milvus_call
    def remove_track(self, track_key: int) -> bool:
        self._check_writable()
        with self._lock:
            found = bool(self._client.query(self.name, filter=f"track_key == {int(track_key)}",
                                            output_fields=["track_key"], limit=1))
            self._client.delete(self.name, filter=f"track_key == {int(track_key)}")
        return found

    def snapshot_is_current(self) -> bool:
        """Milvus serves reads itself: there is no read snapshot to keep current."""
        return True

    @milvus_call
    def write_snapshot(self) -> None:
        """Flush instead (a Milvus server serves what is flushed and indexed)."""
        self._client.flush(self.name)

    # ---- reading ----------------------------------------------------------------

    def track_keys(self) -> set[int]:
        return set(self._store.all_track_keys(self.name))

    def stats(self) -> dict[str, int]:
        keys = self.track_keys()
        return {"n_tracks": len(keys), "n_windows": self._count(), "n_hashes": 0, "seconds": 0, "file_bytes": 0}

    def _count(self) -> int:
        return self._store._count(self.name)  # the store's row count, on this collection

    @milvus_call
    def _retrieve(self, hashes: np.ndarray) -> list[dict[str, Any]]:
        query = {int(h): 1.0 for h in np.unique(hashes)}
        with self._lock:
            res = self._client.search(self.name, data=[query], anns_field="hashes", limit=CANDIDATE_WINDOWS,
                                      output_fields=["track_key", "start", "landmarks"],
                                      search_params={"metric_type": "IP"}, **self._store._read_kw())
        return [h["entity"] for h in res[0]] if res else []

    def match(self, audio: np.ndarray, sr: int, top_k: int = 5) -> list[FingerprintMatch]:
        """Best ``top_k`` tracks, best first: stage 1 in Milvus, stage 2 here (see the module docstring)."""
        qh, qt = extract_landmarks(audio, sr, density="query")
        if qh.size == 0:
            return []
        rh, rk, rt = rows_to_landmarks(self._retrieve(qh))
        return score_candidates(qh, qt, rh, rk, rt, top_k)

    def close(self) -> None:
        """The connection is the store's; it closes with it."""
