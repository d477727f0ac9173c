"""How much a corpus's loudness alone tells its artists apart (issue 29: is level a production cue?).

    python bench/loudness_cue.py --corpus ../devdata/set_a --corpus ../devdata/set_b

Per track, the active RMS level of the first 2 minutes (``engine.audio.loudness_gain_db``, the
product's own measure, before its level step); then same-artist P@5 when tracks are ranked by
nothing but how close their levels are, beside chance.  Well above chance means albums are
mastered at their own levels, and a figure that keeps raw level partly "finds" an album by its
loudness, a cue a phone recording never carries.  Run by hand; results in docs/quality.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchutil


def levels(corpus: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(level dBFS, artist)`` per track of ``corpus/tracks.csv`` with audio in ``corpus/catalogue``."""
    from engine import audio as A
    from engine.settings import Settings

    from benchutil import corpus_labels

    lim = A.limits_from_settings(Settings.from_env(), for_catalogue=True)
    rows = {t: d["artist"] for t, d in corpus_labels(corpus).items()}
    out, arts = [], []
    for t in sorted(rows):
        src = next((corpus / "catalogue").glob(f"{t}.*"), None)
        if src is None:
            continue
        frames = A.decode_stereo(src, 16000, 120.0, lim.timeout_s).frames
        mono, _ = A.channels_to_mono(frames, 16000)
        gain, active = A.loudness_gain_db(mono, 16000)
        if active > 0:
            out.append(A.TARGET_RMS_DBFS - gain)
            arts.append(rows[t])
    return np.array(out), np.array(arts)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, action="append", required=True)
    args = p.parse_args()
    for corpus in args.corpus:
        lv, arts = levels(corpus)
        d = -np.abs(lv[:, None] - lv[None, :])
        np.fill_diagonal(d, -np.inf)
        top = np.argsort(-d, 1)[:, :5]
        p5 = float((arts[top] == arts[:, None]).mean())
        chance = float(np.mean([(np.sum(arts == a) - 1) / (len(arts) - 1) for a in arts]))
        within = float(np.mean([lv[arts == a].std() for a in set(arts)]))
        print(f"{corpus.name}: {len(lv)} tracks, level {lv.mean():.1f} dBFS (sd {lv.std():.1f}, within an artist "
              f"{within:.1f}); same-artist P@5 from the level alone {p5:.3f}, chance {chance:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
