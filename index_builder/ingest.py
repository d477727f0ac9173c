"""Catalogue ingestion: a Kaggle-layout CSV or a folder of audio -> :class:`~engine.catalogue.Track` rows.

Why here and not in ``engine.catalogue``: only the index builder reads catalogue
sources; a query process reads the finished ``catalogue.sqlite``
(:class:`~engine.catalogue.CatalogueDB`).  Keeping the parsing, validation and
tag reading out of the engine keeps the query-time library small and lets the
builder change its input rules without touching what a query depends on.

Input layouts:

- the Kaggle "Ultimate Spotify Tracks DB" CSV (genre, artist_name, track_name,
  track_id, popularity, ...); the same track_id under several genres is one track
  with several genres; malformed rows are skipped and reported with their line
  number (:class:`CsvProblem`);
- a plain folder of audio files (title/artist from tags or the file name, a
  stable id per file).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.catalogue import AUDIO_EXTENSIONS, SPOTIFY_FEATURES, SPOTIFY_ID_RE, Track

log = logging.getLogger(__name__)

#: columns a catalogue CSV must have; a file without one of them is refused
REQUIRED_COLUMNS = ("track_id", "track_name", "artist_name")
#: seconds one ffprobe tag read may take (a file on a slow network share must not stall a build)
TAG_TIMEOUT_S = 15

#: a row's cell by column name ("" when the column is absent)
_Cell = Callable[[str], str]


@dataclass
class CsvProblem:
    """A row that was skipped or partly used: its 1-based line in the file, and why."""

    line: int
    reason: str


@dataclass
class CsvReadResult:
    """What :func:`read_kaggle_csv` found.

    ``tracks`` is keyed by track_id (duplicates merged), ``problems`` lists the
    reported rows in file order, ``rows`` counts the data rows read (blank ones too).
    """

    tracks: dict[str, Track]
    problems: list[CsvProblem]
    rows: int


def read_kaggle_csv(path: Path, *, spotify_ids: bool = True) -> CsvReadResult:
    """Read a Kaggle-layout CSV; merge duplicate track_ids; report bad rows.

    ``spotify_ids=False`` marks the ids as local (they get Spotify *search* links).
    Raises ValueError when the file is empty or lacks a :data:`REQUIRED_COLUMNS`
    column; a bad row is skipped (or partly used) and reported, never fatal.
    """
    tracks: dict[str, Track] = {}
    problems: list[CsvProblem] = []
    rows = 0
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.reader(fh)
        header = _read_header(reader, path)
        col = {name: i for i, name in enumerate(header)}
        for row in _rows(reader, path):
            rows += 1
            if not row or all(not c.strip() for c in row):
                continue
            line = reader.line_num
            if len(row) != len(header):
                problems.append(CsvProblem(line, f"{len(row)} fields, expected {len(header)}"))
                continue
            cell: _Cell = lambda name: row[col[name]].strip() if name in col else ""
            track = _parse_row(cell, line, problems, spotify_ids=spotify_ids)
            if track is None:
                continue
            existing = tracks.get(track.track_id)
            if existing is None:
                tracks[track.track_id] = track
                continue
            # the Kaggle CSV lists a track once per genre: one track, several genres
            for genre in track.genres:
                if genre not in existing.genres:
                    existing.genres.append(genre)
            existing.popularity = max(existing.popularity, track.popularity)
    return CsvReadResult(tracks, problems, rows)


def _rows(reader: Any, path: Path) -> Iterator[list[str]]:
    """The data rows; a row the csv module cannot split (a quote never closed swallows the
    rest of the file) is a ValueError naming the line, not a half-read catalogue."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ValueError(f"{path} line {reader.line_num}: cannot read the row ({exc}); a quote (\") is "
                             "probably never closed: fix that row and build again") from exc


def _read_header(reader: Iterator[list[str]], path: Path) -> list[str]:
    """The stripped header row; ValueError when the file is empty or lacks a required column."""
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ValueError(f"{path} is empty") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path}: missing required column(s) {', '.join(missing)}; found {header}")
    return header


def _parse_row(cell: _Cell, line: int, problems: list[CsvProblem], *, spotify_ids: bool) -> Track | None:
    """One data row as a Track, or None when it cannot be used; what is wrong goes to ``problems``.

    Only an empty track_id or track_name drops the row: a bad number falls back to a
    default, so one typo does not lose a track that has audio.
    """
    tid, name, artist = cell("track_id"), cell("track_name"), cell("artist_name")
    if not tid:
        problems.append(CsvProblem(line, "empty track_id"))
        return None
    if not name:
        problems.append(CsvProblem(line, f"empty track_name for {tid}"))
        return None
    is_spotify = bool(SPOTIFY_ID_RE.match(tid))
    if spotify_ids and not is_spotify:
        problems.append(CsvProblem(line, f"track_id {tid!r} is not a Spotify id; linking to a search"))
    popularity = 0
    if cell("popularity"):
        try:
            popularity = int(float(cell("popularity")))
        except (ValueError, OverflowError):  # "abc", "nan", "inf", "1e400"
            problems.append(CsvProblem(line, f"popularity {cell('popularity')!r} is not a number; using 0"))
    duration = None
    if cell("duration_ms"):
        try:
            duration = int(float(cell("duration_ms")))
        except (ValueError, OverflowError):
            problems.append(CsvProblem(line, f"duration_ms {cell('duration_ms')!r} is not a number"))
    genre = cell("genre")
    return Track(tid, name, artist, [genre] if genre else [], popularity, duration,
                 "spotify" if spotify_ids and is_spotify else "search",
                 audio_features=_audio_features(cell, line, problems))


def _audio_features(cell: _Cell, line: int, problems: list[CsvProblem]) -> dict[str, float] | None:
    """The row's Spotify audio features; one out of range or not a number -> reported, none kept.

    A row without them is fine (a catalogue of one's own music has none); a row with a bad
    one keeps its audio and name search but is left out of the features mapping.
    """
    out: dict[str, float] = {}
    for name, (lo, hi) in SPOTIFY_FEATURES.items():
        raw = cell(name)
        if not raw:
            continue
        try:
            v = float(raw)
        except ValueError:
            problems.append(CsvProblem(line, f"{name} {raw!r} is not a number; features left out for this row"))
            return None
        if not (lo <= v <= hi) or v != v:
            problems.append(CsvProblem(line, f"{name} {raw} is outside {lo:g}..{hi:g}; features left out for this row"))
            return None
        out[name] = v
    return out or None


def tag_metadata(path: Path) -> tuple[str | None, str | None]:
    """(title, artist) from the file's tags via ffprobe (already a dependency); (None, None) if unreadable.

    Never raises: tags are a nicety and the file name is the fallback, so a missing
    ffprobe, a timeout (:data:`TAG_TIMEOUT_S`) or garbage output all read as "no tags".
    """
    try:
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-print_format", "json", "-show_entries", "format_tags=title,artist", str(path)],
            capture_output=True, timeout=TAG_TIMEOUT_S, check=False,
        ).stdout
        tags = {k.lower(): v for k, v in json.loads(out or b"{}").get("format", {}).get("tags", {}).items()}
    except Exception as exc:  # noqa: BLE001 - tags are a nicety; the file name is the fallback
        log.debug("no tags read from %s: %s", path, exc)
        return None, None
    return tags.get("title"), tags.get("artist")


def parse_artist_title(stem: str) -> tuple[str, str]:
    """'Artist - Title' (as spotify_dl and most rippers write) -> (artist, title); ("", stem) without one.

    A leading track number ("03_", "12 - ") is dropped and underscores read as spaces.
    """
    stem = re.sub(r"^\d{1,3}[\s._-]+", "", stem).replace("_", " ").strip()
    for sep in (" - ", " – ", " — "):
        if sep in stem:
            artist, title = stem.split(sep, 1)
            return artist.strip(), title.strip()
    return "", stem


def folder_track_id(root: Path, path: Path) -> str:
    """A stable id per file: a hash of its path relative to the catalogue folder.

    Relative, so moving the whole folder keeps every id (and the built index).
    """
    rel = path.relative_to(root).as_posix()
    return "local-" + hashlib.blake2b(rel.encode("utf-8"), digest_size=10).hexdigest()


def iter_audio_files(root: Path) -> Iterator[Path]:
    """Audio files under ``root`` (recursively, by extension), hidden files skipped, in sorted order.

    Sorted so that every run sees the files in the same order (matching keeps the first).
    """
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith("."):
            yield p


def read_folder(root: Path, *, use_tags: bool = True) -> dict[str, Track]:
    """A catalogue from a folder of audio, without a CSV: track_id -> Track.

    Title and artist come from the tags (``use_tags``), else from the file name;
    the genre is the name of the file's folder below ``root``.  The tracks link to a
    Spotify search (their ids are not Spotify's).
    """
    tracks: dict[str, Track] = {}
    for p in iter_audio_files(root):
        title, artist = tag_metadata(p) if use_tags else (None, None)
        if not title:
            artist_guess, title = parse_artist_title(p.stem)
            artist = artist or artist_guess
        genre = p.parent.name if p.parent != root else ""
        tid = folder_track_id(root, p)
        tracks[tid] = Track(tid, title, artist or "", [genre] if genre else [], 0, None, "search", str(p))
    return tracks
