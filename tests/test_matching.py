"""Audio file <-> catalogue row matching: ids, spotify_dl names, tags, accents."""

from __future__ import annotations

from pathlib import Path

from engine.catalogue import Track
from index_builder.matching import match_files

ID1 = "4uLU6hMCjMI75M1A2tKUQC"
ID2 = "7ouMYWpwJ422jRcDASZB7P"


def tracks() -> dict[str, Track]:
    rows = [
        Track(ID1, "Never Gonna Give You Up", "Rick Astley"),
        Track(ID2, "Halo", "Beyoncé"),
        Track("local-1", "Crème Brûlée", "Les Gourmets"),
        Track("local-2", "Song Without File", "Nobody"),
        Track("local-3", "Intro", "Band A"),
        Track("local-4", "Intro", "Band B"),
        Track("local-5", "Tagged Only", "Tag Artist"),
        Track("local-6", "Duet", "Alice"),
    ]
    return {t.track_id: t for t in rows}


def fake_tags(path: Path):
    return {"weird_name.ogg": ("Tagged Only", "Tag Artist")}.get(path.name, (None, None))


def test_rules_and_report() -> None:
    files = [Path(p) for p in (
        f"/m/{ID1}.mp3",                         # exact id
        "/m/beyonce - HALO.mp3",                 # spotify_dl name, accents and case folded
        "/m/03 - Les Gourmets - Creme Brulee.ogg",  # track number prefix
        "/m/weird_name.ogg",                     # tags
        "/m/Alice, Bob - Duet (feat. Carol).mp3",  # several artists, feat. in the title
        "/m/Intro.mp3",                          # ambiguous title alone: not matched
        f"/m/dup/{ID1}.flac",                    # a second file for the same row
        "/m/unknown - thing.mp3",
    )]
    res = match_files(tracks(), files, read_tags=fake_tags)
    assert res.matched == {
        ID1: Path(f"/m/{ID1}.mp3"), ID2: Path("/m/beyonce - HALO.mp3"),
        "local-1": Path("/m/03 - Les Gourmets - Creme Brulee.ogg"), "local-5": Path("/m/weird_name.ogg"),
        "local-6": Path("/m/Alice, Bob - Duet (feat. Carol).mp3"),
    }
    assert res.how[ID1] == "id" and res.how[ID2] == "filename" and res.how["local-5"] == "tags"
    unmatched = {p.name: reason for p, reason in res.unmatched_files}
    assert set(unmatched) == {"Intro.mp3", f"{ID1}.flac", "unknown - thing.mp3"}
    assert "duplicate" in unmatched[f"{ID1}.flac"]
    assert sorted(res.rows_without_audio) == ["local-2", "local-3", "local-4"]


def test_id_inside_a_longer_name_and_unique_title() -> None:
    files = [Path(f"/m/012_{ID2}_clip.ogg"), Path("/m/Never Gonna Give You Up.mp3")]
    res = match_files(tracks(), files, read_tags=None)
    assert res.matched[ID2].name == f"012_{ID2}_clip.ogg"
    assert res.how[ID1] == "title"
