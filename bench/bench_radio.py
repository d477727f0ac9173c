"""Song radio on built indexes: time and the rules of issue 31 step 2, every catalogue track a seed.

    SYNESTHETE_TORCH_THREADS=1 python bench/bench_radio.py --index ../devdata/index_a --index ../devdata/index_b \
        [--n 25] [--seeds 0] [--json out.json]

Per index: p50/p95 of ``SynestheteService.radio`` (seed lookup, one search, one vector fetch,
the walk), and for every seed whether the radio has no repeats, at least 8 artists (when the
catalogue has them), min(n, 2 x artists) tracks, and every track above the catalogue's median
pair to the track before it.  Run by hand; results go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_index(index: Path, n: int, seeds: int) -> dict:
    from engine.service import SynestheteService
    from engine.settings import Settings

    svc = SynestheteService(dataclasses.replace(Settings.from_env(), data_dir=index.resolve()), read_only=True)
    try:
        tracks = [t for t in svc.catalogue.all_tracks()]
        artists = len({t.artist for t in tracks})
        want = min(n, 2 * artists)
        median = float(svc.match_scale.quantiles[len(svc.match_scale.quantiles) // 2])
        ids = [t.track_id for t in tracks][: seeds or None]
        svc.radio(ids[0], n)  # warm
        times, short, repeats, few_artists, below = [], 0, 0, 0, 0
        from engine.errors import SynestheteError

        for tid in ids:
            t0 = time.perf_counter()
            try:
                rec = svc.radio(tid, n)
            except SynestheteError:  # a track without a vector (its audio failed to build): not a seed
                continue
            times.append((time.perf_counter() - t0) * 1000)
            got = [r.track.track_id for r in rec.results]
            short += len(got) < want
            repeats += len(set(got)) != len(got) or tid in got
            few_artists += len({r.track.artist for r in rec.results}) < min(8, artists)
            below += any(r.similarity < median for r in rec.results)
        return {"index": str(index), "tracks": len(tracks), "artists": artists, "n": n, "want": want,
                "seeds": len(ids), "p50_ms": float(np.percentile(times, 50)),
                "p95_ms": float(np.percentile(times, 95)), "short": short, "repeats": repeats,
                "under_8_artists": few_artists, "a_step_below_median": below, "median_pair": median}
    finally:
        svc.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", type=Path, action="append", required=True)
    p.add_argument("--n", type=int, default=25)
    p.add_argument("--seeds", type=int, default=0, help="seeds per index (0 = every track)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    out = {"command": " ".join(sys.argv), "date": datetime.now(UTC).isoformat(timespec="seconds"),
           "machine": f"{platform.node()} {platform.machine()}", "runs": []}
    for index in args.index:
        r = run_index(index, args.n, args.seeds)
        out["runs"].append(r)
        print(f"{index.name}: {r['tracks']} tracks, {r['artists']} artists, radio of {r['n']} (expect {r['want']}): "
              f"p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms over {r['seeds']} seeds; short {r['short']}, "
              f"repeats {r['repeats']}, under 8 artists {r['under_8_artists']}, a step below the median pair "
              f"({r['median_pair']:.3f}) {r['a_step_below_median']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
