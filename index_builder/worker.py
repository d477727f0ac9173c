"""What one build worker process does: decode -> embed -> landmarks for one file.

Why a separate, light module: workers are started with the ``spawn`` method
(fork after torch and a Milvus client exist is unsafe), so each worker imports
its target module from scratch; keeping pymilvus, sqlite and tqdm out of here
keeps worker start-up and memory small.  The worker never writes anything: it
returns arrays to the main process, which is the one writer.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .report import own_peak_rss_mb

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "index_builder.worker:default_embedder"


@dataclass
class WorkResult:
    track_key: int
    ok: bool
    seconds: float = 0.0
    segments: np.ndarray | None = None
    times: np.ndarray | None = None
    track_vector: np.ndarray | None = None
    #: mean, spread (and for the LDA a sample) of the similarity descriptors, tags, tempo, key and
    #: the head's mean vector: what the similarity step needs (engine.descriptors)
    descriptor: Any = None
    #: landmarks (hash, frame) computed here so the main process only inserts;
    #: None when the fingerprint module offers no extractor (main then fingerprints)
    fp_hashes: np.ndarray | None = None
    fp_times: np.ndarray | None = None
    #: the reference peaks (frames, band bins) the landmarks were paired from, for the offset verification
    fp_peaks: tuple[np.ndarray, np.ndarray] | None = None
    #: only when fp_hashes is None: the decoded audio for the main process to fingerprint
    samples: np.ndarray | None = None
    sample_rate: int = 0
    kind: str = ""
    reason: str = ""
    detail: str = ""
    decode_s: float = 0.0
    embed_s: float = 0.0
    fp_s: float = 0.0
    #: the worker's own peak RSS (MB) after this file (index_builder.report.own_peak_rss_mb)
    peak_rss_mb: float = 0.0


def default_embedder(settings: Any):
    """The product's embedder: the configured backbone + the head at ``settings.resolved_head_path``."""
    from engine.embed import Embedder
    from engine.features import make_backbone

    return Embedder.create(make_backbone(settings), settings.resolved_head_path, settings.embedding_dim)


def load_factory(spec: str) -> Callable[[Any], Any]:
    """``"package.module:function"`` -> the function (picklable by name across spawn)."""
    mod, _, fn = spec.partition(":")
    return getattr(importlib.import_module(mod), fn)


_state: dict[str, Any] = {}


def init_worker(settings: Any, factory_spec: str, torch_threads: int, log_level: int) -> None:
    """Pool initializer: one embedder per worker, one torch thread (processes give the parallelism)."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(processName)s %(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(max(1, torch_threads))
    from engine.threads import limit_blas_threads

    limit_blas_threads()  # engine.threads: a spinning BLAS pool takes the core the other worker needs
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    _state["settings"] = settings
    try:
        _state["embedder"] = load_factory(factory_spec)(settings)
    except Exception as exc:
        log.exception("cannot create the embedder %s", factory_spec)
        _state["init_error"] = exc
    try:
        from engine.fingerprint.landmarks import extract_fingerprint

        _state["landmarks"] = extract_fingerprint
    except ImportError:
        _state["landmarks"] = None


def embedder_identity(factory_spec: str, settings: Any) -> tuple[str, int, int, str, tuple, tuple]:
    """(model_id, dim, sample_rate, backbone name, descriptor layout, tag names), computed in a
    worker so the main process never loads the network itself."""
    if "init_error" in _state:
        raise _state["init_error"]
    emb = _state.get("embedder") or load_factory(factory_spec)(settings)
    layout = tuple(getattr(emb.backbone, "descriptor_layout", None) or (("features", emb.dim),))
    tags = tuple(getattr(emb.backbone, "tag_names", ()) or ())
    return emb.model_id, emb.dim, emb.sample_rate, getattr(emb.backbone, "name", "?"), layout, tags


def process_file(track_key: int, path: str, hop_s: float) -> WorkResult:
    """Decode, embed and fingerprint one file; typed audio errors come back as a failed result."""
    from engine.audio import decode, limits_from_settings
    from engine.errors import SynestheteError

    settings = _state["settings"]
    embedder = _state["embedder"]
    t0 = time.perf_counter()
    try:
        decoded = decode(Path(path), embedder.sample_rate, limits_from_settings(settings, for_catalogue=True))
    except SynestheteError as exc:
        return WorkResult(track_key, False, kind=exc.kind, reason=exc.user_message, detail=str(exc),
                          decode_s=time.perf_counter() - t0)
    except OSError as exc:  # unreadable file, permission denied
        return WorkResult(track_key, False, kind="io", reason="I couldn't read that file.", detail=str(exc))
    from engine.analysis import rhythm_and_key
    from engine.descriptors import SAMPLE_SEGMENTS, summarise

    t1 = time.perf_counter()
    emb = embedder.embed(decoded.samples, hop_s)
    rk = rhythm_and_key(middle(decoded.samples, decoded.sample_rate, TEMPO_KEY_S), decoded.sample_rate)
    t2 = time.perf_counter()
    res = WorkResult(track_key, True, seconds=decoded.duration_s, segments=emb.segments, times=emb.times,
                     track_vector=emb.track, decode_s=t1 - t0, embed_s=t2 - t1,
                     descriptor=summarise(track_key, emb.features, emb.tags, rk.bpm, rk.key, emb.track,
                                          SAMPLE_SEGMENTS if settings.similarity_method == "lda" else 0)
                     if emb.features is not None else None)
    extract = _state.get("landmarks")
    if extract is not None:
        fp = extract(decoded.samples, decoded.sample_rate, density="reference")
        res.fp_hashes, res.fp_times = np.asarray(fp.hashes), np.asarray(fp.times)
        res.fp_peaks = (np.asarray(fp.peak_t), np.asarray(fp.peak_f))
    else:
        res.samples, res.sample_rate = decoded.samples, decoded.sample_rate
    res.fp_s = time.perf_counter() - t2
    res.peak_rss_mb = own_peak_rss_mb()
    return res


#: tempo and key of a catalogue track are estimated on this much of its middle (s):
#: enough for both, and a fixed cost whatever the track's length
TEMPO_KEY_S = 60.0


def middle(samples: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """The central ``seconds`` of ``samples`` (all of it when shorter)."""
    n = int(seconds * sample_rate)
    if len(samples) <= n:
        return samples
    a = (len(samples) - n) // 2
    return samples[a:a + n]


def pid() -> int:
    """For tests: which process runs the work."""
    return os.getpid()
