"""The figures of an evaluation: nearest-neighbour precision, top-k hits, chance levels.

All cosine, all exact (numpy): the figures must not depend on an index's recall.
"""

from __future__ import annotations

from typing import Any

import numpy as np


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
    return similarity_report_from_rows(lambda i: v @ v[i], len(v), artists, genres, k, queries)


def similarity_report_from_matrix(sims: np.ndarray, artists: list[str], genres: list[set[str]], k: int = 5,
                                  queries: np.ndarray | None = None) -> dict[str, float]:
    """:func:`similarity_report` for a precomputed ``(n, n)`` similarity matrix (larger = closer).

    For methods that give similarities, not vectors: Musly's distances (negated), mutual
    proximity (Schnitzer et al. 2012).  Only row ``i`` is read for query ``i``.
    """
    s = np.asarray(sims, np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"expected a square similarity matrix, got {s.shape}")
    return similarity_report_from_rows(lambda i: s[i].copy(), len(s), artists, genres, k, queries)


def similarity_report_from_rows(row: Any, n: int, artists: list[str], genres: list[set[str]], k: int = 5,
                                queries: np.ndarray | None = None) -> dict[str, float]:
    """The figures from ``row(i) -> (n,)`` similarities of track ``i`` to every track (one scorer for all)."""
    q_idx = np.arange(n) if queries is None else np.asarray(queries, dtype=int)
    art = np.asarray([a or f"\0{i}" for i, a in enumerate(artists)], dtype=object)
    a_hit, g_hit, gf_hit, a_ch, g_ch, gf_ch = [], [], [], [], [], []
    for i in q_idx:
        sims = np.asarray(row(i), np.float64)
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


def chance(labels: list[set[str]]) -> float:
    """Expected P@k of random neighbours."""
    n = len(labels)
    vals = []
    for i in range(n):
        if labels[i]:
            vals.append(sum(bool(labels[i] & labels[j]) for j in range(n) if j != i) / max(1, n - 1))
    return float(np.mean(vals)) if vals else float("nan")
