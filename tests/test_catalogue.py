"""The query-time catalogue: links, folding, dedup and name search (ingestion: test_ingest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.catalogue import (
    CatalogueDB,
    Track,
    dedup_key,
    fold,
    track_key_for,
)


def test_helpers() -> None:
    assert fold("Beyoncé – Halo!") == "beyonce halo"
    assert track_key_for("abc") == track_key_for("abc") > 0
    a = Track("1", "Halo (Remastered)", "Beyoncé")
    b = Track("2", "Halo", "beyonce")
    assert dedup_key(a) == dedup_key(b)


@pytest.fixture()
def db(tmp_path: Path) -> CatalogueDB:
    db = CatalogueDB(tmp_path / "c.sqlite")
    db.upsert_tracks([
        Track("4JehYebiI9JE8sR8MisGVb", "Halo", "Beyoncé", ["Pop"], 80),
        Track("4JehYebiI9JE8sR8MisGVc", "Halo", "Beyoncé", ["R&B"], 60),  # duplicate song, other id
        Track("0nLiqZ6A27jJri2VCalIUs", "Nothing Else Matters", "Metallica", ["Rock"], 78),
        Track("0nLiqZ6A27jJri2VCalIUt", "Enter Sandman", "Metallica", ["Rock"], 85),
        Track("5nLiqZ6A27jJri2VCalIUt", "Halo Theme", "Video Game OST", ["Soundtrack"], 10),
        Track("6nLiqZ6A27jJri2VCalIUt", "Sandmann", "Rammstein", ["Rock"], 40),
    ])
    yield db
    db.close()


def test_search_prefix_accent_and_typo(db: CatalogueDB) -> None:
    hits = db.search("beyonce hal")
    assert hits[0].track.name == "Halo" and hits[0].track.artist == "Beyoncé"
    assert sum(h.track.name == "Halo" for h in hits) == 1  # duplicates shown once
    assert {h.track.artist for h in db.search("metalica")[:2]} == {"Metallica"}
    assert db.search("enter sand")[0].track.name == "Enter Sandman"
    assert db.search("") == []
    assert len(db.search("a", limit=100)) <= 25


def test_db_roundtrip_meta_and_reopen(tmp_path: Path, db: CatalogueDB) -> None:
    t = db.get("0nLiqZ6A27jJri2VCalIUs")
    assert t is not None and t.genres == ["Rock"]
    db.mark_indexed(t.track_key, "sig", "model", 3)
    db.set_meta("built_at", "today")
    assert db.indexed_state()[t.track_key] == ("sig", "model")
    ro = CatalogueDB(db.path, read_only=True)
    assert ro.count() == 6 and ro.count(indexed_only=True) == 1 and ro.get_meta("built_at") == "today"
    ro.close()
    db.delete_tracks([t.track_key])
    assert db.get("0nLiqZ6A27jJri2VCalIUs") is None and db.count(indexed_only=True) == 0
    assert all(h.track.name != "Nothing Else Matters" for h in db.search("nothing else"))


def test_search_ranks_quality_then_popularity_and_widens_typos(tmp_path: Path) -> None:
    db = CatalogueDB(tmp_path / "rank.sqlite")
    db.upsert_tracks([
        Track("4JehYebiI9JE8sR8MisGVb", "Halo", "Beyoncé", ["Pop"], 40),
        Track("4JehYebiI9JE8sR8MisGVd", "Sin Estrellas Halo", "Beyoncé", ["Pop"], 90),  # popular, weaker match
        Track("0nLiqZ6A27jJri2VCalIUs", "Nothing Else Matters", "Metallica", ["Rock"], 78),
        Track("0nLiqZ6A27jJri2VCalIUx", "Sweet Child O' Mine", "Guns N' Roses", ["Rock"], 82),
        Track("0nLiqZ6A27jJri2VCalIUy", "Sweet Child", "Someone Else", ["Rock"], 5),
    ] + [Track(f"filler{i:016d}", f"Love Song {i}", f"Band {i}", ["Pop"], i % 100) for i in range(300)])
    assert db.search("beyonce halo")[0].track.name == "Halo"  # exact beats popular
    assert db.search("Beyoncé – Halo")[0].track.name == "Halo"
    assert db.search("nothing else maters")[0].track.name == "Nothing Else Matters"  # typo in the last word
    assert db.search("guns roses sweet chi")[0].track.artist == "Guns N' Roses"
    top = db.search("love song", limit=25)
    assert len(top) == 25 and top[0].track.popularity >= top[-1].track.popularity
    assert [h.track.popularity for h in db.search("l", limit=5)] == [99, 99, 99, 98, 98]  # short prefix: popular first
    # popularity changes move a track in the FTS order (its search_rowid follows)
    db.upsert_tracks([Track("filler0000000000000001", "Love Song 1", "Band 1", ["Pop"], 100)])
    assert db.search("l", limit=1)[0].track.track_id == "filler0000000000000001"
    db.close()


def test_old_catalogue_is_upgraded_for_search(tmp_path: Path) -> None:
    """A catalogue written before search_rowid existed is migrated when opened for writing."""
    import sqlite3

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE tracks (track_key INTEGER PRIMARY KEY, track_id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
            artist TEXT NOT NULL, genres TEXT NOT NULL DEFAULT '[]', popularity INTEGER NOT NULL DEFAULT 0,
            duration_ms INTEGER, link_kind TEXT NOT NULL DEFAULT 'spotify', audio_path TEXT,
            dedup_key TEXT NOT NULL, search_text TEXT NOT NULL);
        CREATE VIRTUAL TABLE tracks_fts USING fts5(search_text, content='tracks', content_rowid='track_key',
            tokenize='trigram');
        CREATE TRIGGER tracks_ai AFTER INSERT ON tracks BEGIN
          INSERT INTO tracks_fts(rowid, search_text) VALUES (new.track_key, new.search_text); END;
    """)
    t = Track("0nLiqZ6A27jJri2VCalIUs", "Nothing Else Matters", "Metallica", ["Rock"], 78)
    conn.execute("INSERT INTO tracks VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                 (t.track_key, t.track_id, t.name, t.artist, '["Rock"]', 78, None, "spotify", None, dedup_key(t),
                  fold(f"{t.name} {t.artist}")))
    conn.commit()
    conn.close()
    ro = CatalogueDB(path, read_only=True)  # not upgraded yet: search still works
    assert ro.search("metallica nothing")[0].track.name == "Nothing Else Matters"
    ro.close()
    db = CatalogueDB(path)
    assert db.search("metalica")[0].track.artist == "Metallica"
    db.upsert_tracks([Track("1nLiqZ6A27jJri2VCalIUs", "Enter Sandman", "Metallica", ["Rock"], 85)])
    assert [h.track.name for h in db.search("metallica")] == ["Enter Sandman", "Nothing Else Matters"]
    db.close()


def test_short_word_prefixes_autocomplete(tmp_path: Path) -> None:
    db = CatalogueDB(tmp_path / "p.sqlite")
    db.upsert_tracks([
        Track("a" * 22, "Oriental Dreams", "Colobot OST", ["electronic"], 10),
        Track("b" * 22, "Prototype", "Widelands OST", ["orchestral"], 5),
        Track("c" * 22, "Proton", "Naev OST", ["ambient"], 50),
        Track("d" * 22, "Freeway", "SuperTux OST", ["electronic"], 1),
    ])
    assert db.search("Orie")[0].track.name == "Oriental Dreams"
    assert db.search("Free")[0].track.name == "Freeway"
    assert {h.track.name for h in db.search("Prot")[:2]} == {"Prototype", "Proton"}
    assert db.search("Protot")[0].track.name == "Prototype"
    assert db.search("colobot orie")[0].track.name == "Oriental Dreams"
    db.close()


def test_numbers_survive_the_typo_correction(tmp_path: Path) -> None:
    """Issue 16: "warzon trak 18" ranked Track 18 fourth, because the corrected query
    ("warzone track") kept only the 3+ letter words and dropped the number."""
    db = CatalogueDB(tmp_path / "n.sqlite")
    # the popular ones first, so popularity alone would put Track 18 last
    names = ["Track 1", "Track 8", "Track 180", "Track 81", "Track 2", "Track 18"]
    db.upsert_tracks([Track(f"w{i:021d}", n, "Warzone", ["Rock"], 60 - i) for i, n in enumerate(names)])
    assert [h.track.name for h in db.search("warzon trak 18")][:2] == ["Track 18", "Track 180"]
    assert db.search("trak 18 warzon")[0].track.name == "Track 18"
    assert db.search("warzon trak 8")[0].track.name == "Track 8"
    assert db.search("warzon trak 180")[0].track.name == "Track 180"
    db.close()
