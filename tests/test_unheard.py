"""Kaggle rows without audio, placed by their Spotify features (issue 14), through a real build."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from engine.catalogue import SPOTIFY_FEATURES
from engine.service import NOT_HEARD, SynestheteService
from engine.settings import Settings
from index_builder.build import BuildOptions, run_build
from index_builder.ingest import read_kaggle_csv
from tests import audiogen

N_AUDIO, N_UNHEARD = 32, 8
COLUMNS = ["genre", "artist_name", "track_name", "track_id", "popularity", *SPOTIFY_FEATURES]


def _row(i: int, rng: np.random.Generator, **over) -> dict:
    genre = ["Rock", "Jazz"][i % 2]
    base = 0.2 if genre == "Rock" else 0.8  # features that follow the genre, as real ones roughly do
    row = {"genre": genre, "artist_name": f"Band {i % 8}", "track_name": f"Song {i}",
           "track_id": f"{i:03d}Row{'x' * 16}"[:22], "popularity": str(30 + i)}
    for name, (lo, hi) in SPOTIFY_FEATURES.items():
        v = base + rng.normal(0, 0.05) if hi == 1.0 else rng.uniform(lo + 1, hi - 1)
        row[name] = f"{min(hi, max(lo, v)):.3f}"
    row.update(over)
    return row


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Settings, list[dict]]:
    root = tmp_path_factory.mktemp("unheard")
    audio = root / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    rows = [_row(i, rng) for i in range(N_AUDIO + N_UNHEARD)]
    rows.append(_row(99, rng, energy="7.5"))  # out of range: reported, left out of the mapping
    for r in rows[:N_AUDIO]:
        i = int(r["track_id"][:3])
        audiogen.encode(audiogen.synthetic_track(500 + i, 15.0), audio / f"{r['track_id']}.mp3")
    csv_path = root / "tracks.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    cache = Path(__file__).resolve().parent.parent / ".pytest_cache" / "models"
    settings = Settings(data_dir=root / "data", model_cache_dir=cache, workers=2,
                        identify_calibration_queries=0)  # identification is not what this module tests
    report = run_build(settings, BuildOptions(csv=csv_path, audio=audio, not_spotify=True, workers=2))
    assert report.indexed == N_AUDIO
    assert report.similarity["unheard_placed"] == N_UNHEARD
    assert any("energy 7.5 is outside" in p["problem"] for p in report.csv_problems)
    return settings, rows


pytestmark = pytest.mark.slow


def test_csv_features_are_read_and_checked(built):
    _, rows = built
    res = read_kaggle_csv(Path(built[0].data_dir).parent / "tracks.csv", spotify_ids=False)
    t = res.tracks[rows[0]["track_id"]]
    assert set(t.audio_features) == set(SPOTIFY_FEATURES)
    assert res.tracks[rows[-1]["track_id"]].audio_features is None


def test_a_row_without_audio_seeds_and_answers(built):
    settings, rows = built
    unheard = rows[N_AUDIO]
    with SynestheteService(settings) as svc:
        rec = svc.similar_to(unheard["track_id"], diverse=False)
        assert len(rec.results) == 5
        # heard and unheard answers side by side; the unheard ones say so
        tagged = [r for r in rec.results if not r.heard]
        assert all(r.reason.startswith(NOT_HEARD) for r in tagged)
        assert all(r.heard for r in rec.results if r.track.track_id in {x["track_id"] for x in rows[:N_AUDIO]})
        # a heard seed's answers can include rows that were never heard
        seen_unheard = set()
        for r in rows[:N_AUDIO]:
            for a in svc.similar_to(r["track_id"], k=10, diverse=False).results:
                if not a.heard:
                    seen_unheard.add(a.track.track_id)
        assert seen_unheard
        # the bad row has neither audio nor usable features: one sentence, no search
        from engine.errors import TrackNotFoundError

        with pytest.raises(TrackNotFoundError) as e:
            svc.similar_to(rows[-1]["track_id"])
        assert "nothing to compare it with" in e.value.user_message


def test_a_rebuild_keeps_the_placed_rows(built):
    settings, _ = built
    csv_path = Path(settings.data_dir).parent / "tracks.csv"
    report = run_build(settings, BuildOptions(csv=csv_path, audio=csv_path.parent / "audio", not_spotify=True,
                                              workers=2))
    assert report.removed == 0 and report.similarity["status"] == "unchanged"
    with SynestheteService(settings) as svc:
        assert svc.store.count_tracks() == N_AUDIO + N_UNHEARD
