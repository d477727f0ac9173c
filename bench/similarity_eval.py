"""Similarity candidates side by side on several real corpora, scored on held-out artists (issue 29).

    python bench/similarity_features.py --corpus ../devdata/set_a --out ../devdata/feat_a --max-patches 0  # once
    python bench/similarity_eval.py --corpus ../devdata/set_a --features ../devdata/feat_a \\
        --corpus ../devdata/set_b --features ../devdata/feat_b [--max-patches 24] [--json out.json]

``--corpus`` and ``--features`` pair up in order (a corpus in the dev layout: ``tracks.csv`` in
the Kaggle columns + ``catalogue/<track_id>.*``; its features cached by
``bench/similarity_features.py`` outside the repository).  For every candidate, per corpus
and as the track-weighted mean over them, it prints same-artist P@5, same-genre P@5 and the
artist-filtered genre P@5 (the query's own artist removed from its ranking: Pampalk et al.
2005, Flexer 2007), every track a query ranked against all others (cosine), with chance.

Candidates (see docs/quality.md for why each is here):

- ``mfcc``: MFCC + chroma + contrast statistics, z-scored (``index_builder.evaluation.baseline``);
- ``musly``: Musly's timbre model (libmusly via ``pymusly``; Schnitzer et al. 2011), whole
  tracks, its style set on the corpus (label-free, as a build would); a peer, not a candidate
  for the default (``--no-musly`` skips it; decoding is cached in ``<features>/musly_timbre.npz``);
- ``msd plain``: the backbone's own track vector, the mean of musicnn MSD ``mean_pool`` over
  the track's patches (Pons & Serra 2019): **the reference every ratio is taken against**;
- ``msd z``: the same, z-scored with the catalogue's statistics;
- ``default (...)``: what ``synesthete-index build`` fits now (``engine.similarity``, the
  settings' defaults);
- ``msd+mtt means``: MSD and MTT ``mean_pool`` and ``penultimate`` track means, each block
  z-scored and L2-normalised, equal weights;
- ``... + spread w``: the same plus the MSD ``mean_pool`` spread (std over patches) as a block
  of weight ``w`` relative to a mean block (``--spread-weights``).

Anything fitted (even a z-score) is scored on **held-out artists**: ``--folds`` folds split by
artist; each fold's model is fitted on the other artists' tracks only, and the fold's tracks
are the queries, ranked against the whole corpus.  The fitted figure is the query-weighted
mean over folds; ``min fold`` is the worst fold's same-artist P@5 as a multiple of the plain
MSD figure on the same queries (the rule of issue 29: a default must never lose a fold).
Unfitted candidates are scored on all tracks once (their fold figures are subsets of that).

The decision rule (:func:`passes`): a candidate can be the default only if its held-out
same-artist P@5 is >= 1.10x plain MSD on **every** corpus and it loses no fold; otherwise the
default is ``msd z``.  Patches per track are printed with each table (``--max-patches``: an
evenly spread sample of the cached whole-track patches, 0 = all).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchutil, also when loaded from a test

from benchutil import corpus_labels  # noqa: E402
from engine.similarity import SimilarityConfig, fit_track_encoder  # noqa: E402
from index_builder.evaluation.metrics import (  # noqa: E402
    similarity_report,
    similarity_report_from_matrix,
    similarity_report_from_rows,
)

#: a candidate's same-artist P@5 must be at least this multiple of plain MSD on every corpus
MIN_RATIO = 1.10
FIGURES = ("artist_p5", "genre_p5", "genre_p5_artist_filtered")


@dataclass
class Corpus:
    """One corpus's tracks, labels and cached per-patch features."""

    name: str
    path: Path
    ids: list[str]
    artists: list[str]
    genres: list[set[str]]
    feats: list[dict[str, np.ndarray]]
    patches: float = 0.0  # mean patches per track after --max-patches
    folds: list[np.ndarray] = field(default_factory=list)


def _spread_rows(x: np.ndarray, n: int) -> np.ndarray:
    """``n`` evenly spread rows of ``x`` (all when ``n`` is 0 or ``x`` has no more)."""
    if n <= 0 or len(x) <= n:
        return x
    return x[np.linspace(0, len(x) - 1, n).round().astype(int)]


def load(corpus: Path, feats_dir: Path, max_patches: int = 0) -> Corpus:
    """Tracks of ``corpus/tracks.csv`` that have a features file (one genre set per track)."""
    rows = corpus_labels(corpus)
    ids = sorted(t for t in rows if (feats_dir / f"{t}.npz").exists())
    if not ids:
        raise SystemExit(f"no features for {corpus} in {feats_dir}: run bench/similarity_features.py first")
    feats = []
    for t in ids:
        with np.load(feats_dir / f"{t}.npz") as z:
            feats.append({k: (z[k] if k == "mfcc_stats" else _spread_rows(z[k], max_patches)) for k in z.files})
    artists = {rows[t]["artist"] for t in ids}
    if len(ids) < 3 or len(artists) < 2:  # a fold needs other artists to fit on, P@5 needs neighbours
        raise SystemExit(f"{corpus}: {len(ids)} tracks by {len(artists)} artists with features; leave-artists-out "
                         "folds need at least 3 tracks by 2 artists")
    patches = float(np.mean([len(f["msd_mean_pool"]) for f in feats]))
    return Corpus(corpus.name, corpus, ids, [rows[t]["artist"] for t in ids], [rows[t]["genres"] for t in ids],
                  feats, patches)


def artist_folds(artists: list[str], n: int, seed: int) -> list[np.ndarray]:
    """``n`` folds of track indices, split by artist (every track of an artist in one fold)."""
    names = sorted(set(artists))
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    groups = [set(names[i::n]) for i in range(n)]
    return [np.array([i for i, a in enumerate(artists) if a in g]) for g in groups if g]


def _z(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    """``x`` standardised with the mean and std of its ``train`` rows (the catalogue's statistics)."""
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
    return (x - mu) / sd


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def track_means(c: Corpus, key: str) -> np.ndarray:
    return np.stack([f[key].mean(0) for f in c.feats]).astype(np.float64)


def track_spreads(c: Corpus, key: str) -> np.ndarray:
    return np.stack([f[key].std(0) for f in c.feats]).astype(np.float64)


def block_vectors(blocks: list[tuple[np.ndarray, float]], train: np.ndarray) -> np.ndarray:
    """Each ``(n, d)`` block z-scored on the ``train`` rows, L2-normalised, times its weight; concatenated."""
    return np.concatenate([w * _l2(_z(x, train)) for x, w in blocks], axis=1)


#: a candidate: ``(corpus, train row indices) -> (n, D) vectors`` or ``("sims", (n, n) matrix)``
Candidate = Callable[[Corpus, np.ndarray], np.ndarray | tuple[str, np.ndarray]]


def _msd_plain(c: Corpus, train: np.ndarray) -> np.ndarray:
    return track_means(c, "msd_mean_pool")


def _msd_z(c: Corpus, train: np.ndarray) -> np.ndarray:
    return _z(track_means(c, "msd_mean_pool"), train)


def _mfcc(c: Corpus, train: np.ndarray) -> np.ndarray:
    return _z(np.stack([f["mfcc_stats"] for f in c.feats]).astype(np.float64), train)


def _means_blocks(c: Corpus) -> list[tuple[np.ndarray, float]]:
    return [(track_means(c, f"{ds}_{layer}"), 1.0) for ds in ("msd", "mtt") for layer in ("mean_pool", "penultimate")]


def _msd_mtt(spread: float) -> Candidate:
    def vectors(c: Corpus, train: np.ndarray) -> np.ndarray:
        blocks = _means_blocks(c)
        if spread > 0:
            blocks.append((track_spreads(c, "msd_mean_pool"), spread))
        return block_vectors(blocks, train)
    return vectors


def feature_key(block: str) -> str:
    """A descriptor block's cached array: ``mean_pool`` -> ``msd_mean_pool``; ``mtt_...`` as is."""
    return block if block.startswith(("msd_", "mtt_")) else f"msd_{block}"


def _product(cfg: SimilarityConfig) -> Candidate:
    """What the build fits with ``cfg``, through ``engine.similarity`` itself."""
    def vectors(c: Corpus, train: np.ndarray) -> np.ndarray:
        segs = [np.concatenate([f[feature_key(name)] for name, _ in cfg.blocks], axis=1) for f in c.feats]
        return fit_track_encoder([segs[i] for i in train], cfg).track_vectors(segs)
    return vectors


def _mutual_proximity(cand: Candidate) -> Candidate:
    """``cand``'s vectors ranked by mutual proximity (``engine.hubness``, the product's code), its
    statistics fitted on the training tracks, as a build fits them on the catalogue."""
    from engine.hubness import MutualProximity

    def sims(c: Corpus, train: np.ndarray) -> tuple[str, np.ndarray]:
        x = _l2(np.asarray(cand(c, train), np.float64))
        mp = MutualProximity.fit(x[train], "bench")
        cos = x @ x.T
        return "sims", np.stack([mp.scores(x[i], x, cos[i]) for i in range(len(x))])
    return sims


#: musicnn MSD and MTT, ``mean_pool`` and ``penultimate`` each: the both-models layout
BOTH_MODELS = (("mean_pool", 753), ("penultimate", 200), ("mtt_mean_pool", 753), ("mtt_penultimate", 200))


def musly_similarities(c: Corpus, cache: Path) -> np.ndarray:
    """Musly timbre similarities ``(n, n)`` (negated distances) of whole tracks; analyses cached in ``cache``.

    Decoded with ffmpeg (``engine.audio.decode``) to 22,050 Hz mono, as Musly expects; the
    jukebox's style is set on every track of the corpus (label-free).
    """
    import pymusly

    from engine.audio import decode, limits_from_settings
    from engine.errors import SynestheteError
    from engine.settings import Settings

    jb = pymusly.MuslyJukebox("timbre")
    stored: dict[str, bytes] = {}
    if cache.exists():
        with np.load(cache) as z:
            stored = {k: z[k].tobytes() for k in z.files}  # b"": analysed before and failed
    missing = [t for t in c.ids if t not in stored]
    if missing:
        limits = limits_from_settings(Settings.from_env(), for_catalogue=True)
        for k, t in enumerate(missing, 1):
            src = next((c.path / "catalogue").glob(f"{t}.*"))
            try:
                audio = decode(src, 22050, limits).samples
                stored[t] = bytes(jb.serialize_track(jb.track_from_audiodata(audio.astype(np.float32).tolist())))
            except (SynestheteError, pymusly.MuslyError) as exc:  # silent, too short, undecodable
                print(f"  musly: {t} not analysed ({type(exc).__name__}: {exc}); it is nobody's neighbour",
                      flush=True)
                stored[t] = b""  # remembered as failed: not analysed again
            if k % 25 == 0:
                print(f"  musly: {k}/{len(missing)} tracks of {c.name} analysed", flush=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **{k: np.frombuffer(v, np.uint8) for k, v in stored.items()})
        tmp.replace(cache)
    ok = [i for i, t in enumerate(c.ids) if stored.get(t)]
    tracks = [jb.deserialize_track(stored[c.ids[i]]) for i in ok]
    if len(tracks) < 2:
        raise SystemExit(f"musly analysed {len(tracks)} tracks of {c.name}: nothing to compare (--no-musly)")
    jb.set_style(tracks)
    pairs = list(zip(range(len(tracks)), tracks))
    jb.add_tracks(pairs)
    sims = np.full((len(c.ids), len(c.ids)), -np.inf)  # a track Musly could not analyse: nobody's neighbour
    sims[np.ix_(ok, ok)] = -np.array([jb.compute_similarity(p, pairs) for p in pairs], np.float64)
    return sims


def _report(out: np.ndarray | tuple[str, np.ndarray], c: Corpus, queries: np.ndarray | None) -> dict:
    if isinstance(out, tuple):
        return similarity_report_from_matrix(out[1], c.artists, c.genres, k=5, queries=queries)
    return similarity_report(out, c.artists, c.genres, k=5, queries=queries)


def pooled(reports: list[dict]) -> dict:
    """Fold reports merged, each weighted by its number of queries."""
    w = np.asarray([r["n_queries"] for r in reports], float)
    return {k: float(np.nansum([r[k] * x for r, x in zip(reports, w)]) / w.sum()) if k != "n_queries"
            else int(w.sum()) for k in reports[0]}


def score(name: str, cand: Candidate, c: Corpus, fitted: bool, plain_folds: list[dict]) -> dict:
    """One candidate on one corpus: held-out figures (fitted) or all-track figures, and the worst fold's ratio."""
    everyone = np.arange(len(c.ids))
    if not fitted:
        r = _report(cand(c, everyone), c, None)
        folds = [_report(cand(c, everyone), c, q) for q in c.folds] if plain_folds else []
    else:
        folds = [_report(cand(c, np.setdiff1d(everyone, q)), c, q) for q in c.folds]
        r = pooled(folds)
    if plain_folds and folds:
        r["min_fold_ratio"] = float(min(f["artist_p5"] / max(p["artist_p5"], 1e-9)
                                        for f, p in zip(folds, plain_folds)))
    r["fitted"] = fitted
    return r


def passes(ratios: list[float], min_fold: list[float]) -> bool:
    """Issue 29's rule: >= :data:`MIN_RATIO` x plain MSD on every corpus, and no fold below plain."""
    return bool(ratios) and min(ratios) >= MIN_RATIO and min(min_fold, default=1.0) >= 1.0


def product_config() -> SimilarityConfig:
    """What ``synesthete-index build`` fits with the current settings (``SYNESTHETE_SIMILARITY_MODELS``,
    ``..._SPREAD_WEIGHT``, ``..._METHOD``).  Before this, the table's "default" row was
    ``SimilarityConfig()``, the class's own defaults (MSD alone, spread x1): the previous default."""
    from engine.settings import Settings

    s = Settings.from_env()
    return SimilarityConfig(method=s.similarity_method, blocks=BOTH_MODELS if s.similarity_models == "msd+mtt"
                            else BOTH_MODELS[:2], spread_weight=s.similarity_spread_weight)


def candidates(args: argparse.Namespace) -> list[tuple[str, Candidate, bool]]:
    """``(name, candidate, fitted)`` in table order; the first is the reference (plain MSD)."""
    default = product_config()
    out: list[tuple[str, Candidate, bool]] = [
        ("msd plain (reference)", _msd_plain, False),
        ("mfcc", _mfcc, True),
        ("msd z", _msd_z, True),
        ("previous default (pooled msd, spread x1)", _product(SimilarityConfig()), True),
        ("default", _product(default), True),
        ("default + mutual proximity", _mutual_proximity(_product(default)), True),
        ("msd+mtt means", _msd_mtt(0.0), True),
    ]
    out += [(f"msd+mtt means + spread w{w:g}", _msd_mtt(w), True) for w in args.spread_weights]
    # the same family through the product's code (engine.similarity: centred, PCA to the collection's dim)
    out += [(f"pooled msd+mtt spread w{w:g} (engine)", _product(SimilarityConfig(blocks=BOTH_MODELS, spread_weight=w)),
             True) for w in (0.0, *args.spread_weights)]
    return out


def product_report(c: Corpus, index_dir: Path) -> dict:
    """The figures of what a person gets: ``SynestheteService.similar_to`` on an index built from ``c``.

    Every track of ``c`` that the index holds is a query; ``similar_to(diverse=False)`` (the raw
    ranking, no per-artist cap) returns enough neighbours for the artist-filtered figure
    (5 + the query's own artist's other tracks).  The index's model is fitted on all its tracks
    (label-free, as every build does), so it is compared with the same candidate fitted on all
    tracks from the cached features (``default ... fitted on all``), not with held-out folds.
    Raises ``SystemExit`` when the index cannot be opened (one sentence, the cause).
    """
    import dataclasses

    from engine.errors import SynestheteError
    from engine.service import SynestheteService
    from engine.settings import Settings

    settings = dataclasses.replace(Settings.from_env(), data_dir=index_dir.resolve())
    try:
        svc = SynestheteService(settings, read_only=True)
    except SynestheteError as exc:
        raise SystemExit(f"cannot open the index in {index_dir}: {exc}") from exc
    pos = {t: i for i, t in enumerate(c.ids)}
    own = {a: sum(x == a for x in c.artists) - 1 for a in set(c.artists)}
    rows: dict[int, np.ndarray] = {}
    try:
        for i, t in enumerate(c.ids):
            try:
                rec = svc.similar_to(t, k=min(len(c.ids) - 1, 5 + own[c.artists[i]]), diverse=False)
            except SynestheteError:  # not in the index (failed to build): not a query
                continue
            row = np.full(len(c.ids), -np.inf)
            for rank, r in enumerate(rec.results):
                if r.track.track_id in pos:
                    row[pos[r.track.track_id]] = -rank
            rows[i] = row
    finally:
        svc.close()
    if not rows:
        raise SystemExit(f"the index in {index_dir} holds none of {c.name}'s tracks")
    queries = np.array(sorted(rows))
    r = similarity_report_from_rows(lambda i: rows[i], len(c.ids), c.artists, c.genres, k=5, queries=queries)
    r["fitted"] = False
    r["model_id"] = svc.model_id
    return r


def _line(name: str, r: dict, ratio: float | None) -> str:
    rt = f"{ratio:5.2f}x" if ratio is not None else "      "
    mf = f"{r['min_fold_ratio']:5.2f}x" if "min_fold_ratio" in r else "     -"
    return (f"  {name:36s} {r['artist_p5']:.3f}  {r['genre_p5']:.3f}  {r['genre_p5_artist_filtered']:.3f}"
            f"   {rt}  {mf}")


def run(args: argparse.Namespace) -> dict:
    if len(args.corpus) != len(args.features):
        raise SystemExit("give one --features per --corpus, in the same order")
    if args.index and len(args.index) != len(args.corpus):
        raise SystemExit("give one --index per --corpus, in the same order ('-' for a corpus without one)")
    indexes = [None if str(d) == "-" else d for d in (args.index or [None] * len(args.corpus))]
    corpora = [load(cp, fp, args.max_patches) for cp, fp in zip(args.corpus, args.features)]
    cands = candidates(args)
    table: dict[str, dict] = {}
    head = f"  {'candidate':36s} artist genre  g|af    xplain  min fold"
    for c, feats_dir, index_dir in zip(corpora, args.features, indexes):
        c.folds = artist_folds(c.artists, args.folds, args.seed)
        print(f"\n== {c.name}: {len(c.ids)} tracks, {len(set(c.artists))} artists, "
              f"{len({g for s in c.genres for g in s})} genres, {c.patches:.0f} patches a track (mean), "
              f"{len(c.folds)} leave-artists-out folds")
        print(head)
        plain_folds = [_report(_msd_plain(c, np.arange(len(c.ids))), c, q) for q in c.folds]
        rows: dict[str, dict] = {}
        t0 = time.perf_counter()
        for name, cand, fitted in cands:  # --in-sample: label-free fits on every track, as a build does
            rows[name] = score(name, cand, c, fitted and not getattr(args, "in_sample", False), plain_folds)
        if not args.no_musly:
            sims = musly_similarities(c, feats_dir / "musly_timbre.npz")
            rows["musly (whole tracks)"] = score("musly", lambda _c, _t: ("sims", sims), c, False, plain_folds)
        if index_dir is not None:  # issue 29 step 3: the table and the product must agree
            rows["default, fitted on all tracks"] = score("", _product(product_config()), c, False, plain_folds)
            rows["product: similar_to on the built index"] = product_report(c, index_dir)
        ref = rows["msd plain (reference)"]["artist_p5"]
        for name, r in rows.items():
            r["ratio"] = r["artist_p5"] / max(ref, 1e-9)
            print(_line(name, r, r["ratio"]))
        r0 = rows["msd plain (reference)"]
        print(f"  {'chance':36s} {r0['artist_chance']:.3f}  {r0['genre_chance']:.3f}  "
              f"{r0['genre_artist_filtered_chance']:.3f}   ({time.perf_counter() - t0:.0f} s)")
        table[c.name] = {"tracks": len(c.ids), "artists": len(set(c.artists)), "patches": c.patches, "rows": rows}
    print(f"\n== track-weighted mean over {len(corpora)} corpora; rule: >= {MIN_RATIO:.2f}x plain on every "
          "corpus and no fold below plain")
    print(head + "  worst corpus  default?")
    summary: dict[str, dict] = {}
    w = np.asarray([table[c.name]["tracks"] for c in corpora], float)
    for name in table[corpora[0].name]["rows"]:
        if not all(name in table[c.name]["rows"] for c in corpora):
            continue  # a row only some corpora have (the product, where an index was given)
        per = [table[c.name]["rows"][name] for c in corpora]
        mean = {k: float(np.dot([r[k] for r in per], w) / w.sum()) for k in (*FIGURES, "ratio")}
        folds = [r["min_fold_ratio"] for r in per if "min_fold_ratio" in r]
        if folds:
            mean["min_fold_ratio"] = min(folds)
        ok = passes([r["ratio"] for r in per], folds)
        eligible = not name.startswith(("mfcc", "musly"))  # peers, never the default: only musicnn methods
        summary[name] = {**mean, "worst_ratio": min(r["ratio"] for r in per), "passes": ok and eligible}
        print(_line(name, mean, mean["ratio"]) + f"  {summary[name]['worst_ratio']:5.2f}x      "
              f"{'yes' if ok and eligible else '-'}")
    return {"command": " ".join(sys.argv), "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
            "folds": args.folds, "seed": args.seed, "max_patches": args.max_patches,
            "corpora": table, "mean": summary}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, action="append", required=True, help="a corpus dir (repeat)")
    p.add_argument("--features", type=Path, action="append", required=True,
                   help="its cached features dir (repeat, in --corpus order)")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-patches", type=int, default=0, help="patches per track, evenly spread (0 = all cached)")
    p.add_argument("--spread-weights", type=float, nargs="*", default=[0.5, 1.0])
    p.add_argument("--no-musly", action="store_true", help="skip Musly (needs pymusly, a dev dependency)")
    p.add_argument("--index", type=Path, action="append",
                   help="an index built from that corpus (synesthete-index build; repeat in --corpus order, "
                        "'-' for none): adds what similar_to gives on it")
    p.add_argument("--in-sample", action="store_true",
                   help="fit every (label-free) candidate on all tracks, as a build does, instead of held-out "
                        "artists: what a person gets; 'min fold' is then the worst fold's queries")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    out = run(args)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
