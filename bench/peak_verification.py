"""Is the offset verification worth feeding into identification? Measured before it is built in (issue 23).

Usage::

    python bench/peak_verification.py --data-dir DIR [--data-dir DIR2 ...] [--tracks 0] [--seed 1] [--json out.json]

Each ``DIR`` is a built index whose catalogue rows still point at their audio (a dev corpus
built with ``synesthete-index build``).  For every catalogue track (or the first ``--tracks``),
a 10-s excerpt from 30 s in is made phone-like (``phone_degrade``, as bench/identify_says.py
does) and a clean one is kept; each is asked as 10 s and the phone one also as its first 5 s.

For each recording it asks the service's own identification path (``landmark_candidates``
with speed variants, ``observe``, ``decide`` with the index's calibration) twice: **before**,
with the landmark candidates unverified (what an index without peaks gives), and **with** the
offset verification (``FingerprintIndex.verify``: the share of the query's single spectral
peaks that land within one bin and one frame of the candidate's reference peaks at the
landmark offset, Wang 2003; ``engine.identify.verified_rule`` names the best candidate when
that is beyond a 1-in-10^10 chance).  The dev indexes were built before the index kept peaks,
so the reference peaks are extracted here from each candidate's audio, decoded as the build
decodes it, and handed to the index's own ``verify``.  "Unknown" is the same recording with its
song removed (``evidence(obs, exclude=key)``), so anything said there names a song the
catalogue lacks.

Reported per corpus and kind: says right / says wrong / unknown says, before and with the
verification; the verification surprise of right best candidates and of the unknown ones'
best (the margin between them is the question), and how many unknown ones reach the cut-off.
Nothing it writes belongs in the repository.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchutil import catalogue_tracks, corpus_main, phone_notes  # noqa: E402

from engine.audio import DecodedAudio, from_samples  # noqa: E402
from engine.identify import VERIFIED_SURPRISE, Observations, decide, evidence, verification_surprise  # noqa: E402
from engine.service import SynestheteService  # noqa: E402
from engine.settings import Settings  # noqa: E402


def unverified(obs: Observations) -> Observations:
    """The same observations as an index without peaks would give them (what the service decided before)."""
    plain = tuple(dataclasses.replace(m, peaks_matched=None, peaks_total=0) for m in obs.matches)
    return dataclasses.replace(obs, matches=plain)


def measure_one(svc: SynestheteService, d: DecodedAudio, key: int, settings: Settings) -> dict:
    """Before / with the verification, for the recording (known) and with its song removed (unknown)."""
    cal, thr = svc.calibration.calibration, settings.identify_threshold
    obs = svc.observe(d, svc.landmark_candidates(d), svc.embedder.embed(d.samples, settings.query_hop_s), 2)
    row: dict = {"key": key}
    for case, exclude in (("known", None), ("unknown", key)):
        ev = evidence(obs, exclude=exclude)
        before = decide(evidence(unverified(obs), exclude=exclude), cal, threshold=thr)
        after = decide(ev, cal, threshold=thr)
        top = ev.matches[0] if ev.matches else None
        row[case] = {"before": before.track_key if before else None, "after": after.track_key if after else None,
                     "top": int(top.track_key) if top else None,
                     "share": round(top.peaks_matched / top.peaks_total, 4)
                     if top is not None and top.peaks_total and top.peaks_matched is not None else 0.0,
                     "surprise": round(verification_surprise(ev, int(top.track_key)), 2) if top else 0.0}
    return row


def quantiles(xs: list[float]) -> list[float]:
    """min, 5%, median, 95%, max of ``xs`` (empty list for none)."""
    return [round(float(np.quantile(xs, q)), 3) for q in (0.0, 0.05, 0.5, 0.95, 1.0)] if xs else []


def summarise(rows: list[dict]) -> dict:
    """Says right / wrong / unknown-says before and with the verification; the two surprise distributions."""
    n = len(rows)

    def rate(pred) -> float:
        return round(sum(bool(pred(r)) for r in rows) / n, 4)

    out = {"n": n, "landmark_top1_right": rate(lambda r: r["known"]["top"] == r["key"])}
    for when in ("before", "after"):
        out[when] = {"says_right": rate(lambda r: r["known"][when] == r["key"]),
                     "says_wrong": rate(lambda r: r["known"][when] not in (None, r["key"])),
                     "unknown_says": rate(lambda r: r["unknown"][when] is not None)}
    right = [r["known"] for r in rows if r["known"]["top"] == r["key"]]
    unknown = [r["unknown"] for r in rows if r["unknown"]["top"] is not None]
    out["right_top"] = {"share": quantiles([v["share"] for v in right]),
                        "surprise": quantiles([v["surprise"] for v in right])}
    out["unknown_top"] = {"share": quantiles([v["share"] for v in unknown]),
                          "surprise": quantiles([v["surprise"] for v in unknown])}
    out["unknown_over_cutoff"] = rate(lambda r: r["unknown"]["surprise"] >= VERIFIED_SURPRISE)
    return out


def run_corpus(data_dir: Path, n_tracks: int, seed: int) -> dict:
    """Every track's three recordings through :func:`measure_one`; the summary per kind and the raw rows."""
    settings = Settings.from_env(env_file=None).replace(data_dir=data_dir, identify_verification=True)
    svc = SynestheteService(settings, read_only=True)
    sr = svc.embedder.sample_rate
    db = sqlite3.connect(data_dir / "catalogue.sqlite")
    keys = catalogue_tracks(db, n_tracks)
    # the product's own verification (FingerprintIndex.verify) on the peaks the index stores
    # (since landmark version 2 every track's peaks are stored: its pairs are derived from them)
    rows: dict[str, list[dict]] = {}
    for key, kind, x in phone_notes(keys, sr, np.random.default_rng(seed), data_dir.name, clean=True):
        rows.setdefault(kind, []).append(measure_one(svc, from_samples(x, sr, "bench"), int(key), settings))
    svc.close()
    return {"data_dir": str(data_dir), "tracks": len(keys), "kinds": {k: summarise(v) for k, v in rows.items()},
            "rows": rows}


if __name__ == "__main__":
    sys.exit(corpus_main(__doc__, run_corpus, {"verified_surprise": VERIFIED_SURPRISE}))
