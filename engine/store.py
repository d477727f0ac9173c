"""Vectors in Milvus: one collection of track vectors, one of segment vectors.

The same code talks to milvus-lite (a local file, the default) and to a Milvus
server or cluster (a URI + token): pymilvus' ``MilvusClient`` hides the difference.

- ``<prefix>_tracks``: one L2-normalised vector per track (similarity).
- ``<prefix>_segments``: one vector per few-second segment (identification votes).

Both use the COSINE metric.  Each collection records the model that made its
vectors in its properties; opening it with another model raises
:class:`IndexModelMismatchError` ("rebuild the index") instead of returning
nonsense neighbours.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .errors import (
    BusyError,
    EmptyIndexError,
    IndexModelMismatchError,
    StoreError,
    StoreLockedError,
    StoreUnavailableError,
    SynestheteError,
)

log = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])


class _ExpectedLockFilter(logging.Filter):
    """milvus-lite logs a 20-line ERROR traceback when its file is held by another process.

    That is expected (the bot, an engine or a build holds the index) and the store raises
    StoreLockedError with one clear sentence; the traceback goes to DEBUG.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and ("DataDirLocked" in type(exc).__name__ or "holds the lock" in str(exc)):
            log.debug("milvus-lite: %s", record.getMessage(), exc_info=record.exc_info)
            return False
        return True


logging.getLogger("milvus_lite").addFilter(_ExpectedLockFilter())
logging.getLogger("milvus_lite.server_manager").addFilter(_ExpectedLockFilter())


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What pymilvus and gRPC raise when the server is gone (imported lazily, as pymilvus is)."""
    import grpc
    from pymilvus.exceptions import MilvusException

    return (MilvusException, grpc.RpcError, ConnectionError, TimeoutError, OSError)


#: Seconds a tripped store breaker answers "unavailable" at once before one probe may try Milvus again.
BREAKER_RESET_S = 5.0
#: The probe's deadline (s): a cheap call, so a still-hung server costs a probe this long, not 30 s.
BREAKER_PROBE_S = 2.0


class StoreBreaker:
    """A circuit breaker (Nygard, *Release It!*, 2007) for one Milvus client: closed, open, half-open.

    One outage failure opens it: for :data:`BREAKER_RESET_S` every call fails at once with
    :class:`StoreUnavailableError` (HTTP 503, the bot's sentence) instead of each waiting
    out the client's 30-s timeout on a hung server.  Then the next caller alone probes (a
    :data:`BREAKER_PROBE_S` ping) while the others still fail at once; its success closes
    the breaker, its failure opens it again.  One log line per state change.

    Why not pybreaker: it holds its lock for the whole guarded call, so one call hung on the
    server blocks every other caller (the opposite of failing fast); ``circuitbreaker`` lets
    every caller through when half-open.  The state machine is small enough to own.
    """

    def __init__(self, uri: str, reset_s: float = BREAKER_RESET_S, clock: Callable[[], float] = time.monotonic):
        self.uri, self.reset_s, self._clock = uri, reset_s, clock
        self.state = "closed"
        self._opened_at = 0.0
        self._probing = False
        self._lock = threading.Lock()

    def admit(self) -> bool:
        """May a call go ahead?  True: it is the probe.  False: closed.  Raises while open (at once)."""
        with self._lock:
            if self.state == "closed":
                return False
            if not self._probing and self._clock() - self._opened_at >= self.reset_s:
                self._probing = True
                self._set("half-open", "probing whether it answers again")
                return True
        raise self.open_error()

    def open_error(self) -> StoreUnavailableError:
        """What a call refused by the open breaker raises."""
        return StoreUnavailableError(f"Milvus at {self.uri} is not answering (circuit open)")

    @property
    def is_open(self) -> bool:
        return self.state != "closed"

    def abandon_probe(self) -> None:
        """The probe could not run (the client was busy): the next caller may probe; the state stays open."""
        with self._lock:
            self._probing = False

    def success(self) -> None:
        with self._lock:
            self._probing = False
            if self.state != "closed":
                self._set("closed", "answers again")

    def failure(self, exc: BaseException) -> None:
        with self._lock:
            self._probing = False
            self._opened_at = self._clock()
            if self.state != "open":
                self._set("open", f"is not answering ({str(exc).splitlines()[0][:200]}); answering 'unavailable' "
                                  f"at once for {self.reset_s:g} s, then probing")

    def _set(self, state: str, what: str) -> None:
        self.state = state
        (log.info if state == "half-open" else log.warning)("Milvus at %s %s", self.uri, what)


def _breaker_of(obj: Any) -> StoreBreaker | None:
    """The breaker of a store, or of the store a Milvus-backed index wraps (None: no breaker)."""
    return getattr(obj, "breaker", None) or getattr(getattr(obj, "_store", None), "breaker", None)


def _acquire_or_busy(obj: Any, timeout_s: float) -> None:
    """Take ``obj``'s client lock within ``timeout_s``, else ``BusyError`` (the caller releases it)."""
    if not obj._lock.acquire(timeout=timeout_s):
        raise BusyError(f"Milvus at {obj.uri}: the store's client was busy for {timeout_s:g} s")


def _probe_once(self: Any, breaker: StoreBreaker) -> None:
    """The half-open breaker's one probe: a short ping under the client's lock; its answer decides.

    Only an outage (``StoreUnavailableError``) opens the breaker again; any other answer (the
    collection is gone: ``EmptyIndexError``) means the server answered, so it closes, and the
    error goes on to the caller.  A lock it cannot get in time decides nothing.
    """
    probe = getattr(self, "_probe", None) or self._store._probe
    if not self._lock.acquire(timeout=BREAKER_PROBE_S):
        breaker.abandon_probe()
        raise breaker.open_error()
    _IN_BREAKER.active = True  # the probe is this call's own: not guarded again
    try:
        probe()
    except StoreUnavailableError as exc:
        breaker.failure(exc)
        raise
    except BaseException:
        breaker.success()
        raise
    finally:
        _IN_BREAKER.active = False
        self._lock.release()
    breaker.success()


def _guarded(self: Any, breaker: StoreBreaker, attempts: Callable[[], Any]) -> Any:
    """One store call through ``breaker``: fail at once while open, probe when due, count an outage."""
    if breaker.admit():
        _probe_once(self, breaker)
    # a queue, or a call stuck on a server that its own failure will report: busy, not an outage
    _acquire_or_busy(self, getattr(self, "timeout_s", None) or getattr(getattr(self, "_store", None), "timeout_s", 30.0))
    try:
        if breaker.is_open:  # tripped by the call this one waited behind: fail at once, too
            raise breaker.open_error()
        _IN_BREAKER.active = True
        try:
            return attempts()
        except StoreUnavailableError as exc:
            breaker.failure(exc)
            raise
        finally:
            _IN_BREAKER.active = False
    finally:
        self._lock.release()


def milvus_call(fn: _F) -> _F:
    """Map every Milvus failure of a store method to :class:`StoreUnavailableError`, once, here.

    Why one place: a Milvus error after the index is open (server restarted, network cut)
    must reach every surface as "the index isn't available right now" (HTTP 503 +
    Retry-After, the bot's sentence, CLI exit 1), never as an internal error.  A collection
    the restarted server has not loaded yet is loaded and the call retried once.
    """

    @functools.wraps(fn)
    def wrapper(self: VectorStore, *args: Any, **kwargs: Any) -> Any:
        breaker = _breaker_of(self)
        if breaker is None or getattr(_IN_BREAKER, "active", False):  # nested calls: the outer one counts
            return _attempts(self, *args, **kwargs)
        return _guarded(self, breaker, lambda: _attempts(self, *args, **kwargs))

    def _attempts(self: VectorStore, *args: Any, **kwargs: Any) -> Any:
        errors = _transport_errors()
        for attempt in (1, 2):
            try:
                return fn(self, *args, **kwargs)
            except SynestheteError:
                raise
            except errors as exc:
                if attempt == 1 and "not loaded" in str(exc).lower() and self._reload():
                    continue
                # INFO: the breaker's one WARNING per state change says it (issue 30: 60 lines an outage)
                log.info("Milvus call %s failed: %s", fn.__name__, str(exc).splitlines()[0][:300])
                raise StoreUnavailableError(f"Milvus at {self.uri} failed in {fn.__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    return wrapper  # type: ignore[return-value]

#: set while a thread is inside a breaker-guarded call (a guarded method calling another counts once)
_IN_BREAKER = threading.local()

MODEL_PROPERTY = "synesthete.model_id"
META_PROPERTY = "synesthete.meta"


@dataclass(frozen=True)
class Neighbour:
    track_key: int
    similarity: float


@dataclass(frozen=True)
class SegmentHit:
    track_key: int
    t: float
    similarity: float


def _is_local(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "tcp://", "unix:", "grpc://"))


#: bump when the tracks collection's fields change: part of the index model id (engine.embed)
TRACKS_SCHEMA_VERSION = 3
#: genres per track the filter sees (Kaggle lists a track under up to a few genres)
GENRE_SLOTS = 4


def genre_slots(genres) -> dict[str, int]:
    """``{"genre0": hash, ...}``: the first GENRE_SLOTS distinct genres as hashes, 0 = none."""
    from .filters import genre_hash

    hashes = list(dict.fromkeys(h for h in (genre_hash(g) for g in genres) if h))[:GENRE_SLOTS]
    return {f"genre{i}": (hashes[i] if i < len(hashes) else 0) for i in range(GENRE_SLOTS)}


def track_row(track_key: int, vector: np.ndarray, scalars: dict | None = None) -> dict:
    """One tracks-collection row; unknown filter values are -1 / no genres (engine.filters)."""
    sc = scalars or {}
    return {"track_key": int(track_key), "vector": np.asarray(vector, dtype=np.float32).tolist(),
            **genre_slots(sc.get("genres", [])),
            "bpm": float(sc["bpm"]) if sc.get("bpm") is not None else -1.0,
            "instrumental": float(sc["instrumental"]) if sc.get("instrumental") is not None else -1.0,
            "popularity": int(sc["popularity"]) if sc.get("popularity") is not None else -1}


class VectorStore:
    """Track and segment vectors for one model, in one Milvus database."""

    #: Rows per insert call: small enough that one call's Python rows stay ~20 MB.
    INSERT_CHUNK = 2000

    def __init__(
        self,
        uri: str,
        model_id: str,
        dim: int,
        *,
        token: str = "",
        prefix: str = "synesthete",
        index_type: str = "auto",
        timeout_s: float = 30.0,
    ) -> None:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        self.uri = uri
        self.model_id = model_id
        self.dim = dim
        self.tracks_name = f"{prefix}_tracks"
        self.segments_name = f"{prefix}_segments"
        self.index_type = index_type
        self.timeout_s = timeout_s
        self._lock = threading.RLock()
        self.is_lite = _is_local(uri)
        #: issue 30: a hung or gone server answers "unavailable" at once instead of per call after 30 s
        self.breaker = StoreBreaker(uri)
        if self.is_lite:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client = MilvusClient(uri=uri, token=token, timeout=timeout_s)
        except MilvusException as exc:
            if self.is_lite:
                raise StoreLockedError(
                    f"cannot open milvus-lite database {uri}: {exc}. milvus-lite allows one process at "
                    "a time; stop the other process (bot, index build) or use a Milvus server URI"
                ) from exc
            raise StoreError(f"cannot reach Milvus at {uri}: {exc}") from exc
        except Exception as exc:  # grpc errors, connection refused, ...
            raise StoreError(f"cannot reach Milvus at {uri}: {exc}") from exc

    # ---- collections ----------------------------------------------------------

    #: Consistency of the query path (search, get) on a server.  The collections are created
    #: Strong, and a Strong read waits for the server's time tick: ~260-360 ms a call on
    #: Milvus 2.3 standalone vs ~5 ms with Session, which still sees this client's own
    #: writes (docs/performance.md).  Builds flush before marking tracks done.
    read_consistency: str = "Session"
    #: HNSW search breadth and IVF probes (docs/performance.md: recall@5 >= 0.95 at 232k)
    hnsw_ef: int = 64
    ivf_nprobe: int = 16

    #: Rows from which ``auto`` on milvus-lite uses IVF_FLAT instead of FLAT.
    LITE_IVF_FROM_ROWS = 50_000

    def _choose_index(self, n_rows_hint: int) -> dict:
        """The index for a new collection of about ``n_rows_hint`` rows (0 = unknown).

        ``auto``: a server gets HNSW (ms latency, recall@5 >= 0.99 at every measured size
        up to 1M).  milvus-lite gets FLAT (exact, no build) below ``LITE_IVF_FROM_ROWS``
        rows and IVF_FLAT (nlist 4 sqrt(n), nprobe 16) above: at 232k rows lite's FLAT
        costs 254 ms a call against 96 ms for IVF_FLAT at recall@5 0.991, and builds in
        2 s, while lite's HNSW blocks for ~9 min (docs/performance.md).
        """
        kind = self.index_type.upper()
        if kind == "AUTO":
            if not self.is_lite:
                kind = "HNSW"
            else:
                kind = "IVF_FLAT" if n_rows_hint >= self.LITE_IVF_FROM_ROWS else "FLAT"
        if kind == "HNSW":
            return {"index_type": "HNSW", "params": {"M": 16, "efConstruction": 200}}
        if kind == "IVF_FLAT":
            return {"index_type": "IVF_FLAT", "params": {"nlist": max(16, int(np.sqrt(max(n_rows_hint, 1)) * 4))}}
        return {"index_type": kind, "params": {}}

    def _search_params(self, k: int) -> dict:
        """Search params for whichever index the collection has (unknown keys are ignored by FLAT)."""
        return {"metric_type": "COSINE", "params": {"ef": max(self.hnsw_ef, k), "nprobe": self.ivf_nprobe}}

    def _read_kw(self) -> dict:
        return {"timeout": self.timeout_s} if self.is_lite else {"consistency_level": self.read_consistency,
                                                                  "timeout": self.timeout_s}

    def _reload(self) -> bool:
        """Load both collections again (a restarted server); False when that fails too."""
        try:
            with self._lock:
                for name in (self.tracks_name, self.segments_name):
                    self._client.load_collection(name, timeout=self.timeout_s)
            return True
        except Exception as exc:  # noqa: BLE001 - the caller reports the original failure
            log.info("reloading the collections failed: %s", exc)
            return False

    def _create(self, name: str, segment: bool) -> None:
        from pymilvus import DataType, MilvusClient

        # the model id goes into the schema description too: a Milvus 2.3 server forgets
        # collection *properties* across a restart, but keeps the schema
        schema = MilvusClient.create_schema(auto_id=segment, enable_dynamic_field=False,
                                            description=json.dumps({MODEL_PROPERTY: self.model_id}))
        if segment:
            schema.add_field("seg_id", DataType.INT64, is_primary=True)
            schema.add_field("track_key", DataType.INT64)
            schema.add_field("t", DataType.FLOAT)
        else:
            schema.add_field("track_key", DataType.INT64, is_primary=True)
            # what answers can be filtered on, inside the search (engine.filters)
            # genres as hashes in GENRE_SLOTS integer fields: an integer "in" costs what an
            # unfiltered search does on milvus-lite, where array_contains took 30x longer (2.4 s
            # at 50k rows) and a Milvus 2.3 server has no infix LIKE (bench/bench_filters.py)
            for i in range(GENRE_SLOTS):
                schema.add_field(f"genre{i}", DataType.INT64)
            schema.add_field("bpm", DataType.FLOAT)
            schema.add_field("instrumental", DataType.FLOAT)
            schema.add_field("popularity", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        params = self._client.prepare_index_params()
        idx = self._choose_index(0)  # size unknown yet: tune_index re-picks after a build
        params.add_index("vector", index_type=idx["index_type"], metric_type="COSINE", params=idx["params"])
        self._client.create_collection(name, schema=schema, index_params=params, consistency_level="Strong")
        meta = {"model_id": self.model_id, "dim": self.dim,
                "created": datetime.now(UTC).isoformat(timespec="seconds")}
        self._client.alter_collection_properties(
            name, properties={MODEL_PROPERTY: self.model_id, META_PROPERTY: json.dumps(meta)})
        log.info("created collection %s (dim %d, %s, model %s)", name, self.dim, idx["index_type"], self.model_id)

    def collection_model(self, name: str) -> str | None:
        if not self._client.has_collection(name):
            return None
        desc = self._client.describe_collection(name)
        found = (desc.get("properties", {}) or {}).get(MODEL_PROPERTY)
        if not found:  # properties lost (server restart): the schema description keeps it
            try:
                found = json.loads(desc.get("description") or "{}").get(MODEL_PROPERTY)
            except (ValueError, AttributeError):
                found = None
        return found

    @milvus_call
    def ensure_collections(self, *, recreate_on_mismatch: bool = False) -> None:
        """Create both collections if missing; check the model of existing ones."""
        with self._lock:
            for name, seg in ((self.tracks_name, False), (self.segments_name, True)):
                have = self._client.has_collection(name)
                if have:
                    found = self.collection_model(name)
                    if found != self.model_id:
                        if not recreate_on_mismatch:
                            raise IndexModelMismatchError(
                                f"collection {name} was built with model {found!r}, not {self.model_id!r}; "
                                "rebuild the index (synesthete-index build --rebuild)")
                        log.warning("dropping %s (model %s != %s)", name, found, self.model_id)
                        self._client.drop_collection(name)
                        have = False
                if not have:
                    self._create(name, seg)
                self._client.load_collection(name)

    @milvus_call
    def check_ready(self) -> None:
        """For query processes: the collections exist, match the model, and are loaded."""
        with self._lock:
            for name in (self.tracks_name, self.segments_name):
                if not self._client.has_collection(name):
                    raise EmptyIndexError(f"collection {name} does not exist in {self.uri}; build the index first")
                found = self.collection_model(name)
                if found != self.model_id:
                    raise IndexModelMismatchError(
                        f"collection {name} was built with model {found!r} but this process uses "
                        f"{self.model_id!r}; rebuild the index")
                self._client.load_collection(name)

    def tune_index(self) -> list[str]:
        """Re-pick each collection's index for the size it has now (``index_type=auto`` only).

        A collection is created before anyone knows how big it will get, so a build calls
        this at its end: on milvus-lite a catalogue that grew past ``LITE_IVF_FROM_ROWS``
        moves from FLAT to IVF_FLAT, and an IVF_FLAT whose rows quadrupled gets a larger
        nlist.  Cheap (IVF_FLAT on 232k rows builds in ~2 s).  If the new index cannot be
        built the old kind is put back, so the collection is never left without one.
        Returns what changed, for the build report.
        """
        if self.index_type.upper() != "AUTO":
            return []
        changed: list[str] = []
        with self._lock:
            for name in (self.tracks_name, self.segments_name):
                n = self._count(name)
                want = self._choose_index(n)
                try:
                    have = self._client.describe_index(name, "vector")
                except Exception:  # noqa: BLE001 - no index at all: build one
                    have = {}
                have_kind = str(have.get("index_type", "")).upper()
                # milvus-lite does not report nlist: then the kind alone decides
                have_nlist = int(have.get("nlist", 0) or 0)
                if have_kind == want["index_type"] and (
                        want["index_type"] != "IVF_FLAT" or not have_nlist
                        or want["params"]["nlist"] <= 2 * have_nlist):
                    continue
                self._replace_index(name, want, fallback=have_kind or "FLAT", fallback_params=have)
                changed.append(f"{name}: {have_kind or 'none'} -> {want['index_type']} {want['params']} ({n} rows)")
                log.info("index of %s: %s", name, changed[-1])
        return changed

    def _replace_index(self, name: str, want: dict, *, fallback: str, fallback_params: dict) -> None:
        def create(kind: str, params: dict) -> None:
            ip = self._client.prepare_index_params()
            ip.add_index("vector", index_type=kind, metric_type="COSINE", params=params)
            self._client.create_index(name, ip)

        self._client.release_collection(name)
        try:
            self._client.drop_index(name, "vector")
            try:
                create(want["index_type"], want["params"])
            except Exception:
                log.exception("could not build %s on %s; putting %s back", want["index_type"], name, fallback)
                try:  # a failed create_index is persisted by milvus-lite: drop it before retrying
                    self._client.drop_index(name, "vector")
                except Exception:  # noqa: BLE001
                    log.debug("drop_index after a failed create_index failed", exc_info=True)
                keep = {k: v for k, v in fallback_params.items() if k == "nlist"} if fallback == "IVF_FLAT" else {}
                create(fallback if fallback in ("FLAT", "IVF_FLAT", "HNSW") else "FLAT", keep)
        finally:
            self._client.load_collection(name)

    # ---- writing --------------------------------------------------------------

    def upsert_track(self, track_key: int, track_vector: np.ndarray, segment_vectors: np.ndarray,
                     segment_times: np.ndarray) -> None:
        """Replace a track's vectors.  Old segments are deleted first, so a rerun never duplicates."""
        self.upsert_tracks([(track_key, track_vector, segment_vectors, segment_times)])

    @milvus_call
    def upsert_tracks(self, items: Sequence[tuple[int, np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Replace several tracks' vectors in as few calls as possible.

        Segment rows are converted to the client's list-of-floats form one insert chunk at a
        time: as Python floats a 256-d row costs ~10 KB, so building every row of a large
        batch up front (150k segments: ~1.5 GB) made a build's memory follow the batch's
        segment count rather than the chunk size.
        """
        if not items:
            return
        with self._lock:
            keys = [int(k) for k, *_ in items]
            self._client.delete(self.segments_name, filter=f"track_key in {keys}")
            chunk: list[dict] = []
            for k, _, segs, times in items:
                for v, t in zip(np.asarray(segs, dtype=np.float32), times):
                    chunk.append({"track_key": int(k), "t": float(t), "vector": v.tolist()})
                    if len(chunk) == self.INSERT_CHUNK:
                        self._client.insert(self.segments_name, chunk)
                        chunk = []
            if chunk:
                self._client.insert(self.segments_name, chunk)
            self._client.upsert(self.tracks_name, [track_row(k, tv) for k, tv, _, _ in items])

    @milvus_call
    def set_track_vectors(self, items: Sequence[tuple[int, np.ndarray, dict | None]]) -> None:
        """Replace the track rows (the similarity model was refitted); segments stay.

        ``items``: ``(track_key, (dim,) vector, scalars)`` where scalars are the filter
        fields (:func:`track_row`); written in chunks of ``INSERT_CHUNK``.
        """
        with self._lock:
            for i in range(0, len(items), self.INSERT_CHUNK):
                self._client.upsert(self.tracks_name, [track_row(k, v, sc)
                                                       for k, v, sc in items[i:i + self.INSERT_CHUNK]])

    @milvus_call
    def delete_tracks(self, keys: Sequence[int]) -> None:
        keys = [int(k) for k in keys]
        if not keys:
            return
        with self._lock:
            self._client.delete(self.segments_name, filter=f"track_key in {keys}")
            self._client.delete(self.tracks_name, ids=keys)

    @milvus_call
    def flush(self) -> None:
        with self._lock:
            for name in (self.tracks_name, self.segments_name):
                self._client.flush(name)

    # ---- health ---------------------------------------------------------------

    def ping(self, timeout_s: float = 2.0) -> None:
        """Raise :class:`StoreUnavailableError` unless Milvus answers a cheap call within ``timeout_s``.

        For health checks (``/healthz``): they must answer within their own short deadline,
        never the client's 30-s one, so the gRPC call gets ``timeout_s`` and the client's lock
        is waited for at most that long.  A lock still held then is ``BusyError``: a queue of
        slow searches is not an outage (a call stuck on a dead server opens the breaker when
        it fails, and the next ping says so at once).
        """
        _acquire_or_busy(self, timeout_s)
        try:
            self._ping(timeout_s)
        finally:
            self._lock.release()

    def _probe(self) -> None:
        """The breaker's probe: a ping with a short deadline (called inside the guarded call, so unguarded)."""
        self._ping(BREAKER_PROBE_S)

    @milvus_call
    def _ping(self, timeout_s: float) -> None:
        if not self._client.has_collection(self.tracks_name, timeout=timeout_s):
            raise EmptyIndexError(f"collection {self.tracks_name} does not exist in {self.uri}; build the index first")

    # ---- reading --------------------------------------------------------------

    @milvus_call
    def _count(self, name: str) -> int:
        with self._lock:
            res = self._client.query(name, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"]) if res else 0

    def count_tracks(self) -> int:
        return self._count(self.tracks_name)

    def count_segments(self) -> int:
        return self._count(self.segments_name)

    @milvus_call
    def track_vectors(self, keys: Sequence[int]) -> dict[int, np.ndarray]:
        keys = [int(k) for k in keys]
        if not keys:
            return {}
        with self._lock:
            rows = self._client.get(self.tracks_name, ids=keys, output_fields=["vector"], **self._read_kw())
        return {int(r["track_key"]): np.asarray(r["vector"], dtype=np.float32) for r in rows}

    @milvus_call
    def all_track_keys(self, collection: str | None = None) -> list[int]:
        """Every track key (of the tracks collection, or of ``collection``: distinct), by key ranges.

        Why not ``query_iterator``: milvus-lite does not implement the iterator RPCs
        (it logs "Method not implemented" tracebacks).  Keys are uniform 63-bit hashes,
        so equal ranges hold similar counts; a range that hits the query limit is split.
        """
        name = collection or self.tracks_name
        limit = 16384
        total = self._count(name)
        n_ranges = max(1, (total * 2) // limit + 1)
        step = (1 << 63) // n_ranges + 1
        top = (1 << 63) - 1  # int64 max; keys are < 2**63
        pending = [(i * step, min((i + 1) * step, top)) for i in range(n_ranges)]
        out: list[int] = []
        with self._lock:
            while pending:
                lo, hi = pending.pop()
                cond = f"track_key >= {lo} and track_key < {hi}" if hi < top else f"track_key >= {lo}"
                rows = self._client.query(name, filter=cond, output_fields=["track_key"], limit=limit)
                if len(rows) >= limit and hi - lo > 1:
                    mid = (lo + hi) // 2
                    pending += [(lo, mid), (mid, hi)]
                    continue
                out.extend(int(r["track_key"]) for r in rows)
        return out if collection is None else sorted(set(out))

    @milvus_call
    def search_tracks(self, vectors: np.ndarray, k: int, exclude: Sequence[int] = (),
                      include: Sequence[int] | None = None, expr: str = "") -> list[list[Neighbour]]:
        """Top-k tracks by cosine for each query vector, in ONE call (lite pays per call).

        ``exclude``: keys never returned; ``include``: only these keys; ``expr``: a filter on
        the scalar fields (``engine.filters``).  All are Milvus filters, applied in the
        search, so k results still come back when k such tracks exist.
        """
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        parts = []
        if exclude:
            parts.append(f"track_key not in {[int(e) for e in exclude]}")
        if include is not None:
            parts.append(f"track_key in {[int(e) for e in include]}")
        if expr:
            parts.append(f"({expr})")
        flt = " and ".join(parts)
        with self._lock:
            res = self._client.search(
                self.tracks_name, data=vectors.tolist(), limit=k, filter=flt,
                output_fields=["track_key"], search_params=self._search_params(k), **self._read_kw(),
            )
        return [[Neighbour(int(h["track_key"]), float(h["distance"])) for h in hits] for hits in res]

    @milvus_call
    def search_segments(self, vectors: np.ndarray, k: int) -> list[list[SegmentHit]]:
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        with self._lock:
            res = self._client.search(
                self.segments_name, data=vectors.tolist(), limit=k, output_fields=["track_key", "t"],
                search_params=self._search_params(k), **self._read_kw(),
            )
        return [
            [SegmentHit(int(h["entity"]["track_key"]), float(h["entity"]["t"]), float(h["distance"])) for h in hits]
            for hits in res
        ]

    def close(self) -> None:
        with self._lock:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - closing twice or a dead server is fine
                pass
