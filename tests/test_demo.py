"""The demo's track selection, CSV and links, on a fake package tree (no apt, no network)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from index_builder import demo
from index_builder.demo import DemoPackage, candidate_files, prepare_catalogue, select_tracks


def fake_packages(root: Path) -> tuple[tuple[DemoPackage, ...], dict[str, list[Path]], dict[Path, float]]:
    """Two fake packages: music files, sound effects, a too-short jingle and an excluded variant."""
    durations: dict[Path, float] = {}
    files: dict[str, list[Path]] = {"pkg-a": [], "pkg-b": []}
    for i in range(10):
        p = root / "usr/share/games/a/music" / f"theme_{i:02d}.ogg"
        files["pkg-a"].append(p)
        durations[p] = 60.0 + i
    jingle = root / "usr/share/games/a/music/jingle.ogg"
    files["pkg-a"].append(jingle)
    durations[jingle] = 12.0
    sfx = root / "usr/share/games/a/sounds/boom.ogg"
    files["pkg-a"].append(sfx)
    durations[sfx] = 90.0
    for i in range(3):
        p = root / "usr/share/games/b/Data/Music" / f"Song{i}.ogg"
        files["pkg-b"].append(p)
        durations[p] = 100.0
        sd = root / "usr/share/games/b/Data/Music" / f"Song{i}_sd.ogg"
        files["pkg-b"].append(sd)
        durations[sd] = 100.0
    for paths in files.values():
        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"OggS fake")
    pkgs = (DemoPackage("pkg-a", "A OST", "electronic", r"/music/"),
            DemoPackage("pkg-b", "B OST", "orchestral", r"/Data/Music/", exclude=r"_sd\.ogg$"))
    return pkgs, files, durations


def test_selection_is_deterministic_and_skips_effects(tmp_path: Path, monkeypatch) -> None:
    pkgs, files, durations = fake_packages(tmp_path / "root")
    cands = {p: candidate_files(p, files[p.package]) for p in pkgs}
    assert all("sounds" not in str(f) and "_sd" not in f.name for c in cands.values() for f in c)
    picked = select_tracks(cands, 8, duration=durations.get)
    again = select_tracks(cands, 8, duration=durations.get)
    assert picked == again
    assert len(picked) == 8
    # package b has only 3 usable tracks; a fills the rest; the jingle (< 30 s) is never picked
    assert sum(t.package == "pkg-b" for t in picked) == 3
    assert all(t.duration_s >= demo.MIN_TRACK_S for t in picked)
    assert len({t.track_id for t in picked}) == 8
    assert picked[0].name == "Theme 00"


def test_prepare_catalogue_writes_kaggle_csv_and_links(tmp_path: Path, monkeypatch) -> None:
    pkgs, files, durations = fake_packages(tmp_path / "root")
    monkeypatch.setattr(demo, "probe_duration", durations.get)
    monkeypatch.setattr(demo, "select_tracks",
                        lambda c, n, duration=None, _real=demo.select_tracks: _real(c, n, duration=durations.get))
    demo_dir = tmp_path / "data" / "demo"
    tracks, changed = prepare_catalogue(demo_dir, 6, pkgs, files_for=files.__getitem__)
    assert changed
    with open(demo_dir / "tracks.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == demo.KAGGLE_COLUMNS
    assert [r["track_id"] for r in rows] == [t.track_id for t in tracks]
    assert all(r["track_id"].startswith("demo-") and int(r["duration_ms"]) >= 30000 for r in rows)
    links = sorted((demo_dir / "audio").iterdir())
    assert len(links) == 6 and all(p.is_symlink() for p in links)
    assert {p.resolve() for p in links} == {t.path.resolve() for t in tracks}
    # the catalogue reader accepts it; links go to a Spotify search
    from index_builder.ingest import read_kaggle_csv

    res = read_kaggle_csv(demo_dir / "tracks.csv", spotify_ids=False)
    assert not res.problems and len(res.tracks) == 6
    assert all("/search/" in t.link for t in res.tracks.values())
    # a rerun changes nothing; the atomic writes leave no temp files
    _, changed = prepare_catalogue(demo_dir, 6, pkgs, files_for=files.__getitem__)
    assert not changed
    assert not list(demo_dir.glob("*.tmp"))


def test_no_apt_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(demo, "_installed", lambda pkg: False)
    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    with pytest.raises(demo.DemoUnavailableError) as e:
        demo.ensure_packages(["some-music"])
    assert "apt-get" in e.value.user_message


def test_voice_note_is_short_mono_opus(tmp_path: Path) -> None:
    from engine.audio import decode
    from engine.settings import Settings
    from tests.audiogen import encode, synthetic_track

    src = encode(synthetic_track(3, 40.0, sr=16000), tmp_path / "song.ogg", sr=16000)
    t = demo.DemoTrack("demo-x", "Song", "A", "g", src, 40.0, "pkg")
    out = demo.make_voice_note(t, tmp_path / "note.ogg", Settings(data_dir=tmp_path))
    d = decode(out, 16000)
    assert 9.5 < d.duration_s < 10.5
    assert "opus" in d.source_format
