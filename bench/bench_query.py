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
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.settings import Settings
from benchutil import cut_voice_notes, note_sources, pct


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
                from engine.audio import limits_from_settings

                notes = cut_voice_notes(note_sources(svc.catalogue, args.notes_from), seconds, args.n, rng,
                                        limits_from_settings(settings, for_catalogue=True), kbps=32)
                files = []
                for i, (data, _) in enumerate(notes):
                    files.append(Path(tmp) / f"note{i:03d}_{int(seconds)}s.ogg")
                    files[-1].write_bytes(data)
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
