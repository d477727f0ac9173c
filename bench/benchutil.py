"""Small measuring helpers shared by the benchmarks in bench/ (run as ``python bench/X.py``)."""

from __future__ import annotations

import numpy as np


def pct(values: list[float], q: float) -> float:
    """The q-th percentile, NaN for no values (a figure that was not measured stays visible)."""
    return float(np.percentile(values, q)) if values else float("nan")


def rss_mb() -> float:
    """Current resident memory of this process in MB (Linux /proc)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def dir_bytes(path) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed): a store's size on disk."""
    from pathlib import Path

    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and not f.is_symlink())


def encode_opus(samples: np.ndarray, sr: int, kbps: int = 24) -> bytes:
    """Ogg/Opus mono bytes, the format of a Discord voice message."""
    import subprocess

    return subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "f32le", "-ar", str(sr), "-ac", "1", "-i", "pipe:",
         "-c:a", "libopus", "-b:a", f"{kbps}k", "-f", "ogg", "pipe:"],
        input=np.ascontiguousarray(samples, "<f4").tobytes(), capture_output=True, check=True).stdout


def cut_voice_notes(sources: list[tuple[str, str]], seconds: float, n: int, rng: np.random.Generator,
                    limits, kbps: int = 24, sr: int = 16000) -> list[tuple[bytes, str]]:
    """``n`` voice-note-like clips as (Ogg/Opus bytes, source track id).

    Each is a random ``seconds`` excerpt of a source (``(audio path, track id)``),
    degraded like a phone next to a speaker (``index_builder.augment.phone_degrade``)
    and Opus-encoded.  Sources are shuffled and reused when there are fewer than ``n``
    long enough; undecodable ones are skipped.
    """
    from engine.audio import decode
    from engine.errors import SynestheteError
    from index_builder.augment import phone_degrade

    order = list(sources)
    rng.shuffle(order)
    out: list[tuple[bytes, str]] = []
    for i in range(10 * max(1, len(order))):
        if len(out) >= n or not order:
            break
        path, track_id = order[i % len(order)]
        try:
            a = decode(path, sr, limits)
        except SynestheteError:
            continue
        if a.duration_s < seconds + 1:
            continue
        start = int(rng.uniform(0, a.duration_s - seconds) * sr)
        clip = phone_degrade(a.samples[start: start + int(seconds * sr)], sr, rng, opus=False)
        out.append((encode_opus(clip, sr, kbps), track_id))
    return out


def note_sources(catalogue, notes_from=None) -> list[tuple[str, str]]:
    """Audio to cut notes from: a folder's *.mp3 (for an index without audio) or the catalogue's files."""
    from pathlib import Path

    if notes_from is not None:
        return [(str(p), p.stem) for p in sorted(Path(notes_from).glob("*.mp3"))]
    return [(t.audio_path, t.track_id) for t in catalogue.all_tracks()
            if t.audio_path and Path(t.audio_path).exists()]


def corpus_labels(corpus) -> dict[str, dict]:
    """``{track_id: {"artist": str, "genres": set[str]}}`` from a dev corpus's ``tracks.csv`` (Kaggle columns;
    a track listed under several genres keeps them all, an empty genre is none)."""
    import csv
    from pathlib import Path

    rows: dict[str, dict] = {}
    with open(Path(corpus) / "tracks.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            d = rows.setdefault(r["track_id"], {"artist": r["artist_name"], "genres": set()})
            if r.get("genre"):
                d["genres"].add(r["genre"])
    return rows


def catalogue_tracks(db, n_tracks: int = 0) -> list[tuple[int, str]]:
    """``(track_key, audio_path)`` of a built index's tracks with audio over 50 s, by key; the first ``n_tracks``
    (0: all).  ``db``: a sqlite3 connection to the index's ``catalogue.sqlite``.  The identification benches
    excerpt 10 s from 30 s in, which a track this long holds."""
    rows = db.execute("SELECT track_key, audio_path FROM tracks WHERE audio_path IS NOT NULL AND duration_ms > 50000 "
                      "ORDER BY track_key").fetchall()
    return rows[:n_tracks] if n_tracks else rows


class PerTrack:
    """One array per catalogue track, computed once from its audio decoded as the build decodes it.

    ``compute(samples, sr)`` makes the array (reference peaks, chroma, ...); ``db`` is the index's
    catalogue connection, ``settings`` give the catalogue decode limits.
    """

    def __init__(self, db, settings, sr: int, compute) -> None:
        from engine.audio import limits_from_settings

        self.db, self.sr, self.compute = db, sr, compute
        self.limits = limits_from_settings(settings, for_catalogue=True)
        self.cache: dict[int, np.ndarray] = {}

    def __call__(self, key: int) -> np.ndarray:
        if key not in self.cache:
            from engine.audio import decode

            (path,) = self.db.execute("SELECT audio_path FROM tracks WHERE track_key=?", (key,)).fetchone()
            self.cache[key] = self.compute(decode(path, self.sr, self.limits).samples, self.sr)
        return self.cache[key]


def phone_notes(keys, sr: int, rng: np.random.Generator, label: str, clean: bool = False):
    """``(key, kind, samples)`` for every ``(key, audio_path)`` of ``keys``: its 10 s from 30 s in, made phone-like
    by the builder's own degradation (``phone_degrade`` with ``rng``, one draw per track in order, so two benches
    with the same seed hear the same recordings), as ``phone10`` and ``phone_first5``, and ``clean10`` when
    ``clean``; a progress line every 20 tracks, under ``label``."""
    import logging
    import time

    from identify_says import excerpt

    from index_builder.augment import phone_degrade

    t0 = time.perf_counter()
    for i, (key, path) in enumerate(keys):
        clip = excerpt(path, sr, 30.0, 10.0)
        phone = phone_degrade(clip, sr, rng)
        yield key, "phone10", phone
        yield key, "phone_first5", phone[: 5 * sr]
        if clean:
            yield key, "clean10", clip
        if (i + 1) % 20 == 0:
            logging.warning("%s: %d/%d tracks, %.0f s", label, i + 1, len(keys), time.perf_counter() - t0)


def corpus_main(doc: str, run_corpus, header: dict | None = None) -> int:
    """The command line of a bench run per built index: ``--data-dir`` (repeatable), ``--tracks``, ``--seed``,
    ``--json``; prints one summary line per corpus and kind of ``run_corpus(data_dir, tracks, seed)``'s
    ``{"kinds": {kind: summary}}`` and writes everything to ``--json`` after each corpus."""
    import argparse
    import json
    import logging
    import time
    from pathlib import Path

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, action="append", required=True)
    ap.add_argument("--tracks", type=int, default=0, help="first N tracks of each corpus (0: all)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **(header or {}), "corpora": []}
    for d in args.data_dir:
        res = run_corpus(d, args.tracks, args.seed)
        out["corpora"].append(res)
        for kind, s in res["kinds"].items():
            print(d.name, kind, json.dumps(s), flush=True)
        if args.json:
            args.json.write_text(json.dumps(out, indent=1))
    return 0
