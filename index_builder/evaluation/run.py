"""Every query through every configuration; and, optionally, through the real service.

Per query: decode once (timed apart: it is the same for every configuration), the
landmark match, then per embedding configuration the backbone features (cached per
query file), the head, the exact segment search and the vote, then the combined
configurations' answer by the service's rule, then the MFCC baseline's statistics.
What comes out are rankings (track indices, best first) and latencies per
configuration, and one row of details per query for the JSON.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.identify import SEGMENT_CANDIDATES, Calibration

from . import BASELINE, COMBINED
from .baseline import mfcc_stats
from .catalogue import SR
from .data import EmbedConfig, Query, short_sha
from .vote import combined_ranking, service_decision, vote_ranking

log = logging.getLogger(__name__)

SegTable = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class QueryRun:
    rows: list[dict[str, Any]] = field(default_factory=list)  # per query: what each configuration said
    rank: dict[str, list[list[int]]] = field(default_factory=lambda: defaultdict(list))  # config -> per query
    lat: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # config -> ms per query
    decode_ms: list[float] = field(default_factory=list)
    mfcc: list[np.ndarray] = field(default_factory=list)  # the baseline's statistics per query
    #: the combined rule's calibration: None = the safe rule.  A calibration belongs to one
    #: catalogue, and eval's corpus index is not the data directory's (``service_path`` is).
    calibration: Calibration | None = None


@dataclass
class _Votes:
    """One query's segment votes and segment vectors per embedding configuration."""

    votes: dict[str, list] = field(default_factory=dict)
    segments: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # (vectors, times)


def _decode(q: Query, limits, first_seconds: float | None) -> np.ndarray:
    """The query's samples at :data:`SR`; 3 s of silence when it does not decode (a miss for every config)."""
    from engine.audio import decode

    try:
        samples = decode(q.path, SR, limits).samples
    except Exception as exc:  # noqa: BLE001 - a broken query counts as a miss for every config
        log.warning("query %s failed to decode: %s", q.path, exc)
        samples = np.zeros(SR * 3, np.float32)
    if first_seconds:
        samples = samples[: int(first_seconds * SR)]
    return samples


def _query_features(c: EmbedConfig, q: Query, samples: np.ndarray, hop: float,
                    first_seconds: float | None) -> tuple[np.ndarray, float]:
    """Backbone features of a query and the ms they took.

    Cached too (a second run with another head costs no backbone time); the latency
    kept is the one measured when they were computed.
    """
    import torch

    t0 = time.perf_counter()
    stamp = str(q.path.stat().st_mtime if q.path.exists() else 0)
    qkey = f"q-{short_sha(str(q.path.resolve()) + stamp + str(first_seconds))}"
    qp = c.cache.dir / f"{qkey}.h{hop:g}.npz"
    if qp.exists():
        with np.load(qp) as z:
            return z["feats"], float(z["ms"])
    with torch.inference_mode():
        f = c.backbone.features(samples, hop)
    ms = (time.perf_counter() - t0) * 1000
    np.savez(qp, feats=f, ms=ms)
    return f, ms


def _embed_and_vote(q: Query, samples: np.ndarray, emb: dict[str, EmbedConfig], seg_tables: dict[str, SegTable],
                    settings, first_seconds: float | None, run: QueryRun) -> _Votes:
    """Every embedding configuration's vote on one query (rankings and latencies into ``run``)."""
    out = _Votes()
    feat_ms: dict[int, tuple[np.ndarray, float]] = {}
    for name, c in emb.items():
        key = id(c.backbone)
        if key not in feat_ms:
            feat_ms[key] = _query_features(c, q, samples, settings.query_hop_s, first_seconds)
        f, fms = feat_ms[key]
        t1 = time.perf_counter()
        qs = c.head.head.embed(f)
        qt = (np.arange(len(qs)) * settings.query_hop_s).astype(np.float32)
        segs, owner, times = seg_tables[name]
        votes = vote_ranking(qs, qt, segs, owner, times, settings.segment_hop_s, SEGMENT_CANDIDATES)
        out.votes[name] = votes
        out.segments[name] = (qs, qt)
        run.lat[name].append(fms + (time.perf_counter() - t1) * 1000)
        run.rank[name].append([v[0] for v in votes])
    return out


def _combined(row: dict[str, Any], fp_matches: list[Any], v: _Votes, emb: dict[str, EmbedConfig], settings,
              configs: list[str], items: list, run: QueryRun) -> None:
    """The combined configurations' answer to one query: the service's rule on fingerprint + vote."""
    for comb, src in COMBINED:
        if comb not in configs or src not in v.votes:
            continue
        t0 = time.perf_counter()
        decision = service_decision(fp_matches, v.votes[src], len(v.segments[src][1]), row["seconds"],
                                    threshold=settings.identify_threshold, calibration=run.calibration)
        run.rank[comb].append(combined_ranking(decision, fp_matches, v.votes[src]))
        run.lat[comb].append(run.lat["fingerprint"][-1] + run.lat[src][-1] + (time.perf_counter() - t0) * 1000)
        row[f"{comb}_answer"] = items[decision].track_id if decision is not None else None


def _one_query(q: Query, samples: np.ndarray, items: list, emb: dict[str, EmbedConfig],
               seg_tables: dict[str, SegTable], fp_index, settings, configs: list[str],
               first_seconds: float | None, run: QueryRun) -> dict[str, Any]:
    """Every configuration on one decoded query; its row of details."""
    row: dict[str, Any] = {"query": str(q.path.name), "kind": q.kind, "truth": q.track_id,
                           "seconds": round(len(samples) / SR, 2)}
    fp_matches: list[Any] = []
    if fp_index is not None:
        t0 = time.perf_counter()
        fp_matches = fp_index.match(samples, SR, top_k=5)
        run.lat["fingerprint"].append((time.perf_counter() - t0) * 1000)
        run.rank["fingerprint"].append([m.track_key for m in fp_matches])
    v = _embed_and_vote(q, samples, emb, seg_tables, settings, first_seconds, run)
    if fp_matches:
        row["fp_top"], row["fp_conf"] = items[fp_matches[0].track_key].track_id, float(fp_matches[0].confidence)
    for name, votes in v.votes.items():
        if votes:
            row[f"{name}_vote"] = [items[votes[0][0]].track_id, float(votes[0][1])]
    _combined(row, fp_matches, v, emb, settings, configs, items, run)
    return row


def run_queries(queries: list[Query], items: list, emb: dict[str, EmbedConfig], seg_tables: dict[str, SegTable],
                fp_index, settings, configs: list[str], *, first_seconds: float | None,
                progress: bool) -> QueryRun:
    """Every query through every configuration (the baseline's ranking is :func:`baseline_rankings`'s)."""
    from tqdm import tqdm

    from engine.audio import limits_from_settings

    limits = limits_from_settings(settings)
    run = QueryRun()
    for q in tqdm(queries, desc="queries", unit="query", disable=not progress):
        t0 = time.perf_counter()
        samples = _decode(q, limits, first_seconds)
        run.decode_ms.append((time.perf_counter() - t0) * 1000)
        row = _one_query(q, samples, items, emb, seg_tables, fp_index, settings, configs, first_seconds, run)
        t0 = time.perf_counter()
        run.mfcc.append(mfcc_stats(samples, SR))
        run.lat[BASELINE].append((time.perf_counter() - t0) * 1000)
        for name in run.rank:
            if len(run.rank[name]) == len(run.rows) + 1:
                row[name] = [items[k].track_id for k in run.rank[name][-1][:5]]
        run.rows.append(row)
    return run


def service_path(settings, queries: list[Query]) -> dict[str, Any]:
    """Every query through ``SynestheteService.recommend`` (decode + fingerprint + embed + Milvus).

    Top-1 per kind and latency; ``{"error": ...}`` instead when the service cannot open.
    """
    from engine.service import SynestheteService

    out: dict[str, Any] = {"data_dir": str(settings.data_dir)}
    try:
        svc = SynestheteService(settings, read_only=True)
    except Exception as exc:  # noqa: BLE001 - report, don't crash the whole evaluation
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    per: dict[str, list[bool]] = defaultdict(list)
    times: list[float] = []
    with svc:
        out["model_id"] = svc.model_id
        for q in queries:
            t0 = time.perf_counter()
            try:
                rec = svc.recommend(q.path)
                ok = rec.identified is not None and rec.identified.track.track_id == q.track_id
            except Exception as exc:  # noqa: BLE001
                log.warning("service failed on %s: %s", q.path, exc)
                ok = False
            times.append((time.perf_counter() - t0) * 1000)
            per[q.kind].append(ok)
    out.update({f"{k}_top1": float(np.mean(v)) for k, v in per.items()})
    out["latency_ms_median"] = float(np.median(times)) if times else None
    out["latency_ms_p95"] = float(np.percentile(times, 95)) if times else None
    return out
