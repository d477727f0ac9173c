"""Concurrency: N voice notes at once through ``arecommend``, name search meanwhile.

    python bench/bench_concurrency.py --data-dir DIR [--concurrent 10] [--seconds 30] [--rounds 3] [--json out.json]

Each round submits ``--concurrent`` 30-s voice notes at the same moment (cut from
catalogue tracks at random places, degraded with ``phone_degrade``, Ogg/Opus 24
kbit/s) and waits for all of them. A client that gets ``BusyError`` (the service
admits ``workers * 4`` queries at once) waits 0.5 s and tries again, as the bot
and the page do on a 503 with Retry-After; its latency counts from its *first*
attempt. Figures: p50/p95 latency per note, notes per minute (notes answered /
wall time of the rounds), busy refusals, and identification accuracy.

While the notes run, one more task on the same event loop calls
``asearch_tracks`` (random name prefixes) every 50 ms: its p50/p95 show whether
the loop stays free while the CPU work runs in the executor. The same search loop
is also measured alone first (``idle``), for comparison. An event-loop lag probe
(``asyncio.sleep(0.05)`` overshoot) runs all the time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.settings import Settings  # noqa: E402
from benchutil import cut_voice_notes, note_sources, pct, rss_mb  # noqa: E402


async def run(args: argparse.Namespace) -> dict:
    from engine.errors import BusyError
    from engine.service import SynestheteService

    settings = Settings.from_env().replace(data_dir=args.data_dir)
    if args.workers:
        settings = settings.replace(workers=args.workers)
    svc = SynestheteService(settings)
    try:
        rng = np.random.default_rng(args.seed)
        t = time.perf_counter()
        from engine.audio import limits_from_settings

        notes = cut_voice_notes(note_sources(svc.catalogue, args.notes_from), args.seconds, args.concurrent, rng,
                                limits_from_settings(settings, for_catalogue=True))
        prep_s = time.perf_counter() - t
        await svc.arecommend(notes[0][0])  # warm-up
        names = [t.name for t in svc.catalogue.all_tracks()] + [t.artist for t in svc.catalogue.all_tracks()]
        prng = random.Random(args.seed)

        lag: list[float] = []
        stop_lag = asyncio.Event()

        async def lag_probe() -> None:
            while not stop_lag.is_set():
                t0 = time.perf_counter()
                await asyncio.sleep(0.05)
                lag.append(time.perf_counter() - t0 - 0.05)

        async def search_loop(stop: asyncio.Event, out: list[float]) -> None:
            while not stop.is_set():
                name = prng.choice(names)
                q = name[: prng.randint(2, max(2, len(name)))]
                t0 = time.perf_counter()
                await svc.asearch_tracks(q, 10)
                out.append(time.perf_counter() - t0)
                await asyncio.sleep(0.05)

        lag_task = asyncio.create_task(lag_probe())
        # name search alone
        idle_search: list[float] = []
        stop = asyncio.Event()
        task = asyncio.create_task(search_loop(stop, idle_search))
        await asyncio.sleep(args.idle_s)
        stop.set()
        await task
        idle_lag = list(lag)
        lag.clear()

        latencies: list[float] = []
        busy = 0
        correct = 0
        answered = 0
        errors: list[str] = []

        async def one(data: bytes, expected: str) -> None:
            nonlocal busy, correct, answered
            t0 = time.perf_counter()
            while True:
                try:
                    rec = await svc.arecommend(data)
                    break
                except BusyError:
                    busy += 1
                    await asyncio.sleep(0.5)
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{type(exc).__name__}: {exc}")
                    return
            latencies.append(time.perf_counter() - t0)
            answered += 1
            correct += int(rec.identified is not None and rec.identified.track.track_id == expected)

        busy_search: list[float] = []
        stop = asyncio.Event()
        task = asyncio.create_task(search_loop(stop, busy_search))
        t_start = time.perf_counter()
        round_walls = []
        for _ in range(args.rounds):
            tr = time.perf_counter()
            await asyncio.gather(*(one(d, e) for d, e in notes))
            round_walls.append(time.perf_counter() - tr)
        wall = time.perf_counter() - t_start
        stop.set()
        await task
        stop_lag.set()
        await lag_task
        busy_lag = list(lag)
        return {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name] + sys.argv),
            "machine": f"{platform.node()} {platform.machine()} cores={os.cpu_count()} load={os.getloadavg()}",
            "model_id": svc.model_id, "tracks": svc.catalogue.count(),
            "workers": settings.workers, "admitted_at_once": max(1, settings.workers) * 4,
            "concurrent": args.concurrent, "seconds": args.seconds, "rounds": args.rounds,
            "prepare_s": round(prep_s, 1),
            "notes_answered": answered, "notes_correct": correct, "errors": errors[:10],
            "busy_refusals": busy,
            "latency_s": {"p50": round(pct(latencies, 50), 2), "p95": round(pct(latencies, 95), 2),
                          "max": round(max(latencies, default=float("nan")), 2)},
            "round_wall_s": [round(x, 2) for x in round_walls],
            "notes_per_minute": round(answered / wall * 60, 1),
            "search_idle_ms": {"n": len(idle_search), "p50": round(pct(idle_search, 50) * 1000, 1),
                               "p95": round(pct(idle_search, 95) * 1000, 1)},
            "search_during_notes_ms": {"n": len(busy_search), "p50": round(pct(busy_search, 50) * 1000, 1),
                                       "p95": round(pct(busy_search, 95) * 1000, 1),
                                       "max": round(max(busy_search, default=float("nan")) * 1000, 1)},
            "loop_lag_ms": {"idle_p95": round(pct(idle_lag, 95) * 1000, 1),
                            "during_p50": round(pct(busy_lag, 50) * 1000, 1),
                            "during_p95": round(pct(busy_lag, 95) * 1000, 1),
                            "during_max": round(max(busy_lag, default=0) * 1000, 1)},
            "rss_mb_end": round(rss_mb(), 1),
            "peak_rss_mb": round(__import__("resource").getrusage(__import__("resource").RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    finally:
        svc.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--concurrent", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle-s", type=float, default=5.0, help="seconds of name search alone, for comparison")
    ap.add_argument("--workers", type=int, default=0, help="override Settings.workers (0 = from env/default)")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--notes-from", type=Path,
                    help="cut notes from this folder's *.mp3 instead of the catalogue's audio (for an index without audio)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)
    r = asyncio.run(run(args))
    print(f"{r['concurrent']} x {int(r['seconds'])}-s voice notes at once, {r['rounds']} rounds, "
          f"workers={r['workers']} (admits {r['admitted_at_once']} at once)")
    print(f"  answered {r['notes_answered']}, identified correctly {r['notes_correct']}, busy refusals "
          f"{r['busy_refusals']}, errors {len(r['errors'])}")
    print(f"  latency p50 {r['latency_s']['p50']} s  p95 {r['latency_s']['p95']} s  max {r['latency_s']['max']} s; "
          f"rounds {r['round_wall_s']} s; {r['notes_per_minute']} notes/min")
    print(f"  name search idle: p50 {r['search_idle_ms']['p50']} ms p95 {r['search_idle_ms']['p95']} ms "
          f"(n={r['search_idle_ms']['n']})")
    s = r["search_during_notes_ms"]
    print(f"  name search during notes: p50 {s['p50']} ms p95 {s['p95']} ms max {s['max']} ms (n={s['n']})")
    print(f"  event-loop lag ms: {r['loop_lag_ms']}; RSS at end {r['rss_mb_end']} MB")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return 0 if not r["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
