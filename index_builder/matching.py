"""Which audio file belongs to which catalogue row.

Why several rules: people get audio in different ways.  Files we or a script
named ``<track_id>.mp3`` match exactly; spotify_dl and most rippers write
``Artist - Title.mp3`` and put title/artist into tags.  Rules, in order:

1. the row's ``track_id`` is the file name's stem, or a token of it
   (``012 - <id>.mp3``, ``<id>_clip.ogg``);
2. ``Artist - Title`` from the file name, folded (case, accents, punctuation);
3. title/artist tags (one ffprobe per file, only for files still unmatched);
4. a folded title alone, when exactly one row has it.

A row matched by two files keeps the first (sorted path order) and the other
file is reported, so the result is the same on every run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from engine.catalogue import Track, fold

from .ingest import iter_audio_files, parse_artist_title, tag_metadata

log = logging.getLogger(__name__)

_ID_TOKEN_RE = re.compile(r"[0-9A-Za-z]{22}")
_FEAT_RE = re.compile(r"\s*[\(\[]\s*(feat|ft|with)\.?\s.*?[\)\]]", re.IGNORECASE)
_ARTIST_SPLIT_RE = re.compile(r"\s*(?:,|;|&| and | feat\.? | ft\.? | x )\s*", re.IGNORECASE)

TagReader = Callable[[Path], tuple[str | None, str | None]]


@dataclass
class MatchResult:
    #: track_id -> audio file
    matched: dict[str, Path] = field(default_factory=dict)
    #: track_id -> which rule matched ("id", "filename", "tags", "title")
    how: dict[str, str] = field(default_factory=dict)
    #: files no row claims, with the reason
    unmatched_files: list[tuple[Path, str]] = field(default_factory=list)
    #: rows with no audio file
    rows_without_audio: list[str] = field(default_factory=list)


def _title_key(title: str) -> str:
    return fold(_FEAT_RE.sub("", title))


def _artist_keys(artist: str) -> list[str]:
    """The whole artist string and its first credited artist, folded."""
    keys = [fold(artist)]
    first = _ARTIST_SPLIT_RE.split(artist.strip(), maxsplit=1)[0]
    if first and fold(first) not in keys:
        keys.append(fold(first))
    return [k for k in keys if k]


class _RowIndex:
    def __init__(self, tracks: Mapping[str, Track]) -> None:
        self.ids = set(tracks)
        self.by_artist_title: dict[str, str] = {}
        by_title: dict[str, list[str]] = {}
        for tid, t in tracks.items():
            tk = _title_key(t.name)
            for ak in _artist_keys(t.artist):
                self.by_artist_title.setdefault(f"{ak}|{tk}", tid)
            by_title.setdefault(tk, []).append(tid)
        self.unique_title = {k: v[0] for k, v in by_title.items() if len(v) == 1 and k}

    def by_id(self, stem: str) -> str | None:
        if stem in self.ids:
            return stem
        candidates = _ID_TOKEN_RE.findall(stem) + re.split(r"[\s_.()\[\]]+", stem)
        for c in candidates:
            if c in self.ids:
                return c
        return None

    def by_names(self, artist: str | None, title: str | None) -> str | None:
        if not title:
            return None
        tk = _title_key(title)
        for ak in _artist_keys(artist or ""):
            hit = self.by_artist_title.get(f"{ak}|{tk}")
            if hit:
                return hit
        return None


def match_files(
    tracks: Mapping[str, Track],
    files: Iterable[Path],
    *,
    read_tags: TagReader | None = tag_metadata,
    tag_threads: int = 4,
) -> MatchResult:
    """Match ``files`` to ``tracks`` (keyed by track_id); see the module docstring for the rules."""
    index = _RowIndex(tracks)
    res = MatchResult()
    files = sorted(Path(f) for f in files)
    pending: list[Path] = []

    def claim(tid: str, path: Path, how: str) -> None:
        if tid in res.matched:
            res.unmatched_files.append((path, f"duplicate: {tracks[tid].track_id} already has {res.matched[tid].name}"))
        else:
            res.matched[tid] = path
            res.how[tid] = how

    for p in files:
        tid = index.by_id(p.stem)
        if tid:
            claim(tid, p, "id")
            continue
        artist, title = parse_artist_title(p.stem)
        tid = index.by_names(artist, title) if artist else None
        if tid:
            claim(tid, p, "filename")
            continue
        pending.append(p)

    tags: dict[Path, tuple[str | None, str | None]] = {}
    if pending and read_tags is not None:
        with ThreadPoolExecutor(max_workers=max(1, tag_threads)) as ex:
            tags = dict(zip(pending, ex.map(read_tags, pending)))
    for p in pending:
        title, artist = tags.get(p, (None, None))
        tid = index.by_names(artist, title) if title else None
        if tid:
            claim(tid, p, "tags")
            continue
        _, stem_title = parse_artist_title(p.stem)
        tid = index.unique_title.get(_title_key(title or stem_title))
        if tid:
            claim(tid, p, "title")
            continue
        res.unmatched_files.append((p, "no catalogue row has this track_id, artist and title"))

    res.rows_without_audio = [tid for tid in tracks if tid not in res.matched]
    log.info("matched %d of %d rows to %d files (%d files unmatched)",
             len(res.matched), len(tracks), len(files), len(res.unmatched_files))
    return res


def match_folder(tracks: Mapping[str, Track], audio_dir: Path, **kw) -> MatchResult:
    """:func:`match_files` on every audio file under ``audio_dir`` (recursively)."""
    return match_files(tracks, iter_audio_files(Path(audio_dir)), **kw)
