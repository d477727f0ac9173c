"""End-to-end query latency and memory: decode / fingerprint / embed / search.

Runs voice-note-like queries (10 s and 30 s by default, Opus mono like a Discord
voice message) against an index that is already built, through the real service,
and prints p50/p95 per stage plus the process's peak RSS.  Results go to JSON so
runs compare.

    python bench/bench_query.py --data-dir DATA [--queries DIR_OR_CSV] [--n 30] [--json out.json]

With ``--queries`` pointing at a dev corpus (queries.csv), its phone10 queries are
used for 10 s, and 30-s notes are cut from catalogue tracks and degraded.  Without
it, excerpts are cut from the indexed catalogue's own audio files.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.settings import Settings
from benchutil import pct


def make_notes(svc, seconds: float, n: int, workdir: Path, rng: np.random.Generator,
               sources: list[Path] | None = None) -> list[Path]:
    """Cut ``n`` voice-note-like clips from catalogue audio (or ``sources``): degraded and Opus-encoded."""
    from engine.audio import decode, limits_from_settings

    try:
        from index_builder.augment import phone_degrade
    except ImportError:  # pragma: no cover
        phone_degrade = None
    if sources is not None:
        paths = list(sources)
    else:
        paths = [t.audio_path for t in svc.catalogue.all_tracks() if t.audio_path]
    rng.shuffle(paths)
    out = []
    for p in paths:
        if len(out) >= n:
            break
        try:
            a = decode(p, 16000, limits_from_settings(svc.settings, for_catalogue=True))
        except Exception:  # noqa: BLE001
            continue
        if a.duration_s < seconds + 1:
            continue
        start = int(rng.uniform(0, a.duration_s - seconds) * 16000)
        clip = a.samples[start : start + int(seconds * 16000)]
        if phone_degrade is not None:
            clip = phone_degrade(clip, 16000, rng, opus=False)
        path = workdir / f"note{len(out):03d}_{int(seconds)}s.ogg"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", "16000", "-ac", "1", "-i", "pipe:",
                        "-c:a", "libopus", "-b:a", "32k", str(path)],
                       input=np.ascontiguousarray(clip, "<f4").tobytes(), check=True)
        out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--queries", type=Path, help="dev corpus queries.csv (phone10 used for the 10-s case)")
    ap.add_argument("--notes-from", type=Path,
                    help="cut notes from this folder's *.mp3 instead of the catalogue's audio (an index "
                         "without audio, e.g. bench/gen_catalogue.py's; nothing is identified then)")
    ap.add_argument("--n", type=int, default=30, help="queries per duration")
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0, 30.0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from engine.service import SynestheteService

    settings = Settings.from_env().replace(data_dir=args.data_dir)
    t0 = time.perf_counter()
    svc = SynestheteService(settings)
    startup_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    report: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} cores={__import__('os').cpu_count()}",
        "model_id": svc.model_id, "tracks": svc.catalogue.count(), "startup_s": round(startup_s, 2), "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.seconds:
            if args.queries and seconds == 10.0:
                root = args.queries.parent
                with open(args.queries) as fh:
                    files = [root / r["query_file"] for r in csv.DictReader(fh) if r["kind"] == "phone10"]
                files = files[: args.n]
            else:
                sources = sorted(args.notes_from.glob("*.mp3")) if args.notes_from else None
                files = make_notes(svc, seconds, args.n, Path(tmp), rng, sources)
            svc.recommend(files[0])  # warm-up: lazy model init, collection load
            stages: dict[str, list[float]] = {}
            for f in files:
                rec = svc.recommend(f)
                for k, v in rec.timings_ms.items():
                    stages.setdefault(k, []).append(v)
            report["runs"][f"{int(seconds)}s"] = {
                "n": len(files),
                **{k: {"p50_ms": round(pct(v, 50), 1), "p95_ms": round(pct(v, 95), 1),
                       "mean_ms": round(statistics.fmean(v), 1)} for k, v in stages.items()},
            }
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    svc.close()
    for name, run in report["runs"].items():
        print(f"{name} voice notes (n={run['n']}):")
        for stage in ("decode", "fingerprint", "embed", "search", "total"):
            if stage in run:
                print(f"  {stage:>12}: p50 {run[stage]['p50_ms']:7.1f} ms   p95 {run[stage]['p95_ms']:7.1f} ms")
    print(f"peak RSS {report['peak_rss_mb']} MB; startup {report['startup_s']} s; model {report['model_id']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
