"""How far a speed change (radio, DJ set, a fast turntable) can go before the landmarks stop
recognising a song, and what the query-side remedy (``engine.fingerprint.speed``) buys.

Usage::

    python bench/speed_reach.py --data-dir DIR [--tracks 60] [--seconds 10] [--phone]
        [--unknown-audio DIR] [--json out.json]

``DIR`` is a built index (``synesthete-index build`` / ``demo``) whose catalogue rows still
point at their audio.  For ``--tracks`` catalogue tracks, a ``--seconds`` excerpt from 30 s
in is played ``s`` times faster (pitch and tempo together, as a turntable or a radio
station's time compression does), optionally phone-degraded (``--phone``: the builder's
augmentation), and matched against the index: once as the service did before the remedy
(one speed), once with the speed variants the service now tries.  Reported per speed:
top-1 right, a confident answer (confidence >= the service's threshold, 0.5) that is
right, a confident answer that is wrong, and ms per query.  With ``--unknown-audio`` (a
folder of ``<track_id>.*`` files for catalogue rows built *without* audio, e.g. an index
built from half the audio), the same is done for music the index does not hold: every
confident answer there is a wrong "sounds like", and its ms are what the remedy costs the
common case of a recording that is no catalogue song.
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

from engine.fingerprint.index import FingerprintIndex  # noqa: E402
from engine.fingerprint.speed import NOMINAL_ONLY, change_speed, match_any_speed, speed_variants  # noqa: E402
from engine.identify import SAFE_MARGIN_CONFIDENCE  # noqa: E402

SR = 8000
SPEEDS = (0.92, 0.95, 0.97, 0.98, 0.99, 0.995, 1.0, 1.005, 1.01, 1.02, 1.03, 1.05, 1.08)
THRESHOLD = SAFE_MARGIN_CONFIDENCE  # the landmark margin alone (engine.identify.safe_rule)


def excerpt(path: str, start_s: float, seconds: float) -> np.ndarray:
    """Mono float32 at 8 kHz of ``seconds`` from ``start_s`` (ffmpeg seeks)."""
    proc = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-ss", str(start_s), "-t", str(seconds), "-i", path,
                           "-ac", "1", "-ar", str(SR), "-f", "f32le", "-"], capture_output=True, check=True)
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--tracks", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--phone", action="store_true")
    ap.add_argument("--tolerance", type=float, default=6.0, help="SYNESTHETE_SPEED_TOLERANCE_PCT to measure")
    ap.add_argument("--unknown-audio", type=Path, help="audio of the rows built without audio (see above)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    db = sqlite3.connect(args.data_dir / "catalogue.sqlite")
    rows = db.execute("SELECT track_key, audio_path FROM tracks WHERE audio_path IS NOT NULL AND duration_ms > 50000 "
                      "ORDER BY track_key").fetchall()[: args.tracks]
    if args.unknown_audio:  # music the index does not hold: key -1 can never be right
        unheard = db.execute("SELECT track_id FROM tracks WHERE audio_path IS NULL AND duration_ms > 50000 "
                             "ORDER BY track_key").fetchall()[: args.tracks]
        rows = [(-1, str(f)) for (tid,) in unheard for f in sorted(args.unknown_audio.glob(f"{tid}.*"))[:1]]
    fp = FingerprintIndex(args.data_dir / "fingerprints.sqlite", read_only=True)
    rng = np.random.default_rng(0)
    results: dict[str, dict[str, dict[str, float]]] = {"one speed": {}, "speed variants": {}}
    speeds = SPEEDS if not args.unknown_audio else (1.0, 1.03)  # unknown music: only the cost and wrong answers
    clips = [(key, excerpt(p, 30.0, args.seconds * 1.1)) for key, p in rows]
    if args.phone:
        from index_builder.augment import phone_degrade

        clips = [(k, phone_degrade(x, SR, rng)) for k, x in clips]
    for s in speeds:
        for label, variants in (("one speed", NOMINAL_ONLY), ("speed variants", speed_variants(args.tolerance))):
            right = confident_right = confident_wrong = 0
            t0 = time.perf_counter()
            for key, x in clips:
                q = change_speed(x, s)[: int(args.seconds * SR)]
                found = match_any_speed(fp, q, SR, variants=variants, stop_confidence=THRESHOLD)
                if not found:
                    continue
                m = found[0]
                right += m.track_key == key
                confident_right += m.track_key == key and m.confidence >= THRESHOLD
                confident_wrong += m.track_key != key and m.confidence >= THRESHOLD
            n = len(clips)
            results[label][f"{s:g}"] = {"top1": right / n, "says_right": confident_right / n,
                                        "says_wrong": confident_wrong / n,
                                        "ms_per_query": (time.perf_counter() - t0) / n * 1000}
            print(f"{label:15s} speed {s:<6g} top1 {right / n:.3f}  says right {confident_right / n:.3f}  "
                  f"says wrong {confident_wrong / n:.3f}  {results[label][f'{s:g}']['ms_per_query']:.0f} ms",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps({"tracks": len(clips), "seconds": args.seconds, "phone": args.phone,
                                         "results": results}, indent=1))


if __name__ == "__main__":
    main()
