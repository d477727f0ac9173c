"""index_builder.evaluate and index_builder.evaluation: metrics, MFCC baseline, vote, the whole run."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from engine.embed import l2n
from index_builder import evaluate as E
from index_builder.evaluation import BASELINE, PRETRAINED, SIMILARITY
from index_builder.evaluation.baseline import mfcc_stats, standardise
from index_builder.evaluation.data import limit_per_kind, read_queries, windows
from index_builder.evaluation.metrics import chance, precision_at_k, topk_hits
from index_builder.evaluation.vote import combined_ranking, service_decision, vote_ranking
from tests.audiogen import synthetic_track


def test_precision_at_k_on_two_clusters():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 4)) * 0.05 + np.array([1, 0, 0, 0])
    b = rng.normal(size=(6, 4)) * 0.05 + np.array([0, 1, 0, 0])
    v = np.concatenate([a, b])
    labels = [{"x"}] * 6 + [{"y"}] * 6
    assert precision_at_k(v, labels, k=5) == 1.0
    # shuffled labels: far from perfect
    mixed = [{"x"}, {"y"}] * 6
    assert precision_at_k(v, mixed, k=5) < 0.7
    # unlabelled items are not scored
    assert precision_at_k(v, labels[:6] + [set()] * 6, k=5) == 1.0
    # multi-label: sharing any label counts
    multi = [{"x", "z"}] * 6 + [{"y", "z"}] * 6
    assert precision_at_k(v, multi, k=5) == 1.0


def test_precision_at_k_excludes_self():
    v = np.eye(3)
    assert precision_at_k(v, [{"a"}, {"b"}, {"c"}], k=2) == 0.0


def test_topk_hits():
    ranks = [[1, 2, 3], [4, 5, 6], [7, 8, 9], []]
    truth = [1, 5, 0, 2]
    h = topk_hits(ranks, truth)
    assert h[1] == 0.25 and h[5] == 0.5


def test_chance_of_balanced_labels():
    labels = [{"a"}] * 5 + [{"b"}] * 5
    assert abs(chance(labels) - 4 / 9) < 1e-9


def test_queries_read_and_limited_per_kind(tmp_path):
    (tmp_path / "queries.csv").write_text("query_file,kind,track_id,offset_s\n"
                                          "q/a.wav,clean10,t1,6.0\nq/b.wav,clean10,t2,\nq/c.wav,phone10,t1,3\n")
    qs = read_queries(tmp_path / "queries.csv")
    assert [q.path for q in qs] == [tmp_path / "q" / n for n in ("a.wav", "b.wav", "c.wav")]
    assert qs[0].offset_s == 6.0 and np.isnan(qs[1].offset_s)
    assert [q.path.name for q in limit_per_kind(qs, 1)] == ["a.wav", "c.wav"]
    assert limit_per_kind(qs, None) == qs


def test_windows_centre_on_queries_and_merge():
    # a 9-s window around each query (its middle is offset + 5 s), on a 3-s grid
    assert windows([10.0], 9.0, 3.0, lambda: 100.0) == [(3, 3)]
    assert windows([10.0, 12.0], 9.0, 3.0, lambda: 100.0) == [(3, 4)]
    assert windows([10.0, 40.0], 9.0, 3.0, lambda: 100.0) == [(3, 3), (13, 3)]
    assert windows([float("nan")], 9.0, 3.0, lambda: 60.0) == [(8, 3)]  # no query: the middle


def test_vote_ranking_finds_the_consistent_track():
    rng = np.random.default_rng(1)
    cat = l2n(rng.normal(size=(30, 8)))
    owner = np.repeat(np.arange(3), 10)
    times = np.tile(np.arange(10) * 3.0, 3).astype(np.float32)
    # a query = segments 4..7 of track 1, slightly noisy, at 1.5-s hop (each catalogue patch twice)
    q = l2n(np.repeat(cat[14:18], 2, axis=0) + rng.normal(size=(8, 8)) * 0.05)
    qt = np.arange(8) * 1.5
    votes = vote_ranking(q, qt, cat, owner, times, 3.0, 5)
    assert votes[0][0] == 1 and abs(votes[0][2] - 12.0) <= 3.0


def test_service_decision_uses_the_service_rule():
    """The service's rule: uncalibrated, only a confident fingerprint answers; calibrated, the model decides."""
    from engine.settings import Settings

    rng = np.random.default_rng(3)
    cat = l2n(rng.normal(size=(30, 8)))
    table = (cat, np.repeat(np.arange(3), 10), np.tile(np.arange(10) * 3.0, 3).astype(np.float32))
    q = l2n(np.repeat(cat[14:18], 2, axis=0) + rng.normal(size=(8, 8)) * 0.01)
    qt = (np.arange(8) * 1.5).astype(np.float32)
    s = Settings()
    votes = vote_ranking(q, qt, *table, s.segment_hop_s, 1)
    fp_sure = [SimpleNamespace(track_key=2, confidence=0.95, offset_s=0.0, score=50, query_landmarks=900)]
    thr = s.identify_threshold
    assert service_decision(fp_sure, votes, len(q), 10.0, threshold=thr, calibration=None) == 2
    # uncalibrated, the vote never answers alone; one segment casts no vote
    assert service_decision([], votes, len(q), 10.0, threshold=thr, calibration=None) is None
    # a calibration that trusts the vote margin lets the vote answer
    from engine.identify import FEATURES, Calibration

    w = tuple(5.0 if f == "vote_margin" else 0.0 for f in FEATURES)
    trusting = Calibration(w, 0.0, (0.0,) * len(FEATURES), (1.0,) * len(FEATURES))
    assert service_decision([], votes, len(q), 10.0, threshold=thr, calibration=trusting) == 1
    assert service_decision([], votes, 1, 10.0, threshold=thr, calibration=trusting) is None
    assert combined_ranking(None, fp_sure, [(1, 0.9, 0.0)]) == [2, 1]


@pytest.fixture(scope="module")
def songs():
    sr = 16000
    return sr, [synthetic_track(s, 20.0, sr=sr) for s in (1, 2, 3)]


def test_mfcc_baseline_identifies_an_excerpt(songs):
    sr, tracks = songs
    cat = np.stack([mfcc_stats(t, sr) for t in tracks])
    assert cat.shape == (3, 78) and np.all(np.isfinite(cat))
    q = np.stack([mfcc_stats(t[5 * sr: 15 * sr], sr) for t in tracks])
    c, qq = standardise(cat, q)
    sims = l2n(qq) @ l2n(c).T
    assert list(np.argmax(sims, axis=1)) == [0, 1, 2]
    # short audio is padded, not an error
    assert mfcc_stats(tracks[0][:100], sr).shape == (78,)


def test_main_end_to_end_on_a_tiny_corpus(tmp_path, monkeypatch, capsys):
    """The whole eval on 4 generated tracks: every config row and the JSON come out."""
    import argparse
    import json

    import engine.features
    from tests import audiogen
    from tests.test_train import StatsBackbone

    monkeypatch.setattr(engine.features, "make_backbone", lambda settings, name=None: StatsBackbone())
    sr = 16000
    corpus = tmp_path / "corpus"
    (corpus / "catalogue").mkdir(parents=True)
    (corpus / "queries").mkdir()
    rows = ["track_id,track_name,artist_name,genre"]
    qrows = ["query_file,kind,track_id,offset_s"]
    for i in range(4):
        y = audiogen.synthetic_track(40 + i, 24.0, sr=sr)
        audiogen.encode(y, corpus / "catalogue" / f"trk{i}.wav", sr=sr)
        rows.append(f"trk{i},Song {i},Artist {i % 2},genre{i % 2}")
        audiogen.encode(y[6 * sr: 16 * sr], corpus / "queries" / f"trk{i}_clean10.wav", sr=sr)
        qrows.append(f"queries/trk{i}_clean10.wav,clean10,trk{i},6.0")
    (corpus / "tracks.csv").write_text("\n".join(rows) + "\n")
    (corpus / "queries.csv").write_text("\n".join(qrows) + "\n")
    parser = argparse.ArgumentParser()
    E.add_arguments(parser)
    out = tmp_path / "r.json"
    args = parser.parse_args(["--corpus", str(corpus), "--data-dir", str(tmp_path / "d"), "--json", str(out),
                              "--configs", "fingerprint", "musicnn", "combined", "--no-progress"])
    assert E.main(args) == 0
    rep = json.loads(out.read_text())
    res = rep["results"]
    assert set(res) == {"fingerprint", "musicnn", "combined", PRETRAINED, SIMILARITY, BASELINE}
    assert res["fingerprint"]["clean10_top1"] == 1.0
    assert res["combined"]["clean10_top1"] == 1.0
    assert 0.0 <= res["musicnn"]["p5_artist"] <= 1.0 and "p5_genre_x_baseline" in res["musicnn"]
    assert "mfcc-baseline" in capsys.readouterr().out
    # a window-limited run works too and says so
    args.window_s = 9.0
    assert E.main(args) == 0
    assert json.loads(out.read_text())["window_s"] == 9.0
