"""Listen live: how many seconds of audio until a confident identification?

Simulates the page's live mode on the dev corpus's voice-message-like queries
(``kind == phone10`` in queries.csv): for each query, the first 2, 4, 6, 8, 10 s
are encoded the way the browser's MediaRecorder sends them (Opus in WebM,
64 kb/s) and handed to the *same* code path a WebSocket session uses
(``web.live.LiveSession.add`` + ``guess``, i.e. ``service.arecommend`` on the
accumulated stream).  Listening stops at the first guess whose identification
confidence reaches SYNESTHETE_WEB_LIVE_STOP_CONFIDENCE, as the live session does.

Reported, over queries:
* time to a confident stop (median / p75 seconds of audio; "never" counts as
  more than the longest prefix), and how many stops named the wrong track;
* time to a first correct "sounds like" (confidence >= identify threshold);
* share of queries answered by each prefix length, and the cost of one guess.

    python bench/live_time_to_answer.py --corpus /work/data/dev --data-dir /work/data/web_bench \
        [--prefixes 2,4,6,8,10] [--limit N] [--json out.json]

The index must have been built with the same backbone (SYNESTHETE_BACKBONE) and head.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.service import SynestheteService
from engine.settings import Settings
from web.live import LiveSession


def browser_webm(path: Path, seconds: float) -> bytes:
    """The first ``seconds`` of ``path`` as the browser's MediaRecorder would stream them."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-t", f"{seconds}", "-ac", "1", "-ar", "48000",
         "-c:a", "libopus", "-b:a", "64k", "-f", "webm", "pipe:"],
        capture_output=True, check=True)
    return out.stdout


def pct(values: list[float], q: float) -> float:
    """Percentile with infinities kept (a 'never' sorts last)."""
    s = sorted(values)
    if not s:
        return math.nan
    i = min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))
    return s[i]


def fmt_s(v: float, longest: float) -> str:
    return f"> {longest:g} s (never)" if math.isinf(v) else f"{v:g} s"


async def run(args: argparse.Namespace) -> dict:
    settings = Settings.from_env(env_file=None)
    settings = settings.replace(data_dir=args.data_dir, torch_threads=args.threads or settings.torch_threads,
                                **({"backbone": args.backbone} if args.backbone else {}))
    prefixes = [float(x) for x in args.prefixes.split(",")]
    with open(args.corpus / "queries.csv", newline="") as fh:  # noqa: ASYNC230 - once, before any query
        rows = [r for r in csv.DictReader(fh) if r["kind"] == args.kind]
    if args.limit:
        step = max(1, len(rows) // args.limit)
        rows = rows[::step][: args.limit]
    service = SynestheteService(settings)
    stop_c, ident_c = settings.web_live_stop_confidence, settings.identify_threshold
    per_query = []
    guess_ms: list[float] = []
    t_start = time.perf_counter()
    try:
        for n, row in enumerate(rows, 1):
            path = args.corpus / row["query_file"]
            rec = {"query": row["query_file"], "truth": row["track_id"], "first_correct_s": math.inf,
                   "stop_s": math.inf, "stop_correct": None, "guesses": []}
            for p in prefixes:
                session = LiveSession(service, settings)
                session.add(browser_webm(path, p))
                t0 = time.perf_counter()
                try:
                    g = await session.guess()
                except Exception as exc:  # noqa: BLE001 - an error is a result here
                    rec["guesses"].append({"s": p, "error": getattr(exc, "kind", type(exc).__name__)})
                    continue
                guess_ms.append((time.perf_counter() - t0) * 1000)
                ident = g.rec.identified if g.rec is not None else None
                got = ident.track.track_id if ident else None
                conf = ident.confidence if ident else 0.0
                rec["guesses"].append({"s": p, "heard": round(g.seconds, 2), "id": got, "conf": round(conf, 3),
                                       "method": ident.method if ident else None})
                if got == row["track_id"] and conf >= ident_c and math.isinf(rec["first_correct_s"]):
                    rec["first_correct_s"] = p
                if g.confident:
                    rec["stop_s"], rec["stop_correct"] = p, got == row["track_id"]
                    break
            per_query.append(rec)
            if args.verbose:
                print(f"[{n}/{len(rows)}] {row['query_file']}: stop {rec['stop_s']} "
                      f"({'ok' if rec['stop_correct'] else rec['stop_correct']}), first {rec['first_correct_s']}",
                      flush=True)
    finally:
        service.close()

    longest = prefixes[-1]
    stops = [r["stop_s"] if r["stop_correct"] else math.inf for r in per_query]
    firsts = [r["first_correct_s"] for r in per_query]
    wrong = sum(1 for r in per_query if r["stop_correct"] is False)
    summary = {
        "queries": len(per_query), "kind": args.kind, "prefixes_s": prefixes,
        "stop_confidence": stop_c, "identify_threshold": ident_c, "backbone": settings.backbone,
        "median_s_to_confident_stop": pct(stops, 50), "p75_s_to_confident_stop": pct(stops, 75),
        "median_s_to_first_correct": pct(firsts, 50), "p75_s_to_first_correct": pct(firsts, 75),
        "wrong_confident_stops": wrong,
        "stopped_correctly_by_s": {f"{p:g}": sum(1 for s in stops if s <= p) / max(1, len(stops)) for p in prefixes},
        "first_correct_by_s": {f"{p:g}": sum(1 for s in firsts if s <= p) / max(1, len(firsts)) for p in prefixes},
        "guess_ms_median": statistics.median(guess_ms) if guess_ms else None,
        "guess_ms_p95": pct(guess_ms, 95) if guess_ms else None,
        "elapsed_s": round(time.perf_counter() - t_start, 1),
    }
    print(f"\nlive time-to-answer on {len(per_query)} {args.kind} queries (backbone {settings.backbone}, "
          f"stop at confidence >= {stop_c}):")
    print(f"  confident stop, correct:  median {fmt_s(summary['median_s_to_confident_stop'], longest)}, "
          f"p75 {fmt_s(summary['p75_s_to_confident_stop'], longest)}; wrong stops: {wrong}")
    print(f"  first correct 'sounds like' (>= {ident_c}): median "
          f"{fmt_s(summary['median_s_to_first_correct'], longest)}, p75 "
          f"{fmt_s(summary['p75_s_to_first_correct'], longest)}")
    print("  stopped correctly by:  " + "  ".join(f"{k} s {v:.0%}" for k, v in summary["stopped_correctly_by_s"].items()))
    print("  first correct by:      " + "  ".join(f"{k} s {v:.0%}" for k, v in summary["first_correct_by_s"].items()))
    if guess_ms:
        print(f"  one guess (decode + identify + recommend): median {summary['guess_ms_median']:.0f} ms, "
              f"p95 {summary['guess_ms_p95']:.0f} ms")
    if args.json:
        def clean(o):
            return None if isinstance(o, float) and math.isinf(o) else o
        Path(args.json).write_text(json.dumps(
            {"summary": {k: clean(v) for k, v in summary.items()},
             "queries": [{k: clean(v) for k, v in r.items()} for r in per_query]}, indent=1))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", type=Path, default=Path("/work/data/dev"), help="folder with queries.csv")
    p.add_argument("--data-dir", type=Path, required=True, help="the index built from the corpus's catalogue")
    p.add_argument("--kind", default="phone10", help="query kind in queries.csv (default phone10)")
    p.add_argument("--prefixes", default="2,4,6,8,10", help="seconds of audio heard at each guess")
    p.add_argument("--backbone", default=None, help="override SYNESTHETE_BACKBONE (must match the index)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--limit", type=int, default=0, help="evenly spaced subset of N queries (0 = all)")
    p.add_argument("--json", type=Path, help="write the summary and per-query guesses here")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
