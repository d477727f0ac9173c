"""``synesthete-index eval``: identification and similarity, several configurations side by side.

What is measured, on one catalogue and one query set, in one run:

* **identification**: for each query (a 10-s excerpt, clean or recorded by a
  phone: ``queries.csv`` columns ``query_file,kind,track_id,offset_s``), is the
  right track first (top-1) or among the first five (top-5), per query kind;
* **similarity**: for each catalogue track, its 5 nearest *other* tracks by
  track vector (cosine); precision@5 of "same artist" and "shares a genre";
* **latency** per query (features + search; decoding is reported apart, it is
  the same for every configuration).

Configurations (``--configs``): ``fingerprint`` (landmarks only),
``musicnn`` (pretrained backbone + the untrained default head, as the service
runs without a trained head), ``musicnn-trained`` (+ the head at ``--head``),
``logmel`` (when that backbone exists), ``combined`` / ``combined-trained``
(fingerprint + that embedding's segment vote, decided the way
``SynestheteService._identify`` does: a top-1 is what the service would answer,
"no answer" counts as a miss).
A **baseline is always included**: mean/std statistics of MFCC + chroma +
spectral contrast (librosa; eval is a dev tool, the engine never imports
librosa) compared by cosine, so every figure has a reference measured the same way.

Honesty rules built in: a head trained with labels (``--supervised`` in train)
records them in its metadata, and its similarity figure on those labels is
flagged ``scored_on_training_labels`` in the JSON and the table.  Embedding
identification uses exact numpy search and the service's own
``segment_vote``; ``--service-data-dir`` additionally runs every query through
``SynestheteService.recommend`` on a built index (the real path, with Milvus).

Backbone features of catalogue tracks come from (and go to) the same cache as
``train`` (``<data_dir>/feature_cache/<model id>/``), so an eval after a train
or a second eval costs little more than the queries.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import platform
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_CONFIGS = ("fingerprint", "musicnn", "musicnn-trained", "logmel", "combined", "combined-trained")
BASELINE = "mfcc-baseline"
PRETRAINED = "musicnn-pretrained-mean"  # musicnn mean_pool averaged over a track, no head
SIMILARITY = "similarity-model"  # engine.similarity fitted on the catalogue, as a build does


# ----------------------------------------------------------------------------- metrics


def precision_at_k(vectors: np.ndarray, labels: list[set[str]], k: int = 5) -> float:
    """Mean over items with a label of the fraction of their k nearest *other* items
    (cosine) that share at least one label.  Items without labels are neither scored
    nor excluded as neighbours (a catalogue has unlabelled tracks too)."""
    v = np.asarray(vectors, np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    k = min(k, len(v) - 1)
    if k < 1:
        return float("nan")
    nn = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    scores = [np.mean([bool(labels[i] & labels[j]) for j in nn[i]]) for i in range(len(v)) if labels[i]]
    return float(np.mean(scores)) if scores else float("nan")


def similarity_report(vectors: np.ndarray, artists: list[str], genres: list[set[str]], k: int = 5,
                      queries: np.ndarray | None = None) -> dict[str, float]:
    """The similarity figures of issue 13, for track vectors ``(n, D)`` (cosine).

    - ``artist_p5``: share of a query's k nearest other tracks by the same artist;
    - ``genre_p5``: share that shares a genre with the query;
    - ``genre_p5_artist_filtered``: the same after removing the query's own artist's
      tracks from its ranking (the "artist filter" of music-similarity evaluation,
      Pampalk et al. 2005; Flexer 2007): it tells "sounds alike" from "same album";
    - the chance level of each (the expected share for a random ranking).
    ``queries``: row indices to score (default all); every row is a candidate neighbour.
    A query without a genre is left out of the genre figures; NaN when none is scored.
    """
    v = np.asarray(vectors, np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    n = len(v)
    q_idx = np.arange(n) if queries is None else np.asarray(queries, dtype=int)
    art = np.asarray([a or f"\0{i}" for i, a in enumerate(artists)], dtype=object)
    a_hit, g_hit, gf_hit, a_ch, g_ch, gf_ch = [], [], [], [], [], []
    for i in q_idx:
        sims = v @ v[i]
        sims[i] = -np.inf
        order = np.argsort(-sims, kind="stable")[: n - 1]
        top = order[:k]
        same_art = art == art[i]
        a_hit.append(float(np.mean(same_art[top])))
        a_ch.append((same_art.sum() - 1) / max(1, n - 1))
        if genres[i]:
            shares = np.asarray([bool(genres[i] & g) for g in genres])
            g_hit.append(float(np.mean(shares[top])))
            g_ch.append((shares.sum() - 1) / max(1, n - 1))
            other = order[~same_art[order]][:k]
            pool = ~same_art
            if len(other):
                gf_hit.append(float(np.mean(shares[other])))
                gf_ch.append(shares[pool].sum() / max(1, pool.sum()))

    def m(x: list[float]) -> float:
        return float(np.mean(x)) if x else float("nan")

    return {"artist_p5": m(a_hit), "genre_p5": m(g_hit), "genre_p5_artist_filtered": m(gf_hit),
            "artist_chance": m(a_ch), "genre_chance": m(g_ch), "genre_artist_filtered_chance": m(gf_ch),
            "n_queries": len(q_idx)}


def topk_hits(rankings: list[list[Any]], truth: list[Any], ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Fraction of queries whose true answer is within the first k of its ranking."""
    out = {}
    for k in ks:
        out[k] = float(np.mean([t in r[:k] for r, t in zip(rankings, truth)])) if truth else float("nan")
    return out


def l2n(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


# ----------------------------------------------------------------------------- MFCC baseline


def mfcc_stats(samples: np.ndarray, sr: int) -> np.ndarray:
    """Mean and std of 20 MFCC, 12 chroma and 7 spectral-contrast bands (78-d)."""
    import librosa

    y = np.asarray(samples, np.float32)
    if len(y) < sr:
        y = np.pad(y, (0, sr - len(y)))
    S = np.abs(librosa.stft(y, n_fft=2048, hop_length=512)) ** 2
    mel = librosa.feature.melspectrogram(S=S, sr=sr)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20)
    chroma = librosa.feature.chroma_stft(S=S, sr=sr)
    contrast = librosa.feature.spectral_contrast(S=np.sqrt(S), sr=sr, fmin=100.0, n_bands=6)
    f = np.concatenate([mfcc, chroma, contrast])
    return np.concatenate([f.mean(1), f.std(1)]).astype(np.float32)


def standardise(cat: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu, sd = cat.mean(0), cat.std(0) + 1e-6
    return [(cat - mu) / sd, *[(o - mu) / sd for o in others]]


# ----------------------------------------------------------------------------- embedding vote


@dataclass
class _Hit:
    track_key: int
    t: float
    similarity: float


def vote_ranking(q_segs: np.ndarray, q_times: np.ndarray, cat_segs: np.ndarray, cat_owner: np.ndarray,
                 cat_times: np.ndarray, bin_s: float, candidates: int) -> list[tuple[int, float, float]]:
    """Exact top-``candidates`` segment search + the service's time-consistent vote."""
    from engine.service import segment_vote

    sims = q_segs @ cat_segs.T
    c = min(candidates, sims.shape[1])
    top = np.argpartition(-sims, c - 1, axis=1)[:, :c]
    hits = []
    for i in range(len(q_segs)):
        order = top[i][np.argsort(-sims[i, top[i]])]
        hits.append([_Hit(int(cat_owner[j]), float(cat_times[j]), float(sims[i, j])) for j in order])
    return segment_vote(hits, q_times, bin_s)


def service_decision(fp: list[Any], q_segs: np.ndarray, q_times: np.ndarray,
                     table: tuple[np.ndarray, np.ndarray, np.ndarray], settings, trained: bool) -> int | None:
    """What ``SynestheteService._identify`` answers (a track index, or None), run on exact numpy search.

    The service's own method is called with the index and catalogue replaced by
    in-memory stand-ins, so this follows whatever rule the service has today.
    """
    from types import SimpleNamespace

    from engine.embed import Embedding
    from engine.service import SynestheteService

    segs, owner, times = table

    class _Store:
        def search_segments(self, vectors, k):
            sims = np.asarray(vectors) @ segs.T
            out = []
            for row in sims:
                top = np.argsort(-row, kind="stable")[:k]
                out.append([_Hit(int(owner[j]), float(times[j]), float(row[j])) for j in top])
            return out

    class _Catalogue:
        def get_many(self, keys):
            return {k: SimpleNamespace(track_key=k) for k in keys}

    fake = SimpleNamespace(settings=settings, store=_Store(), catalogue=_Catalogue(),
                           embedder=SimpleNamespace(head=SimpleNamespace(trained=trained)))
    emb = Embedding(q_segs, q_times, l2n(q_segs.mean(0)) if len(q_segs) else q_segs)
    ident = SynestheteService._identify(fake, fp, emb)
    return None if ident is None else int(ident.track.track_key)


def combined_ranking(decision: int | None, fp: list[Any], votes: list[tuple[int, float, float]]) -> list[int]:
    """The service's answer first, then the fingerprint's and the vote's candidates (for top-5)."""
    ranking: list[int] = [decision] if decision is not None else []
    for key in [m.track_key for m in fp] + [v[0] for v in votes]:
        if key not in ranking:
            ranking.append(key)
    return ranking


# ----------------------------------------------------------------------------- data


@dataclass
class Query:
    path: Path
    kind: str
    track_id: str
    offset_s: float


def read_queries(path: Path) -> list[Query]:
    base = Path(path).parent
    out = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            off = row.get("offset_s") or ""
            out.append(Query(base / row["query_file"], row["kind"], row["track_id"], float(off) if off else float("nan")))
    return out


@dataclass
class EmbedConfig:
    name: str
    backbone: Any
    head: Any  # engine.head.LoadedHead
    cache: Any = None
    cat_segs: list[np.ndarray] = field(default_factory=list)
    labels_used: str = "none"


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queries", type=Path, default=None, help="queries.csv (default: <corpus>/queries.csv)")
    p.add_argument("--csv", type=Path, default=None, help="catalogue tracks CSV (Kaggle layout)")
    p.add_argument("--audio", type=Path, default=None, help="folder of the catalogue's audio")
    p.add_argument("--corpus", type=Path, default=None,
                   help="a corpus folder: tracks.csv + catalogue/ + queries.csv")
    p.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS,  # never clobber the top-level --data-dir
                   help="where the feature cache lives (default: settings)")
    p.add_argument("--head", type=Path, default=None, help="trained head for musicnn-trained (default <data_dir>/head.pt)")
    p.add_argument("--first-seconds", type=float, default=None, help="use only the first N s of each query")
    p.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                   help=f"any of {', '.join(DEFAULT_CONFIGS)} (the MFCC baseline always runs)")
    p.add_argument("--limit-queries", type=int, default=None, help="at most N queries per kind (quick runs)")
    p.add_argument("--service-data-dir", type=Path, default=None,
                   help="also run every query through SynestheteService.recommend on the index built here")
    p.add_argument("--window-s", type=float, default=None,
                   help="embed only a window of this many seconds of each catalogue track around its queries "
                        "(compute-limited runs; fewer distractor segments; the fingerprint always sees whole tracks)")
    p.add_argument("--json", type=Path, default=None, help="write all figures (and per-query details) here")
    p.add_argument("--no-progress", action="store_true")


def _catalogue(args, settings):
    from index_builder.train import catalogue_items

    csv_path, audio = args.csv, args.audio
    if args.corpus is not None:
        csv_path = csv_path or args.corpus / "tracks.csv"
        audio = audio or args.corpus / "catalogue"
    return catalogue_items(settings, csv_path, audio)


def main(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from engine.audio import decode, limits_from_settings
    from engine.features import make_backbone
    from engine.head import default_head, load_head
    from engine.service import SEGMENT_CANDIDATES
    from index_builder.runtime import settings_from_args
    from index_builder.train import FeatureCache, audio_signature

    settings = settings_from_args(args)
    qpath = args.queries or (args.corpus / "queries.csv" if args.corpus else None)
    if qpath is None:
        raise SystemExit("give --queries (or --corpus with a queries.csv)")
    items = _catalogue(args, settings)
    by_id = {it.track_id: i for i, it in enumerate(items)}
    queries = [q for q in read_queries(qpath) if q.track_id in by_id]
    if args.limit_queries:
        per: dict[str, int] = defaultdict(int)
        kept = []
        for q in queries:
            if per[q.kind] < args.limit_queries:
                kept.append(q)
                per[q.kind] += 1
        queries = kept
    progress = not args.no_progress
    configs = list(dict.fromkeys(args.configs))
    started = time.perf_counter()

    # ---- embedding configurations -----------------------------------------
    emb: dict[str, EmbedConfig] = {}
    need_musicnn = any(c in configs for c in ("musicnn", "musicnn-trained", "combined", "combined-trained"))
    if need_musicnn:
        bb = make_backbone(settings, "musicnn")
        cache = FeatureCache(settings.data_dir, bb, settings)
        if "musicnn" in configs or "combined" in configs:
            emb["musicnn"] = EmbedConfig("musicnn", bb, default_head(bb.dim, settings.embedding_dim, bb.model_id), cache)
        if "musicnn-trained" in configs or "combined-trained" in configs:
            hp = args.head or settings.resolved_head_path
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
    backbones = {id(c.backbone): c for c in emb.values()}.values()

    # ---- catalogue pass: features, MFCC stats, fingerprints ------------------
    use_fp = any(c in configs for c in ("fingerprint", "combined", "combined-trained"))
    sr = 16000
    sigs = []
    mfcc_dir = settings.data_dir / "feature_cache" / "mfcc-stats-v1"
    mfcc_dir.mkdir(parents=True, exist_ok=True)
    fp_index = None
    fp_build_s = 0.0
    sig_list = [audio_signature(it.path) for it in tqdm(items, desc="hashing", disable=not progress)]
    from engine.fingerprint.landmarks import LANDMARK_VERSION

    fp_path = (settings.data_dir / "feature_cache" / "fingerprint"
               / f"v{LANDMARK_VERSION}-{_sha(','.join(sig_list))}.sqlite")
    if use_fp:
        from engine.fingerprint.index import FingerprintIndex

        fp_path.parent.mkdir(parents=True, exist_ok=True)
        fp_index = FingerprintIndex(fp_path)
        have_fp = fp_index.track_keys()
    cat_clean: dict[str, list[np.ndarray]] = {name: [] for name in ("musicnn", "logmel")}
    cat_times: list[np.ndarray] = []
    mfcc_cat = []
    decode_limits = limits_from_settings(settings, for_catalogue=True)
    hop = settings.segment_hop_s
    offsets_by_track: dict[int, list[float]] = defaultdict(list)
    for q in queries:
        offsets_by_track[by_id[q.track_id]].append(q.offset_s)
    for i, it in enumerate(tqdm(items, desc="catalogue", unit="track", disable=not progress)):
        sig = sig_list[i]
        sigs.append(sig)
        audio = None

        def get_audio():
            nonlocal audio
            if audio is None:
                audio = decode(it.path, sr, decode_limits).samples
            return audio

        windows = None
        if args.window_s:
            windows = _windows(offsets_by_track.get(i, []), args.window_s, hop,
                               lambda: len(get_audio()) / sr)
        for c in backbones:
            if windows is None:
                f, audio = c.cache.clean(it.path, sig, audio)
                t = np.arange(len(f)) * hop
            else:
                parts, ts = [], []
                for g0, n in windows:
                    f, audio = c.cache.clean_window(it.path, sig, g0, n, audio)
                    parts.append(f)
                    ts.append((g0 + np.arange(len(f))) * hop)
                f, t = np.concatenate(parts), np.concatenate(ts)
            cat_clean["logmel" if c.name == "logmel" else "musicnn"].append(f)
        if backbones:
            cat_times.append(t.astype(np.float32))
        mp = mfcc_dir / (f"{sig}.npy" if windows is None else f"{sig}.w{_sha(str(windows))}.npy")
        if mp.exists():
            mfcc_cat.append(np.load(mp))
        else:
            a = get_audio()
            if windows is not None:  # the same audio the embeddings' track vectors see
                a = np.concatenate([a[int(g0 * hop * sr): int(((g0 + n - 1) * hop + 3.0) * sr)] for g0, n in windows])
            v = mfcc_stats(a, sr)
            np.save(mp, v)
            mfcc_cat.append(v)
        if fp_index is not None and i not in have_fp:
            t0 = time.perf_counter()
            fp_index.add_track(i, get_audio(), sr)
            fp_build_s += time.perf_counter() - t0
    catalogue_s = time.perf_counter() - started

    # catalogue segment embeddings and track vectors per config
    track_vecs: dict[str, np.ndarray] = {}
    seg_tables: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for name, c in emb.items():
        feats = cat_clean["logmel" if name == "logmel" else "musicnn"]
        segs = [c.head.head.embed(f) for f in feats]
        track_vecs[name] = np.stack([l2n(s.mean(0)) for s in segs])
        owner = np.concatenate([np.full(len(s), i) for i, s in enumerate(segs)])
        times = np.concatenate(cat_times).astype(np.float32)
        seg_tables[name] = (np.concatenate(segs), owner, times)
    mfcc_cat_arr = np.stack(mfcc_cat)
    if cat_clean["musicnn"]:
        # the similarity model as a build fits it (label-free, on the catalogue) and the
        # pretrained features it starts from, side by side with the heads and the baseline
        from engine.similarity import SimilarityConfig, fit_track_encoder

        feats = cat_clean["musicnn"]
        track_vecs[PRETRAINED] = l2n(np.stack([f.mean(0) for f in feats]))
        # on the cached head features (musicnn mean_pool): the build's model also pools the
        # penultimate layer; bench/answers_eval.py measures the built index itself
        enc = fit_track_encoder(feats, SimilarityConfig(blocks=(("features", feats[0].shape[1]),),
                                                        out_dim=settings.embedding_dim))
        track_vecs[SIMILARITY] = enc.track_vectors(feats)

    # ---- queries ----------------------------------------------------------------
    qlimits = limits_from_settings(settings)
    rows: list[dict[str, Any]] = []
    lat: dict[str, list[float]] = defaultdict(list)
    decode_ms: list[float] = []
    rank: dict[str, list[list[int]]] = defaultdict(list)
    mfcc_q = []
    for q in tqdm(queries, desc="queries", unit="query", disable=not progress):
        t0 = time.perf_counter()
        try:
            samples = decode(q.path, sr, qlimits).samples
        except Exception as exc:  # noqa: BLE001 - a broken query counts as a miss for every config
            log.warning("query %s failed to decode: %s", q.path, exc)
            samples = np.zeros(sr * 3, np.float32)
        if args.first_seconds:
            samples = samples[: int(args.first_seconds * sr)]
        decode_ms.append((time.perf_counter() - t0) * 1000)
        row: dict[str, Any] = {"query": str(q.path.name), "kind": q.kind, "truth": q.track_id}
        fp_matches: list[Any] = []
        if fp_index is not None:
            t0 = time.perf_counter()
            fp_matches = fp_index.match(samples, sr, top_k=5)
            ms = (time.perf_counter() - t0) * 1000
            lat["fingerprint"].append(ms)
            rank["fingerprint"].append([m.track_key for m in fp_matches])
        votes_by: dict[str, list] = {}
        q_embs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        feat_ms: dict[int, tuple[np.ndarray, float]] = {}
        for name, c in emb.items():
            t0 = time.perf_counter()
            key = id(c.backbone)
            if key not in feat_ms:
                # query features are cached too (a second run with another head costs no backbone
                # time); the latency kept is the one measured when they were computed
                qkey = f"q-{_sha(str(q.path.resolve()) + str(q.path.stat().st_mtime if q.path.exists() else 0) + str(args.first_seconds))}"
                qp = c.cache.dir / f"{qkey}.h{settings.query_hop_s:g}.npz"
                if qp.exists():
                    with np.load(qp) as z:
                        feat_ms[key] = (z["feats"], float(z["ms"]))
                else:
                    with torch.inference_mode():
                        f = c.backbone.features(samples, settings.query_hop_s)
                    ms = (time.perf_counter() - t0) * 1000
                    np.savez(qp, feats=f, ms=ms)
                    feat_ms[key] = (f, ms)
            f, fms = feat_ms[key]
            t1 = time.perf_counter()
            qs = c.head.head.embed(f)
            qt = (np.arange(len(qs)) * settings.query_hop_s).astype(np.float32)
            segs, owner, times = seg_tables[name]
            votes = vote_ranking(qs, qt, segs, owner, times, settings.segment_hop_s, SEGMENT_CANDIDATES)
            votes_by[name] = votes
            q_embs[name] = (qs, qt)
            lat[name].append(fms + (time.perf_counter() - t1) * 1000)
            rank[name].append([v[0] for v in votes])
        if fp_matches:
            row["fp_top"], row["fp_conf"] = items[fp_matches[0].track_key].track_id, float(fp_matches[0].confidence)
        for name, votes in votes_by.items():
            if votes:
                row[f"{name}_vote"] = [items[votes[0][0]].track_id, float(votes[0][1])]
        for comb, src in (("combined", "musicnn"), ("combined-trained", "musicnn-trained")):
            if comb not in configs or src not in votes_by:
                continue
            t0 = time.perf_counter()
            qs, qt = q_embs[src]
            decision = service_decision(fp_matches, qs, qt, seg_tables[src], settings, emb[src].head.trained)
            rank[comb].append(combined_ranking(decision, fp_matches, votes_by[src]))
            lat[comb].append(lat["fingerprint"][-1] + lat[src][-1] + (time.perf_counter() - t0) * 1000)
            row[f"{comb}_answer"] = items[decision].track_id if decision is not None else None
        t0 = time.perf_counter()
        mq = mfcc_stats(samples, sr)
        mfcc_q.append(mq)
        lat[BASELINE].append((time.perf_counter() - t0) * 1000)
        for name in rank:
            if len(rank[name]) == len(rows) + 1:
                row[name] = [items[k].track_id for k in rank[name][-1][:5]]
        rows.append(row)
    # MFCC baseline identification: nearest track vector to the query's statistics
    mc, mq_arr = standardise(mfcc_cat_arr, np.stack(mfcc_q) if mfcc_q else np.zeros((0, mfcc_cat_arr.shape[1])))
    mc_n, mq_n = l2n(mc), l2n(mq_arr)
    for i, row in enumerate(rows):
        order = np.argsort(-(mc_n @ mq_n[i]))[:5]
        rank[BASELINE].append([int(j) for j in order])
        row[BASELINE] = [items[j].track_id for j in order]
    track_vecs[BASELINE] = mc_n

    # ---- real service path ---------------------------------------------------------
    service_res = None
    if args.service_data_dir:
        service_res = _service_path(settings.replace(data_dir=Path(args.service_data_dir)), queries)

    # ---- figures ---------------------------------------------------------------------
    truth = [by_id[q.track_id] for q in queries]
    kinds = sorted({q.kind for q in queries})
    artists = [{it.artist} if it.artist else set() for it in items]
    genres = [set(it.genres) for it in items]
    names = [n for n in (*configs, PRETRAINED, SIMILARITY, BASELINE) if n in rank or n in track_vecs]
    names = list(dict.fromkeys(names))
    results: dict[str, Any] = {}
    for name in names:
        r: dict[str, Any] = {}
        if name in rank and len(rank[name]) == len(queries):
            for kind in kinds:
                idx = [i for i, q in enumerate(queries) if q.kind == kind]
                hits = topk_hits([rank[name][i] for i in idx], [truth[i] for i in idx])
                r[f"{kind}_top1"], r[f"{kind}_top5"] = hits[1], hits[5]
            if name.startswith("combined"):
                # top-1 of a combined config = what the service *answers* ("no answer" is a miss);
                # top-5 = its answer, then the fingerprint's and the vote's candidates
                for kind in kinds:
                    idx = [i for i, q in enumerate(queries) if q.kind == kind]
                    r[f"{kind}_top1"] = float(np.mean([rows[i].get(f"{name}_answer") == queries[i].track_id
                                                       for i in idx]))
                    r[f"{kind}_answered"] = float(np.mean([rows[i].get(f"{name}_answer") is not None for i in idx]))
            if lat.get(name):
                r["latency_ms_median"] = float(np.median(lat[name]))
                r["latency_ms_p95"] = float(np.percentile(lat[name], 95))
        if name in track_vecs:
            sim = similarity_report(track_vecs[name], [it.artist for it in items], genres)
            r["p5_artist"], r["p5_genre"] = sim["artist_p5"], sim["genre_p5"]
            r["p5_genre_artist_filtered"] = sim["genre_p5_artist_filtered"]
            used = emb[name].labels_used if name in emb else "none"
            if used in ("artist", "genre"):
                r["scored_on_training_labels"] = used
        results[name] = r
    base = results[BASELINE]
    for r in results.values():
        for m in ("p5_artist", "p5_genre", "p5_genre_artist_filtered"):
            if m in r and base.get(m):
                r[f"{m}_x_baseline"] = r[m] / base[m]
    what_if: dict[str, Any] = {}
    thr = settings.identify_threshold
    if "fingerprint" in results:  # what the service would *say* from the fingerprint alone (threshold applied)
        for kind in kinds:
            ok = [row.get("fp_conf", 0.0) >= thr and row.get("fp_top") == q.track_id
                  for q, row in zip(queries, rows) if q.kind == kind]
            what_if[f"fingerprint/at-threshold/{kind}_top1"] = float(np.mean(ok)) if ok else None
    chance = {"p5_artist": _chance(artists), "p5_genre": _chance(genres),
              "p5_genre_artist_filtered": similarity_report(
                  np.eye(len(items), dtype=np.float32), [it.artist for it in items], genres
              )["genre_artist_filtered_chance"] if len(items) > 1 else float("nan")}
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {__import__('os').cpu_count()} CPU, torch threads {torch.get_num_threads()}",
        "catalogue": {"tracks": len(items), "embedded_hours": round(sum(len(c) for c in cat_clean["musicnn"])
                                                          * settings.segment_hop_s / 3600, 2) if cat_clean["musicnn"] else None,
                      "artists": len({it.artist for it in items}), "genres": len({g for it in items for g in it.genres})},
        "queries": {k: sum(q.kind == k for q in queries) for k in kinds},
        "first_seconds": args.first_seconds,
        "window_s": args.window_s,
        "chance": chance,
        "results": results,
        "decode_ms_median": float(np.median(decode_ms)) if decode_ms else None,
        "catalogue_pass_s": round(catalogue_s, 1),
        "fingerprint_build_s": round(fp_build_s, 1),
        "heads": {n: c.head.meta for n, c in emb.items()},
        "service": service_res,
        "what_if": what_if,
        "details": rows,
    }
    _print_table(report, kinds)
    for k, v in what_if.items():
        print(f"what if: {k} = {_fmt(v)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
        print(f"wrote {args.json}")
    if fp_index is not None:
        fp_index.close()
    return 0


def _windows(offsets: list[float], window_s: float, hop: float, duration) -> list[tuple[int, int]]:
    """Catalogue-grid windows ``(first patch, n patches)`` of ``window_s`` centred on each query
    (10 s from ``offset_s``), merged when they overlap; the middle of the track when it has no query."""
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


def _chance(labels: list[set[str]]) -> float:
    """Expected P@k of random neighbours."""
    n = len(labels)
    vals = []
    for i in range(n):
        if labels[i]:
            vals.append(sum(bool(labels[i] & labels[j]) for j in range(n) if j != i) / max(1, n - 1))
    return float(np.mean(vals)) if vals else float("nan")


def _service_path(settings, queries: list[Query]) -> dict[str, Any]:
    """Every query through ``SynestheteService.recommend`` (decode + fingerprint + embed + Milvus)."""
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


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}" if v < 10 else f"{v:.0f}"
    return str(v)


def _print_table(report: dict[str, Any], kinds: list[str]) -> None:
    cols = [f"{k}_top1" for k in kinds] + [f"{k}_top5" for k in kinds] + [
        "p5_artist", "p5_genre", "p5_genre_artist_filtered", "p5_artist_x_baseline", "p5_genre_x_baseline",
        "latency_ms_median"]
    head = ["config", *cols]
    lines = [head]
    for name, r in report["results"].items():
        flag = " (*)" if r.get("scored_on_training_labels") else ""
        lines.append([name + flag, *[_fmt(r.get(c)) for c in cols]])
    if report.get("service") and "error" not in report["service"]:
        s = report["service"]
        lines.append(["service.recommend", *[_fmt(s.get(c)) for c in cols]])
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
    for j, row in enumerate(lines):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    print(f"chance: P@5 artist {report['chance']['p5_artist']:.3f}, genre {report['chance']['p5_genre']:.3f}; "
          f"queries {report['queries']}; decode {report['decode_ms_median']:.0f} ms median")
    if any(r.get("scored_on_training_labels") for r in report["results"].values()):
        print("(*) scored on labels the head was trained on: not a figure for the docs")
    if report.get("service") and "error" in report["service"]:
        print(f"service path: {report['service']['error']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="synesthete-index eval")
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
