"""What an evaluation runs on: the query set, the catalogue tracks, the embedding configurations."""

from __future__ import annotations

import csv
import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import COMBINED

log = logging.getLogger(__name__)


@dataclass
class Query:
    path: Path
    kind: str  # e.g. clean10, phone10: figures are given per kind
    track_id: str  # the catalogue track it is an excerpt of
    offset_s: float  # where in that track it starts (NaN when unknown)


def read_queries(path: Path) -> list[Query]:
    """``queries.csv`` (columns ``query_file,kind,track_id,offset_s``); files relative to its folder."""
    base = Path(path).parent
    out = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            off = row.get("offset_s") or ""
            out.append(Query(base / row["query_file"], row["kind"], row["track_id"], float(off) if off else float("nan")))
    return out


def limit_per_kind(queries: list[Query], limit: int | None) -> list[Query]:
    """The first ``limit`` queries of each kind, in file order (all when ``limit`` is falsy)."""
    if not limit:
        return queries
    per: dict[str, int] = defaultdict(int)
    kept = []
    for q in queries:
        if per[q.kind] < limit:
            kept.append(q)
            per[q.kind] += 1
    return kept


def catalogue_of(args, settings):
    """The catalogue tracks of ``--csv``/``--audio``/``--corpus`` (or the built catalogue)."""
    from index_builder.training.data import catalogue_items

    csv_path, audio = args.csv, args.audio
    if args.corpus is not None:
        csv_path = csv_path or args.corpus / "tracks.csv"
        audio = audio or args.corpus / "catalogue"
    return catalogue_items(settings, csv_path, audio)


@dataclass
class EmbedConfig:
    name: str
    backbone: Any
    head: Any  # engine.head.LoadedHead
    cache: Any = None  # index_builder.training.cache.FeatureCache of the backbone
    cat_segs: list[np.ndarray] = field(default_factory=list)
    labels_used: str = "none"  # labels the head was trained with ("artist", "genre": never score on them)


def embed_configs(settings, configs: list[str], head_path: Path | None) -> dict[str, EmbedConfig]:
    """The embedding configurations ``configs`` asks for (directly or through a combined one).

    ``musicnn-trained`` is left out, with a warning, when there is no trained head at
    ``head_path`` (default: the settings' head); ``logmel`` when its backbone cannot be made.
    """
    from engine.features import make_backbone
    from engine.head import default_head, load_head
    from index_builder.training.cache import FeatureCache

    wanted = set(configs) | {src for comb, src in COMBINED if comb in configs}
    emb: dict[str, EmbedConfig] = {}
    if wanted & {"musicnn", "musicnn-trained"}:
        bb = make_backbone(settings, "musicnn")
        cache = FeatureCache(settings.data_dir, bb, settings)
        if "musicnn" in wanted:
            emb["musicnn"] = EmbedConfig("musicnn", bb, default_head(bb.dim, settings.embedding_dim, bb.model_id), cache)
        if "musicnn-trained" in wanted:
            hp = head_path or settings.resolved_head_path
            if Path(hp).exists():
                lh = load_head(Path(hp), bb.dim, settings.embedding_dim, bb.model_id)
                emb["musicnn-trained"] = EmbedConfig("musicnn-trained", bb, lh, cache,
                                                     labels_used=lh.meta.get("labels_used", "none"))
            else:
                log.warning("no trained head at %s; skipping musicnn-trained", hp)
    if "logmel" in configs:
        try:
            lb = make_backbone(settings, "logmel")
            emb["logmel"] = EmbedConfig("logmel", lb, default_head(lb.dim, settings.embedding_dim, lb.model_id),
                                        FeatureCache(settings.data_dir, lb, settings))
        except Exception as exc:  # noqa: BLE001 - a backbone still being written is skipped, and said so
            log.warning("logmel backbone unavailable (%s); skipping", exc)
    return emb


def short_sha(text: str) -> str:
    """12 hex digits of SHA-1: a cache file name part."""
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def windows(offsets: list[float], window_s: float, hop: float, duration) -> list[tuple[int, int]]:
    """Catalogue-grid windows ``(first patch, n patches)`` of ``window_s`` centred on each query
    (10 s from ``offset_s``), merged when they overlap; the middle of the track when it has no query.

    ``duration``: a callable giving the track's length (s), called only when needed.
    """
    n = max(1, int(np.ceil(window_s / hop)))
    centres = [o + 5.0 for o in offsets if np.isfinite(o)]
    if not centres:
        centres = [duration() / 2.0]
    spans = sorted((max(0, int(np.floor((c - window_s / 2) / hop))), n) for c in centres)
    merged: list[list[int]] = []
    for g0, k in spans:
        if merged and g0 <= merged[-1][0] + merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], g0 + k - merged[-1][0])
        else:
            merged.append([g0, k])
    return [(a, b) for a, b in merged]
