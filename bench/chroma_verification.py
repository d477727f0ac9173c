"""A coarser check of the landmark offset: does the recording's chroma follow the candidate's there? (issue 23)

Usage::

    python bench/chroma_verification.py --data-dir DIR [--data-dir DIR2 ...] [--tracks 0] [--seed 1] [--json out.json]

The single-peak verification (bench/peak_verification.py) found that what destroys a phone
recording's landmark pairs destroys its single peaks too.  This asks whether evidence at a
coarser resolution survives: the recording's chroma sequence (librosa ``chroma_stft``, 12
pitch classes every 0.1 s, the harmony, which the phone band keeps) against the best landmark
candidate's chroma at the landmark offset (±0.2 s).  The mean frame cosine there is compared
with the same track at 60 other offsets (more than 3 s away): ``z`` = how many standard
deviations the aligned offset stands above the track's own null, which absorbs a track that
repeats itself.  Recordings and "unknown" as in bench/peak_verification.py (the song removed
from the evidence; the best other landmark candidate checked instead).

Reported per corpus and kind: the calibrated rule's says-right / unknown-says (before); the
``z`` of right best candidates that the rule leaves unnamed, and of unknown best candidates; and
what "before, or else the best candidate when z >= c" would say for a few ``c``.  A measurement,
not a product rule.  Nothing it writes belongs in the repository.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchutil import PerTrack, catalogue_tracks, corpus_main, phone_notes  # noqa: E402

from engine.audio import DecodedAudio, from_samples  # noqa: E402
from engine.identify import decide, evidence  # noqa: E402
from engine.service import SynestheteService  # noqa: E402
from engine.settings import Settings  # noqa: E402

HOP_S = 0.1
SLACK = 2  # frames either side of the landmark offset
NULL_OFFSETS = 60
CUTOFFS = (4.0, 5.0, 6.0, 8.0)


def chroma(samples: np.ndarray, sr: int) -> np.ndarray:
    """(n_frames, 12) L2-normalised chroma every :data:`HOP_S` seconds."""
    import librosa

    c = librosa.feature.chroma_stft(y=samples.astype(np.float32), sr=sr, n_fft=4096, hop_length=int(HOP_S * sr)).T
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-9)


def aligned(q: np.ndarray, ref: np.ndarray, start: int) -> float:
    """Best mean frame cosine of ``q`` over ``ref`` starting at ``start`` ± :data:`SLACK` frames (-1 when outside)."""
    best = -1.0
    for s in range(start - SLACK, start + SLACK + 1):
        lo, hi = max(0, s), min(len(ref), s + len(q))
        if hi - lo < len(q) // 2:
            continue
        best = max(best, float(np.mean(np.sum(q[lo - s: hi - s] * ref[lo:hi], axis=1))))
    return best


def chroma_z(q: np.ndarray, ref: np.ndarray, offset_s: float, rng: np.random.Generator) -> float:
    """How far the aligned cosine stands above the same track's at :data:`NULL_OFFSETS` other offsets (z)."""
    start = int(round(offset_s / HOP_S))
    here = aligned(q, ref, start)
    far = [s for s in range(0, max(1, len(ref) - len(q) // 2)) if abs(s - start) > 3 / HOP_S]
    if here < 0 or len(far) < 10:
        return 0.0
    null = np.array([aligned(q, ref, int(s)) for s in rng.choice(far, min(NULL_OFFSETS, len(far)), replace=False)])
    null = null[null >= 0]
    return float((here - null.mean()) / max(null.std(), 1e-6)) if null.size >= 10 else 0.0


def measure_one(svc: SynestheteService, d: DecodedAudio, key: int, settings: Settings, ref: PerTrack,
                rng: np.random.Generator) -> dict:
    """The calibrated rule's answer (known / unknown) and the chroma z of the best candidate in each case."""
    cal, thr = svc.calibration.calibration, settings.identify_threshold
    obs = svc.observe(d, svc.landmark_candidates(d), svc.embedder.embed(d.samples, settings.query_hop_s), 2)
    q = chroma(d.samples, d.sample_rate)
    row: dict = {"key": key}
    for case, exclude in (("known", None), ("unknown", key)):
        ev = evidence(obs, exclude=exclude)
        before = decide(ev, cal, threshold=thr)
        top = ev.matches[0] if ev.matches else None
        row[case] = {"before": before.track_key if before else None, "top": int(top.track_key) if top else None,
                     "z": round(chroma_z(q, ref(int(top.track_key)), float(top.offset_s), rng), 2) if top else 0.0}
    return row


def summarise(rows: list[dict]) -> dict:
    """Before, the two z distributions, and before + chroma at each cut-off."""
    n = len(rows)
    unnamed = [r["known"]["z"] for r in rows if r["known"]["top"] == r["key"] and r["known"]["before"] is None]
    unknown = [r["unknown"]["z"] for r in rows if r["unknown"]["top"] is not None]
    named_right = [r["known"]["z"] for r in rows if r["known"]["before"] == r["key"]]
    q = (lambda xs: [round(float(np.quantile(xs, p)), 2) for p in (0, 0.05, 0.5, 0.95, 1)] if xs else [])
    out = {"n": n, "before_right": sum(r["known"]["before"] == r["key"] for r in rows) / n,
           "before_unknown_says": sum(r["unknown"]["before"] is not None for r in rows) / n,
           "z_named_right": q(named_right), "z_unnamed_right_top": q(unnamed), "z_unknown_best": q(unknown),
           "with_chroma": {}}
    for c in CUTOFFS:
        gain = sum(r["known"]["before"] is None and r["known"]["top"] == r["key"] and r["known"]["z"] >= c for r in rows)
        wrong = sum(r["known"]["before"] is None and r["known"]["top"] not in (None, r["key"]) and r["known"]["z"] >= c
                    for r in rows)
        unk = sum(r["unknown"]["before"] is None and r["unknown"]["top"] is not None and r["unknown"]["z"] >= c
                  for r in rows)
        out["with_chroma"][f"{c:g}"] = {"more_right": gain, "more_wrong": wrong, "more_unknown_named": unk}
    return out


def run_corpus(data_dir: Path, n_tracks: int, seed: int) -> dict:
    """Every track's phone-like 10 s and first 5 s through :func:`measure_one`; summary per kind and raw rows."""
    settings = Settings.from_env(env_file=None).replace(data_dir=data_dir)
    svc = SynestheteService(settings, read_only=True)
    sr = svc.embedder.sample_rate
    db = sqlite3.connect(data_dir / "catalogue.sqlite")
    keys = catalogue_tracks(db, n_tracks)
    ref = PerTrack(db, settings, sr, chroma)
    null_rng = np.random.default_rng(seed + 1)
    rows: dict[str, list[dict]] = {}
    # the same recordings as peak_verification (same seed, same draws)
    for key, kind, x in phone_notes(keys, sr, np.random.default_rng(seed), data_dir.name):
        rows.setdefault(kind, []).append(measure_one(svc, from_samples(x, sr, "bench"), int(key), settings, ref,
                                                     null_rng))
    svc.close()
    return {"data_dir": str(data_dir), "tracks": len(keys), "kinds": {k: summarise(v) for k, v in rows.items()},
            "rows": rows}


if __name__ == "__main__":
    sys.exit(corpus_main(__doc__, run_corpus))
