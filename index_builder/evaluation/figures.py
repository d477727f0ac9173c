"""The report of an evaluation: the figures per configuration, chance levels, what-ifs; one dict.

The dict is what ``--json`` writes and what the table is printed from.  Top-1 of a
combined configuration is what the service *answers* ("no answer" is a miss); its
top-5 is the answer, then the fingerprint's and the vote's candidates.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from . import BASELINE, PRETRAINED, SIMILARITY
from .data import EmbedConfig, Query
from .metrics import chance, similarity_report, topk_hits
from .run import QueryRun

_SIMILARITY_FIGURES = ("p5_artist", "p5_genre", "p5_genre_artist_filtered")


@dataclass
class Inputs:
    """What the report is made of (besides the rankings of :class:`QueryRun`)."""

    items: list  # index_builder.training.data.CatalogueItem
    queries: list[Query]
    configs: list[str]
    emb: dict[str, EmbedConfig]
    track_vecs: dict[str, np.ndarray]
    settings: Any


def _identification(name: str, inp: Inputs, run: QueryRun, kinds: list[str]) -> dict[str, Any]:
    """Top-1/top-5 per query kind and latency of one configuration ({} when it ranked no query)."""
    queries, rows, rank = inp.queries, run.rows, run.rank
    r: dict[str, Any] = {}
    if name not in rank or len(rank[name]) != len(queries):
        return r
    by_id = {it.track_id: i for i, it in enumerate(inp.items)}
    truth = [by_id[q.track_id] for q in queries]
    for kind in kinds:
        idx = [i for i, q in enumerate(queries) if q.kind == kind]
        hits = topk_hits([rank[name][i] for i in idx], [truth[i] for i in idx])
        r[f"{kind}_top1"], r[f"{kind}_top5"] = hits[1], hits[5]
    if name.startswith("combined"):  # top-1 = what the service answers
        for kind in kinds:
            answers = [(rows[i].get(f"{name}_answer"), queries[i].track_id) for i, q in enumerate(queries)
                       if q.kind == kind]
            r[f"{kind}_top1"] = float(np.mean([a == t for a, t in answers]))
            r[f"{kind}_answered"] = float(np.mean([a is not None for a, _ in answers]))
    if run.lat.get(name):
        r["latency_ms_median"] = float(np.median(run.lat[name]))
        r["latency_ms_p95"] = float(np.percentile(run.lat[name], 95))
    return r


def _similarity(name: str, inp: Inputs) -> dict[str, Any]:
    """P@5 of same artist / shared genre (also with the artist filter) of one configuration's track vectors."""
    genres = [set(it.genres) for it in inp.items]
    sim = similarity_report(inp.track_vecs[name], [it.artist for it in inp.items], genres)
    r: dict[str, Any] = {"p5_artist": sim["artist_p5"], "p5_genre": sim["genre_p5"],
                         "p5_genre_artist_filtered": sim["genre_p5_artist_filtered"]}
    used = inp.emb[name].labels_used if name in inp.emb else "none"
    if used in ("artist", "genre"):
        r["scored_on_training_labels"] = used
    return r


def results(inp: Inputs, run: QueryRun, kinds: list[str]) -> dict[str, dict[str, Any]]:
    """Per configuration (and the pretrained mean, the similarity model, the baseline): its figures."""
    names = [n for n in (*inp.configs, PRETRAINED, SIMILARITY, BASELINE) if n in run.rank or n in inp.track_vecs]
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(names):
        r = _identification(name, inp, run, kinds)
        if name in inp.track_vecs:
            r.update(_similarity(name, inp))
        out[name] = r
    base = out[BASELINE]
    for r in out.values():
        for m in _SIMILARITY_FIGURES:
            if m in r and base.get(m):
                r[f"{m}_x_baseline"] = r[m] / base[m]
    return out


def what_if(inp: Inputs, run: QueryRun, kinds: list[str], figures: dict[str, Any]) -> dict[str, Any]:
    """What the uncalibrated rule would *say* from the fingerprint alone (its margin applied), per kind."""
    from engine.identify import SAFE_MARGIN_CONFIDENCE

    out: dict[str, Any] = {}
    thr = SAFE_MARGIN_CONFIDENCE
    if "fingerprint" in figures:
        for kind in kinds:
            ok = [row.get("fp_conf", 0.0) >= thr and row.get("fp_top") == q.track_id
                  for q, row in zip(inp.queries, run.rows) if q.kind == kind]
            out[f"fingerprint/at-threshold/{kind}_top1"] = float(np.mean(ok)) if ok else None
    return out


def chance_levels(items: list) -> dict[str, float]:
    """The P@5 figures of a random ranking of this catalogue."""
    artists = [{it.artist} if it.artist else set() for it in items]
    genres = [set(it.genres) for it in items]
    filtered = (similarity_report(np.eye(len(items), dtype=np.float32), [it.artist for it in items], genres
                                  )["genre_artist_filtered_chance"] if len(items) > 1 else float("nan"))
    return {"p5_artist": chance(artists), "p5_genre": chance(genres), "p5_genre_artist_filtered": filtered}


def build_report(inp: Inputs, run: QueryRun, *, musicnn_features: list[np.ndarray], first_seconds: float | None,
                 window_s: float | None, catalogue_s: float, fp_build_s: float,
                 service: dict[str, Any] | None) -> dict[str, Any]:
    """The whole report: figures, chance, catalogue and query counts, timings, per-query details."""
    import torch

    items, queries, hop = inp.items, inp.queries, inp.settings.segment_hop_s
    kinds = sorted({q.kind for q in queries})
    figures = results(inp, run, kinds)
    hours = round(sum(len(c) for c in musicnn_features) * hop / 3600, 2) if musicnn_features else None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPU, torch threads {torch.get_num_threads()}",
        "catalogue": {"tracks": len(items), "embedded_hours": hours,
                      "artists": len({it.artist for it in items}), "genres": len({g for it in items for g in it.genres})},
        "queries": {k: sum(q.kind == k for q in queries) for k in kinds},
        "first_seconds": first_seconds,
        "window_s": window_s,
        "chance": chance_levels(items),
        "results": figures,
        "decode_ms_median": float(np.median(run.decode_ms)) if run.decode_ms else None,
        "catalogue_pass_s": round(catalogue_s, 1),
        "fingerprint_build_s": round(fp_build_s, 1),
        "heads": {n: c.head.meta for n, c in inp.emb.items()},
        "service": service,
        "what_if": what_if(inp, run, kinds, figures),
        "details": run.rows,
    }
