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
