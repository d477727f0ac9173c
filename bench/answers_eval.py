"""What people are shown, measured on a built index through the service itself (issues 13 and 14).

    SYNESTHETE_DATA_DIR=/work/devdata python bench/answers_eval.py [--json out.json]

Every catalogue track with audio seeds ``SynestheteService.similar_to`` twice: with the
discovery rule (the default answer) and with ``diverse=False`` (the raw similarity
ranking, what issue 13's figures are about).  Reported, over all seeds:

- raw ranking: same-artist P@5, same-genre P@5, artist-filtered same-genre P@5
  (the query's own artist removed, from the diverse answers' ranking);
- default answers: share with >= 3 distinct artists among the five, mean distinct
  artists, same-genre P@5, and how often the seed's own artist takes more than one slot;
- match levels and reasons: distribution of the 1-5 match level, share of answers
  whose reason names something shared (not the "similar overall sound" fallback);
- latency of one ``similar_to`` (median / p95 ms) on this machine.

Reads the index only (milvus-lite allows one process: stop the web page / bot first).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchutil import pct  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path)
    p.add_argument("--k", type=int, default=5)
    args = p.parse_args()
    from engine.answers import distinct_artists
    from engine.service import SynestheteService
    from engine.settings import Settings

    settings = Settings.from_env()
    svc = SynestheteService(settings)
    try:
        indexed = set(svc.catalogue.indexed_state())
        seeds = [t for t in svc.catalogue.all_tracks() if t.track_key in indexed]
        raw_artist, raw_genre, div_genre, filt_genre, distinct, three, own_twice = [], [], [], [], [], [], []
        levels: Counter = Counter()
        explained, lat = [], []
        for t in seeds:
            t0 = time.perf_counter()
            div = svc.similar_to(t.track_id, args.k).results
            lat.append((time.perf_counter() - t0) * 1000)
            raw = svc.similar_to(t.track_id, args.k, diverse=False).results
            g = set(t.genres)
            raw_artist.append(np.mean([r.track.artist == t.artist for r in raw]))
            if g:
                raw_genre.append(np.mean([bool(g & set(r.track.genres)) for r in raw]))
                div_genre.append(np.mean([bool(g & set(r.track.genres)) for r in div]))
                others = [r for r in div if r.track.artist != t.artist]
                if others:
                    filt_genre.append(np.mean([bool(g & set(r.track.genres)) for r in others]))
            n_art = distinct_artists(div, lambda r: r.track.artist)
            distinct.append(n_art)
            three.append(n_art >= 3)
            own_twice.append(sum(r.track.artist == t.artist for r in div) > 1)
            for r in div:
                levels[r.match] += 1
                explained.append(bool(r.reason) and r.reason != "similar overall sound")
        out = {
            "seeds": len(seeds),
            "raw_artist_p5": float(np.mean(raw_artist)),
            "raw_genre_p5": float(np.mean(raw_genre)) if raw_genre else None,
            "diverse_genre_p5": float(np.mean(div_genre)) if div_genre else None,
            "diverse_other_artists_genre_p5": float(np.mean(filt_genre)) if filt_genre else None,
            "share_with_3_plus_artists": float(np.mean(three)),
            "mean_distinct_artists": float(np.mean(distinct)),
            "seed_artist_more_than_once": float(np.mean(own_twice)),
            "match_levels": {str(k): v for k, v in sorted(levels.items(), key=lambda kv: str(kv[0]))},
            "share_with_a_specific_reason": float(np.mean(explained)),
            "similar_to_ms_median": pct(lat, 50),
            "similar_to_ms_p95": pct(lat, 95),
            "about": svc.about(),
        }
    finally:
        svc.close()
    print(json.dumps(out, indent=1, default=str))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
