"""The radio walk (engine.radio) and the take-away formats (engine.playlist), on generated data."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from engine.catalogue import Track
from engine.playlist import csv_text, links_text, m3u_text
from engine.radio import walk


def _catalogue(seed: int = 0, artists: int = 12, per: int = 6, d: int = 16):
    """Artists' tracks around their centres, the centres on a smooth path (so there is somewhere to drift)."""
    rng = np.random.default_rng(seed)
    path = np.cumsum(rng.normal(0, 1, (artists, d)), axis=0)
    x = np.repeat(path, per, 0) + rng.normal(0, 0.6, (artists * per, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), [f"artist {i // per}" for i in range(artists * per)]


def test_no_repeats_at_most_two_per_artist_each_step_near_the_one_before() -> None:
    x, artists = _catalogue()
    seed, pool, names = x[0], x[1:], artists[1:]
    sims = x @ x.T
    median = float(np.median(sims[np.triu_indices(len(x), 1)]))
    steps = walk(seed, pool, names, 25, min_similarity=median)
    idx = [s.index for s in steps]
    assert 20 <= len(steps) <= 24 and len(set(idx)) == len(idx)  # 12 artists x 2, less any jump too far
    assert len(walk(seed, pool, names, 25)) == 24
    counts = {a: sum(names[i] == a for i in idx) for a in set(names)}
    assert max(counts.values()) <= 2 and len({names[i] for i in idx}) >= 8
    prev = [seed] + [pool[i] for i in idx[:-1]]
    for s, p in zip(steps, prev):
        assert s.to_previous == pytest.approx(float(pool[s.index] @ p), abs=1e-5) and s.to_previous >= median


def test_it_drifts_and_is_deterministic() -> None:
    x, artists = _catalogue(1)
    steps = walk(x[0], x[1:], artists[1:], 20)
    to_seed = [float(x[1:][s.index] @ x[0]) for s in steps]
    assert np.mean(to_seed[-5:]) < np.mean(to_seed[:5])  # later tracks are further from the seed
    assert [s.index for s in walk(x[0], x[1:], artists[1:], 20)] == [s.index for s in steps]


def test_fewer_tracks_when_fewer_qualify_and_bad_lengths_refused() -> None:
    x, artists = _catalogue(2, artists=3, per=5)
    assert len(walk(x[0], x[1:], artists[1:], 25)) == 6  # 3 artists, two each
    assert walk(x[0], x[1:], artists[1:], 25, min_similarity=1.01) == []  # nothing near enough
    assert walk(x[0], np.zeros((0, x.shape[1])), [], 5) == []
    with pytest.raises(ValueError, match="at least one"):
        walk(x[0], x[1:], artists[1:], 0)


def test_links_m3u_and_csv_carry_the_same_tracks_in_order() -> None:
    tracks = [Track("4uLU6hMCjMI75M1A2tKUQC", "Never, Ever", "Band A", duration_ms=212_400),
              Track("local-1", 'Line\nbreak "quoted"', "Band B", link_kind="search")]
    assert links_text(tracks) == ("https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC\n"
                                  "https://open.spotify.com/search/Band%20B%20Line%0Abreak%20%22quoted%22\n")
    m3u = m3u_text(tracks, "Radio: Band A – Never, Ever").splitlines()
    assert m3u[:4] == ["#EXTM3U", "#PLAYLIST:Radio: Band A – Never, Ever", "#EXTINF:212,Band A – Never, Ever",
                       "https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC"]
    assert m3u[4] == '#EXTINF:-1,Band B – Line break "quoted"'  # one line per entry whatever the title
    rows = list(csv.reader(io.StringIO(csv_text(tracks))))
    assert rows[0] == ["position", "artist", "title", "track_id", "link"]
    assert rows[2][2] == 'Line\nbreak "quoted"' and rows[1][4].endswith("4uLU6hMCjMI75M1A2tKUQC")
    assert links_text([]) == "" and m3u_text([]) == "#EXTM3U\n"
