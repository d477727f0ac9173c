"""Similarity candidates side by side, scored on held-out artists (issue 13's measuring tool).

    python bench/similarity_features.py --corpus /work/corpus --out /work/simfeat   # once, cached
    python bench/similarity_eval.py --corpus /work/corpus --features /work/simfeat [--json out.json]

For every candidate it reports, over all catalogue tracks as queries:
- same-artist P@5, same-genre P@5 (neighbours among all other tracks, cosine),
- artist-filtered genre P@5 (the query's own artist's tracks removed from the ranking),
each beside the MFCC baseline and the pretrained features of the same run, with chance.

Learned candidates are scored two ways: *transductive* (fitted on the whole catalogue
without labels, as ``synesthete-index build`` does) and *held out* (fitted on the
tracks of the other artists only, in ``--folds`` folds split by artist; the queries
are the held-out artists' tracks, ranked against the whole catalogue).  A candidate
that only wins transductively has learned the catalogue, not similarity.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.similarity import (  # noqa: E402
    SimilarityConfig,
    database_side_augmentation,
    fit_track_encoder,
)
from index_builder.evaluation.metrics import similarity_report  # noqa: E402


def load(corpus: Path, feats_dir: Path) -> tuple[list[str], list[str], list[set[str]], list[dict]]:
    rows: dict[str, dict] = {}
    with open(corpus / "tracks.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            d = rows.setdefault(r["track_id"], {"artist": r["artist_name"], "genres": set()})
            if r.get("genre"):
                d["genres"].add(r["genre"])
    ids = sorted(t for t in rows if (feats_dir / f"{t}.npz").exists())
    feats = []
    for t in ids:
        with np.load(feats_dir / f"{t}.npz") as z:
            feats.append({k: z[k] for k in z.files})
    return ids, [rows[t]["artist"] for t in ids], [rows[t]["genres"] for t in ids], feats


def z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / (x.std(0) + 1e-6)


def l2(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def descriptors(f: dict, cfg: SimilarityConfig) -> np.ndarray:
    """Segment descriptors of one track in the backbone's layout (``msd_<block>`` arrays)."""
    return np.concatenate([f[f"msd_{name}"] for name, _ in cfg.blocks], axis=1)


def contrastive_vectors(segs: list[np.ndarray], train: list[int], epochs: int = 150, views: int = 4,
                        seed: int = 0) -> np.ndarray:
    """The learned candidate: a small MLP head trained label-free on the ``train`` tracks.

    COLA/CLMR-style positives: two means of ``views`` random segments of one track
    (Saeed et al. 2021; Spijkervet & Burgoyne 2021), InfoNCE against the batch's other
    tracks, plus the relational distillation term of ``index_builder.training.losses`` toward the
    standardised pretrained neighbourhoods (the regulariser the issue asks for).
    Returns unit vectors of every track (train and held out) from the trained head.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    from index_builder.training.losses import info_nce, relational_kd

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    allseg = np.concatenate([segs[i] for i in train])
    mu, sd = allseg.mean(0), allseg.std(0) + 1e-4
    zs = [((s - mu) / sd).astype(np.float32) for s in segs]
    dim = zs[0].shape[1]
    net = nn.Sequential(nn.Dropout(0.2), nn.Linear(dim, 512), nn.GELU(), nn.Linear(512, 128))
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-2)

    def view(idx):
        return torch.tensor(np.stack([zs[i][rng.choice(len(zs[i]), min(views, len(zs[i])), replace=False)].mean(0)
                                      for i in idx]))

    for _ in range(epochs):
        order = rng.permutation(train)
        for b in range(0, len(order), 64):
            idx = order[b:b + 64]
            if len(idx) < 4:
                continue
            a, p = F.normalize(net(view(idx)), dim=-1), F.normalize(net(view(idx)), dim=-1)
            teacher = F.normalize(torch.tensor(np.stack([zs[i].mean(0) for i in idx])), dim=-1)
            loss = info_nce(a, p, 0.1) + relational_kd(a, teacher, 0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        return F.normalize(net(torch.tensor(np.stack([z.mean(0) for z in zs]))), dim=-1).numpy()


def artist_folds(artists: list[str], n: int, seed: int) -> list[set[str]]:
    names = sorted(set(artists))
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    return [set(names[i::n]) for i in range(n)]


def pooled(reports: list[dict]) -> dict:
    """Fold reports merged, each weighted by its number of queries."""
    w = np.asarray([r["n_queries"] for r in reports], float)
    return {k: float(np.nansum([r[k] * x for r, x in zip(reports, w)]) / w.sum()) if k != "n_queries"
            else int(w.sum()) for k in reports[0]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--features", type=Path, required=True)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    p.add_argument("--dba-k", type=int, default=5)
    p.add_argument("--contrastive", action="store_true", help="also train and score the contrastive head (minutes)")
    args = p.parse_args()
    ids, artists, genres, feats = load(args.corpus, args.features)
    print(f"{len(ids)} tracks, {len(set(artists))} artists, {len({g for s in genres for g in s})} genres")
    report: dict[str, dict] = {}

    def score(name: str, vecs: np.ndarray, queries: np.ndarray | None = None) -> None:
        r = similarity_report(vecs, artists, genres, k=5, queries=queries)
        report[name] = r
        print(f"{name:44s} artist {r['artist_p5']:.3f}  genre {r['genre_p5']:.3f}  "
              f"genre|artist-filtered {r['genre_p5_artist_filtered']:.3f}", flush=True)

    mfcc = z(np.stack([f["mfcc_stats"] for f in feats]))
    score("mfcc-baseline", mfcc)
    for ds in ("msd", "mtt"):
        if f"{ds}_mean_pool" in feats[0]:
            pre = np.stack([f[f"{ds}_mean_pool"].mean(0) for f in feats])
            score(f"{ds} mean_pool (pretrained)", pre)
            score(f"{ds} mean_pool z-scored (pretrained)", z(pre))
            score(f"{ds} mean_pool z-scored +DBA", database_side_augmentation(l2(z(pre)), args.dba_k))

    candidates: dict[str, SimilarityConfig] = {
        "pooled (default)": SimilarityConfig(method="pooled"),
        "lda": SimilarityConfig(method="lda"),
        "lda mean_pool only": SimilarityConfig(method="lda", blocks=(("mean_pool", 753),)),
    }
    folds = artist_folds(artists, args.folds, args.seed)
    for name, cfg in candidates.items():
        segs = [descriptors(f, cfg) for f in feats]
        t0 = time.perf_counter()
        enc = fit_track_encoder(segs, cfg)
        fit_s = time.perf_counter() - t0
        vecs = enc.track_vectors(segs)
        score(f"{name} [transductive, fit {fit_s:.1f}s]", vecs)
        score(f"{name} +DBA [transductive]", database_side_augmentation(vecs, args.dba_k))
        held: list[tuple[dict, dict]] = []
        for fold in folds:
            train = [i for i, a in enumerate(artists) if a not in fold]
            test = np.array([i for i, a in enumerate(artists) if a in fold])
            v = fit_track_encoder([segs[i] for i in train], cfg).track_vectors(segs)
            held.append((similarity_report(v, artists, genres, queries=test),
                         similarity_report(database_side_augmentation(v, args.dba_k), artists, genres, queries=test)))
        for j, tag in enumerate(("", " +DBA")):
            report[f"{name}{tag} [held-out artists]"] = r = pooled([h[j] for h in held])
            print(f"{name + tag + ' [held-out artists]':44s} artist {r['artist_p5']:.3f}  genre {r['genre_p5']:.3f}  "
                  f"genre|artist-filtered {r['genre_p5_artist_filtered']:.3f}", flush=True)
    # the supervised genre term, learned on the training folds' labels only
    cfg = SimilarityConfig(supervised="genre", supervised_weight=0.5)
    segs = [descriptors(f, cfg) for f in feats]
    first_genre = [sorted(g)[0] if g else "" for g in genres]
    held = []
    for fold in folds:
        train = [i for i, a in enumerate(artists) if a not in fold]
        test = np.array([i for i, a in enumerate(artists) if a in fold])
        enc = fit_track_encoder([segs[i] for i in train], cfg, [first_genre[i] for i in train])
        held.append(similarity_report(enc.track_vectors(segs), artists, genres, queries=test))
    report["pooled + genre term (w 0.5) [held-out artists]"] = r = pooled(held)
    print(f"{'pooled + genre term [held-out artists]':44s} artist {r['artist_p5']:.3f}  genre {r['genre_p5']:.3f}  "
          f"genre|artist-filtered {r['genre_p5_artist_filtered']:.3f}", flush=True)
    if args.contrastive:
        cfg = SimilarityConfig()
        segs = [descriptors(f, cfg) for f in feats]
        score("contrastive head [transductive]", contrastive_vectors(segs, list(range(len(segs)))))
        held = []
        for fold in folds:
            train = [i for i, a in enumerate(artists) if a not in fold]
            test = np.array([i for i, a in enumerate(artists) if a in fold])
            held.append(similarity_report(contrastive_vectors(segs, train), artists, genres, queries=test))
        report["contrastive head [held-out artists]"] = r = pooled(held)
        print(f"{'contrastive head [held-out artists]':44s} artist {r['artist_p5']:.3f}  genre {r['genre_p5']:.3f}  "
              f"genre|artist-filtered {r['genre_p5_artist_filtered']:.3f}", flush=True)
    r0 = next(iter(report.values()))
    print(f"chance: artist {r0['artist_chance']:.3f}  genre {r0['genre_chance']:.3f}  "
          f"genre|artist-filtered {r0['genre_artist_filtered_chance']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
