"""Where the landmark index lives: one SQLite file (default) or a Milvus collection.

One decision, one place: the service and the builder both open the index through
:func:`open_fingerprints`, from ``Settings.fingerprint_backend``:

* ``sqlite`` (default): ``engine.fingerprint.index.FingerprintIndex``, an inverted hash table
  in SQLite with a memory-mapped read snapshot.  Fastest on one machine.
* ``milvus``: ``engine.fingerprint.milvus_index.MilvusFingerprintIndex``, sparse vectors of
  landmark hashes per 5-s window in the same Milvus database as the vectors (milvus-lite
  by default, a server or cluster by URI), so the index can spread over machines.  Needs
  sparse vectors (Milvus 2.4+ / milvus-lite); the 2.3.5 server helper has none.
"""

from __future__ import annotations

from typing import Any

from engine.store import VectorStore


def open_fingerprints(settings: Any, store: VectorStore, *, read_only: bool, for_build: bool = False) -> Any:
    """The landmark index for ``settings``, or None when a reader finds none built.

    ``for_build``: an index of another landmark version is emptied (every track is then
    fingerprinted again) instead of refused.  Raises ``StoreError`` (``StaleIndexError`` for
    another landmark version) when the index cannot be used.
    """
    if settings.fingerprint_backend == "milvus":
        from engine.fingerprint.milvus_index import MilvusFingerprintIndex

        if read_only and not store._client.has_collection(f"{settings.collection_prefix}_landmarks"):
            return None
        return MilvusFingerprintIndex(store, prefix=settings.collection_prefix, read_only=read_only,
                                      reset_if_stale=for_build)
    from engine.fingerprint.index import FingerprintIndex

    path = settings.fingerprint_db_path
    if read_only and not path.exists():
        return None
    return FingerprintIndex(path, read_only=read_only, max_candidates=settings.fingerprint_max_candidates,
                            reset_if_stale=for_build, verify=settings.identify_verification)


def lookup_id(settings: Any) -> str:
    """What shapes the landmark scores a calibration was fitted on: the backend and its lookup knobs.

    A calibration fitted on one lookup does not apply to another: the Milvus backend verifies
    32 windows and the SQLite one a budget's worth of rows, so their runner-up scores (the
    chance level the calibration reads) differ.
    """
    if settings.fingerprint_backend == "milvus":
        from engine.fingerprint.milvus_index import CANDIDATE_WINDOWS, WINDOW_FRAMES

        return f"milvus/window{WINDOW_FRAMES}/windows{CANDIDATE_WINDOWS}"
    from engine.fingerprint.index import VERIFY_TRACKS

    return f"sqlite/budget{settings.fingerprint_max_candidates}/verify{VERIFY_TRACKS}"
