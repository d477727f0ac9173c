"""bench/similarity_eval.py: several corpora, leave-artists-out folds, the default's rule (issue 29).

Synthetic features with a known structure stand in for a corpus (the real tables are in
docs/quality.md); Musly runs on real audio written by ffmpeg.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def se():
    spec = importlib.util.spec_from_file_location("similarity_eval", ROOT / "bench" / "similarity_eval.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["similarity_eval"] = mod
    spec.loader.exec_module(mod)
    return mod


def _corpus(root: Path, name: str, seed: int, artists: int = 8, per: int = 5) -> tuple[Path, Path]:
    """A corpus whose artists differ in MTT's blocks and barely in MSD's, so both-models beats MSD alone."""
    rng = np.random.default_rng(seed)
    corpus, feats = root / name, root / f"feat_{name}"
    (corpus / "catalogue").mkdir(parents=True)
    feats.mkdir()
    rows = []
    for a in range(artists):
        centre = {k: rng.normal(0, 1, d) for k, d in (("msd_mean_pool", 753), ("msd_penultimate", 200),
                                                      ("mtt_mean_pool", 753), ("mtt_penultimate", 200))}
        for t in range(per):
            tid = f"{name}{a:02d}{t:02d}"
            rows.append({"genre": "rock" if a % 2 else "jazz", "artist_name": f"artist {a}", "track_name": tid,
                         "track_id": tid, "popularity": 50})
            arrays = {"mfcc_stats": rng.normal(0, 1, 40).astype(np.float32)}
            for k, c in centre.items():
                signal = 0.06 if k.startswith("msd") else 0.6  # MSD hears the artist faintly, MTT clearly
                arrays[k] = (signal * c + rng.normal(0, 1, (12, len(c)))).astype(np.float32)
            np.savez(feats / f"{tid}.npz", **arrays)
    with open(corpus / "tracks.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return corpus, feats


def _args(pairs, **kw) -> argparse.Namespace:
    base = dict(corpus=[c for c, _ in pairs], features=[f for _, f in pairs], folds=3, seed=0, max_patches=0,
                spread_weights=[0.5], no_musly=True, json=None, index=None)
    return argparse.Namespace(**{**base, **kw})


def test_two_corpora_each_and_their_track_weighted_mean(se, tmp_path: Path, capsys) -> None:
    pairs = [_corpus(tmp_path, "a", 1), _corpus(tmp_path, "b", 2, artists=6)]
    out = se.run(_args(pairs, max_patches=4))
    text = capsys.readouterr().out
    assert set(out["corpora"]) == {"a", "b"} and "4 patches a track" in text and "3 leave-artists-out folds" in text
    a, b = (out["corpora"][k]["rows"] for k in ("a", "b"))
    for rows in (a, b):
        assert rows["msd plain (reference)"]["ratio"] == pytest.approx(1.0)
        assert rows["msd z"]["fitted"] and not rows["msd plain (reference)"]["fitted"]
        assert rows["msd+mtt means"]["artist_p5"] > rows["msd plain (reference)"]["artist_p5"] + 0.2
    # every track is a held-out query exactly once over the folds
    assert a["msd+mtt means"]["n_queries"] == 40 and b["msd z"]["n_queries"] == 30
    mean = out["mean"]["msd+mtt means"]
    want = (a["msd+mtt means"]["artist_p5"] * 40 + b["msd+mtt means"]["artist_p5"] * 30) / 70
    assert mean["artist_p5"] == pytest.approx(want)
    assert mean["passes"] and not out["mean"]["msd plain (reference)"]["passes"]
    assert not out["mean"]["mfcc"]["passes"]  # not a musicnn method: never the default


def test_the_rule_takes_the_worst_corpus_and_the_worst_fold(se) -> None:
    assert se.passes([1.2, 1.1], [1.0, 1.3])
    assert not se.passes([1.5, 1.09], [1.2])  # one corpus below 1.10x
    assert not se.passes([1.3, 1.3], [0.99])  # one fold below plain
    assert not se.passes([], [])


def test_folds_keep_every_artist_in_one_fold(se) -> None:
    artists = [f"a{i % 7}" for i in range(40)]
    folds = se.artist_folds(artists, 3, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(40))
    for f in folds:
        inside = {artists[i] for i in f}
        assert not any(artists[j] in inside for g in folds if g is not f for j in g)


def test_fitted_statistics_come_from_the_training_artists_only(se) -> None:
    x = np.array([[0.0], [2.0], [100.0]])
    z = se._z(x, np.array([0, 1]))
    assert z[:2, 0] == pytest.approx([-1.0, 1.0], abs=1e-4) and z[2, 0] > 90


def test_musly_scores_real_audio(se, tmp_path: Path) -> None:
    pytest.importorskip("pymusly")
    from tests.audiogen import SR, encode, synthetic_track

    corpus = tmp_path / "m"
    (corpus / "catalogue").mkdir(parents=True)
    ids = [f"t{i}" for i in range(4)]
    for i, t in enumerate(ids):
        encode(synthetic_track(seed=i // 2, seconds=20.0), corpus / "catalogue" / f"{t}.mp3", SR)
    c = se.Corpus("m", corpus, ids, ["x", "x", "y", "y"], [set()] * 4, [])
    cache = tmp_path / "musly.npz"
    sims = se.musly_similarities(c, cache)
    assert sims.shape == (4, 4) and cache.exists()
    assert sims[0, 1] > sims[0, 2] and sims[2, 3] > sims[2, 0]  # the same synthetic piece is closest
    assert np.allclose(se.musly_similarities(c, cache), sims)  # from the cache, the same answer
    # bad input: a silent track is reported and nobody's neighbour, the others still compared
    encode(np.zeros(SR * 5, np.float32), corpus / "catalogue" / "silent.mp3", SR)
    c2 = se.Corpus("m", corpus, [*ids, "silent"], ["x", "x", "y", "y", "z"], [set()] * 5, [])
    sims2 = se.musly_similarities(c2, cache)
    assert np.all(np.isneginf(sims2[4])) and np.all(np.isneginf(sims2[:, 4]))
    assert np.allclose(sims2[:4, :4], sims)


def test_a_corpus_too_small_for_folds_is_refused_in_one_sentence(se, tmp_path: Path) -> None:
    corpus, feats = _corpus(tmp_path, "tiny", 3, artists=1, per=2)
    with pytest.raises(SystemExit, match="at least 3 tracks by 2 artists"):
        se.run(_args([(corpus, feats)]))
