"""Catalogue ingestion (index_builder.ingest): the Kaggle CSV layout and folders of tagged audio."""

from __future__ import annotations

from pathlib import Path

import pytest

from index_builder.ingest import parse_artist_title, read_folder, read_kaggle_csv
from tests import audiogen

HEADER = ("genre,artist_name,track_name,track_id,popularity,acousticness,danceability,duration_ms,energy,"
          "instrumentalness,key,liveness,loudness,mode,speechiness,tempo,time_signature,valence\n")


def row(genre: str, artist: str, name: str, tid: str, pop: str = "50", dur: str = "200000") -> str:
    return f'{genre},"{artist}","{name}",{tid},{pop},0.1,0.5,{dur},0.5,0,C,0.1,-5,Major,0.05,120,4/4,0.5\n'


def test_kaggle_csv_merges_genres_and_reports_bad_rows(tmp_path: Path) -> None:
    csv = tmp_path / "tracks.csv"
    csv.write_text(
        HEADER
        + row("Pop", "Beyoncé", "Halo", "4JehYebiI9JE8sR8MisGVb", "80")
        + row("R&B", "Beyoncé", "Halo", "4JehYebiI9JE8sR8MisGVb", "82")  # same id, second genre
        + row("Rock", "Metallica", "Nothing Else Matters", "0nLiqZ6A27jJri2VCalIUs", "78")
        + "Rock,broken row with too few fields\n"
        + row("Rock", "Nobody", "", "1111111111111111111111")
        + row("Jazz", "Local", "Not Spotify", "local-1", "x")
        , encoding="utf-8")
    res = read_kaggle_csv(csv)
    assert set(res.tracks) == {"4JehYebiI9JE8sR8MisGVb", "0nLiqZ6A27jJri2VCalIUs", "local-1"}
    halo = res.tracks["4JehYebiI9JE8sR8MisGVb"]
    assert halo.genres == ["Pop", "R&B"] and halo.popularity == 82
    assert halo.link == "https://open.spotify.com/track/4JehYebiI9JE8sR8MisGVb"
    lines = {p.line: p.reason for p in res.problems}
    assert 5 in lines and "fields" in lines[5]
    assert 6 in lines and "track_name" in lines[6]
    assert 7 in lines  # not a Spotify id / popularity not a number
    local = res.tracks["local-1"]
    assert local.link.startswith("https://open.spotify.com/search/")


def test_missing_columns_is_fatal(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("genre,artist_name,popularity\nPop,X,1\n")
    with pytest.raises(ValueError, match="track_id"):
        read_kaggle_csv(csv)


def test_not_spotify_catalogue_links_to_search(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text(HEADER + row("Game", "Wesnoth OST", "Battle Music", "4JehYebiI9JE8sR8MisGVb"))
    t = read_kaggle_csv(csv, spotify_ids=False).tracks["4JehYebiI9JE8sR8MisGVb"]
    assert t.link == "https://open.spotify.com/search/Wesnoth%20OST%20Battle%20Music"


def test_folder_catalogue_uses_tags_then_file_names(tmp_path: Path) -> None:
    root = tmp_path / "music"
    (root / "Jazz").mkdir(parents=True)
    audiogen.encode(audiogen.tone(440, 3), root / "Jazz" / "01 - Miles Davis - So What.mp3")
    audiogen.encode(audiogen.tone(440, 3), root / "tagged.mp3",
                    codec_args=["-metadata", "title=Tagged Title", "-metadata", "artist=Tag Artist"])
    (root / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    tracks = read_folder(root)
    by_name = {t.name: t for t in tracks.values()}
    assert set(by_name) == {"So What", "Tagged Title"}
    assert by_name["So What"].artist == "Miles Davis" and by_name["So What"].genres == ["Jazz"]
    assert by_name["Tagged Title"].artist == "Tag Artist"
    assert all(t.link_kind == "search" for t in tracks.values())
    # ids are stable across reads
    assert set(read_folder(root)) == set(tracks)


def test_parse_artist_title() -> None:
    assert parse_artist_title("03_Artist - Song (Live)") == ("Artist", "Song (Live)")
    assert parse_artist_title("Just A Title") == ("", "Just A Title")


def test_bad_audio_feature_keeps_the_row_without_features(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    good = row("Pop", "A", "Good", "4JehYebiI9JE8sR8MisGVb")
    bad = row("Pop", "B", "Bad", "0nLiqZ6A27jJri2VCalIUs").replace(",0.5,0,C,", ",2.5,0,C,")  # energy 2.5
    csv.write_text(HEADER + good + bad, encoding="utf-8")
    res = read_kaggle_csv(csv)
    assert res.tracks["4JehYebiI9JE8sR8MisGVb"].audio_features["energy"] == 0.5
    assert res.tracks["0nLiqZ6A27jJri2VCalIUs"].audio_features is None
    assert [p.line for p in res.problems] == [3] and "energy" in res.problems[0].reason


def test_numbers_too_big_for_an_int_are_reported_not_fatal(tmp_path: Path) -> None:
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("genre,artist_name,track_name,track_id,popularity,duration_ms\n"
                        "Pop,A,One,id1,inf,1e400\nPop,B,Two,id2,nan,200000\n")
    res = read_kaggle_csv(csv_path, spotify_ids=False)
    assert set(res.tracks) == {"id1", "id2"} and res.tracks["id1"].popularity == 0
    assert res.tracks["id1"].duration_ms is None and res.tracks["id2"].duration_ms == 200000
    assert [p.line for p in res.problems] == [2, 2, 3]


def test_a_quote_never_closed_names_its_line(tmp_path: Path) -> None:
    import csv as csv_mod

    csv_path = tmp_path / "t.csv"
    big = "x" * (csv_mod.field_size_limit() + 10)
    csv_path.write_text("genre,artist_name,track_name,track_id\nPop,A,One,id1\nPop,\"B,Two,id2\n" + big + "\n")
    with pytest.raises(ValueError, match=r"line \d+: cannot read the row"):
        read_kaggle_csv(csv_path)
