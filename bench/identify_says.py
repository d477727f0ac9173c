"""What the service *says* ("sounds like X") for phone-like notes of catalogue songs, and for unknown songs.

Usage::

    python bench/identify_says.py --data-dir DIR [--tracks 120] [--seed 1] [--json out.json]

``DIR`` is a built index whose catalogue rows still point at their audio.  For ``--tracks``
catalogue tracks, a 10-s excerpt from 30 s in is made phone-like (``phone_degrade``: room,
noise, phone band, level drift, Opus; another seed than the build's calibration) and a
clean one is kept.  Each goes through the service's own identification path
(``SynestheteService.landmark_candidates`` with speed variants, ``observe``, and
``engine.identify.decide`` with the index's calibration), as 10 s and as its first 5 s.
"Unknown" is the same recording with its song removed from the catalogue
(``engine.identify.evidence(obs, exclude=...)``: exact for the landmarks, and for the vote
with two candidates per segment), so any answer there is a wrong "sounds like" for music the
catalogue lacks, unless the track named holds the same audio (``index_builder.calibrate.
shares_audio``: the catalogue has the music twice), counted apart.  Reported per kind and
threshold: says right / says wrong / unknown says something / says a shared-audio track, ms.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchutil import catalogue_tracks  # noqa: E402
from engine.audio import from_samples  # noqa: E402
from engine.identify import decide, evidence  # noqa: E402
from engine.service import SynestheteService  # noqa: E402
from engine.settings import Settings  # noqa: E402
from index_builder.augment import phone_degrade  # noqa: E402
from index_builder.calibrate import shares_audio  # noqa: E402


def excerpt(path: str, sr: int, start_s: float, seconds: float) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-ss", str(start_s), "-t", str(seconds), "-i", path,
                          "-ac", "1", "-ar", str(sr), "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, "<f4").astype(np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--tracks", type=int, default=120)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--thresholds", type=float, nargs="+", default=None,
                    help="probabilities to report (default: the settings' identify_threshold)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = Settings.from_env(env_file=None).replace(data_dir=args.data_dir)
    svc = SynestheteService(settings)
    sr = svc.embedder.sample_rate
    db = sqlite3.connect(args.data_dir / "catalogue.sqlite")
    rows = catalogue_tracks(db)[: args.tracks]
    rng = np.random.default_rng(args.seed)
    thresholds = args.thresholds or [settings.identify_threshold]
    cal = svc.calibration.calibration
    counts: dict[str, dict[str, float]] = {}
    for key, path in rows:
        clean = excerpt(path, sr, 30.0, 10.0)
        views = {"phone10": phone_degrade(clean, sr, rng), "clean10": clean}
        views["phone_first5"] = views["phone10"][: 5 * sr]
        for kind, x in views.items():
            t0 = time.perf_counter()
            d = from_samples(x, sr, "bench")
            obs = svc.observe(d, svc.landmark_candidates(d), svc.embedder.embed(d.samples, settings.query_hop_s), 2)
            ms = (time.perf_counter() - t0) * 1000
            for thr in [*thresholds, None]:  # None: the uncalibrated safe rule, for comparison
                rule = cal if thr is not None else None
                known = decide(evidence(obs), rule, threshold=thr or 0.0)
                unknown = decide(evidence(obs, exclude=key), rule, threshold=thr or 0.0)
                c = counts.setdefault(f"{kind}@{thr:g}" if thr is not None else f"{kind}@safe-rule", {"n": 0, "says_right": 0, "says_wrong": 0,
                                                          "unknown_says": 0, "says_shared_audio": 0, "ms": 0.0})
                c["n"] += 1
                c["says_right"] += known is not None and known.track_key == key
                for d, field in ((known, "says_wrong"), (unknown, "unknown_says")):
                    if d is not None and d.track_key != key:
                        shared = shares_audio(obs, key, d.track_key)  # the catalogue holds this audio twice
                        c["says_shared_audio"] += shared
                        c[field] += not shared
                c["ms"] += ms
    out = {"data_dir": str(args.data_dir), "calibration": svc.calibration.about(), "kinds": {}}
    for kind, c in sorted(counts.items()):
        n = c["n"]
        out["kinds"][kind] = {"n": n, **{k: round(c[k] / n, 4) for k in ("says_right", "says_wrong", "unknown_says",
                                                                     "says_shared_audio")},
                              "ms_per_query": round(c["ms"] / n)}
        print(kind, json.dumps(out["kinds"][kind]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    svc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
