"""Rows without audio (issue 14): how good are answers that include rows placed by their features?

    SYNESTHETE_DATA_DIR=DIR python bench/unheard_eval.py [--json out.json]

On a built index whose catalogue has rows with audio ("heard") and rows placed by
their Spotify(-like) features ("not heard"), every heard track seeds ``similar_to``
(raw ranking, k = 5) and reports same-artist and same-genre P@5 of:
- the answers as returned (heard and not heard mixed),
- the not-heard answers alone,
- audio-only answers (the first five heard tracks of a longer ranking), the reference;
and every not-heard row seeds ``similar_to`` too (P@5 of its answers).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _p(seed, answers, what: str) -> list[float]:
    if what == "artist":
        return [float(a.track.artist == seed.artist) for a in answers]
    return [float(bool(set(seed.genres) & set(a.track.genres))) for a in answers]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    from engine.service import SynestheteService
    from engine.settings import Settings

    svc = SynestheteService(Settings.from_env())
    try:
        indexed = set(svc.catalogue.indexed_state())
        tracks = list(svc.catalogue.all_tracks())
        heard = [t for t in tracks if t.track_key in indexed]
        unheard = [t for t in tracks if t.track_key not in indexed and t.audio_features]
        acc: dict[str, list[float]] = {}
        share = []
        for t in heard:
            mixed = svc.similar_to(t.track_id, 5, diverse=False).results
            longer = svc.similar_to(t.track_id, 60, diverse=False).results
            audio_only = [r for r in longer if r.heard][:5]
            share.append(np.mean([not r.heard for r in mixed]))
            for what in ("artist", "genre"):
                acc.setdefault(f"mixed_{what}", []).extend(_p(t, mixed, what))
                acc.setdefault(f"unheard_answers_{what}", []).extend(_p(t, [r for r in mixed if not r.heard], what))
                acc.setdefault(f"audio_only_{what}", []).extend(_p(t, audio_only, what))
        for t in unheard:
            res = svc.similar_to(t.track_id, 5, diverse=False).results
            for what in ("artist", "genre"):
                acc.setdefault(f"unheard_seed_{what}", []).extend(_p(t, res, what))
        out = {"heard": len(heard), "unheard": len(unheard), "share_unheard_in_answers": float(np.mean(share)),
               **{f"{k}_p5": float(np.mean(v)) if v else None for k, v in sorted(acc.items())}}
    finally:
        svc.close()
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
