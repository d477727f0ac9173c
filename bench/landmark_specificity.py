"""Pairs or triplets: how specific should a landmark hash be?  Measured on real recordings.

Why: a pair hash ``(f1, df, dt)`` has 21 bits, so at 684 h of catalogue a 10-s note's hashes
touch ~5.7 M index rows (docs/identification.md, "At catalogue scale").  A hash of three peaks
(Panako, Six & Leman 2014; Sonnleitner & Widmer 2016 use four) has ~10 more bits, so its
posting lists are ~1000x shorter -- but all three peaks must survive the phone, not two.  This
bench measures both sides of that trade on the dev corpora's own phone-like recordings
(``queries.csv``, kind ``phone10``, and their first 5 s), from cached single peaks, for any
hashing scheme in :data:`SCHEMES`:

* the evidence: top-1 of the offset histogram (the engine's :func:`score_candidates`) and the
  share of recordings *named right* at the score threshold where at most 0.5% of **unknown**
  songs (the same recordings against the catalogue without their track: leave-one-out) would
  be named -- a comparison of schemes that needs no calibration;
* the cost: index rows per catalogue hour (the index's size) and candidate rows a note
  touches per catalogue hour (the landmark stage's work, which grows with the catalogue).

Two steps::

    python bench/landmark_specificity.py peaks --corpus ../devdata/set_a --out ../devdata/peaks_cache_a.npz
    python bench/landmark_specificity.py eval --cache ../devdata/peaks_cache_a.npz ../devdata/peaks_cache_b.npz \\
        [--schemes pair triplet] [--json out.json]

``peaks`` decodes every catalogue track and query with ffmpeg (mono, 16 kHz, like the service)
and keeps their single peaks (reference density for tracks, query density for recordings).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.fingerprint.index import score_candidates  # noqa: E402
from engine.fingerprint.landmarks import FRAMES_PER_S, extract_peaks, pair_peaks, zone_targets  # noqa: E402

log = logging.getLogger("landmark_specificity")
SR = 16000
UNKNOWN_RATE = 0.005
#: target zone length in frames (the engine's: targets 1..63 frames after their anchor)
DT_MAX = 63
#: candidates a two-stage lookup re-scores (the engine's VERIFY_TRACKS)
SHORTLIST = 8


def _decode(path: Path) -> np.ndarray:
    out = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-ac", "1", "-ar", str(SR),
                          "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, np.float32)


def _peaks_of(job: tuple[str, str]) -> tuple[np.ndarray, np.ndarray, float]:
    path, density = job
    x = _decode(Path(path))
    t, f = extract_peaks(x, SR, density=density)
    return t.astype(np.int32), f.astype(np.int16), x.size / SR


def cache_peaks(corpus: Path, out: Path, workers: int = 2) -> None:
    """Write ``out`` (.npz): every catalogue track's and every phone10 recording's peaks, concatenated."""
    tracks = sorted((corpus / "catalogue").glob("*.mp3"))
    with open(corpus / "queries.csv") as fh:
        queries = [r for r in csv.DictReader(fh) if r["kind"] == "phone10"]
    jobs = [(str(p), "reference") for p in tracks] + [(str(corpus / q["query_file"]), "query") for q in queries]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as ex:
        res = list(ex.map(_peaks_of, jobs, chunksize=2))
    log.warning("%s: %d files in %.0f s", corpus.name, len(jobs), time.perf_counter() - t0)
    n_ref = len(tracks)

    def pack(part: list) -> dict[str, np.ndarray]:
        lens = np.array([r[0].size for r in part], np.int64)
        return {"t": np.concatenate([r[0] for r in part]), "f": np.concatenate([r[1] for r in part]),
                "start": np.r_[0, np.cumsum(lens)], "seconds": np.array([r[2] for r in part])}

    ref, qry = pack(res[:n_ref]), pack(res[n_ref:])
    ids = [p.stem for p in tracks]
    q_track = np.array([ids.index(q["track_id"]) if q["track_id"] in ids else -1 for q in queries])
    np.savez_compressed(out, **{f"ref_{k}": v for k, v in ref.items()}, **{f"q_{k}": v for k, v in qry.items()},
                        q_track=q_track)


# --- hashing schemes: (t, f) peaks -> (hashes uint64, anchor times) --------------------------------

def pair_scheme(fan_ref: int = 8, fan_q: int = 12) -> Callable:
    """The engine's pairs (:func:`pair_peaks`), 21 bits."""
    def fn(t: np.ndarray, f: np.ndarray, side: str):
        h, ht = pair_peaks(t, f.astype(np.int32), fan_ref if side == "ref" else fan_q)
        return h.astype(np.uint64), ht
    return fn


def triplet_scheme(fan_ref: int = 4, fan_q: int = 8, consecutive: bool = True, jit_t: int = 0, jit_f: int = 0,
                   q_f1: int = 1, df_max: int = 63) -> Callable:
    """Three peaks ``(f1, df2, dt2, df3, dt3)``: the anchor and two later peaks of its target zone.

    Reference side: the anchor with consecutive targets ``(j, j+1)`` of its first ``fan_ref`` (or all
    pairs of them when not ``consecutive``); query side: every pair of its first ``fan_q`` targets, so
    spurious query peaks between two reference targets do not break the triplet.  The query side
    also looks the triplet up with its targets moved by up to ``jit_t`` frames and ``jit_f`` bins
    (a peak that moved by one hop or bin in the recording still matches); ``q_f1`` quantises the
    anchor's bin (its jitter moves all three peaks' bins, which the differences do not see).
    """
    rdf = 2 * df_max + 1

    def pack(f1, d2f, d2t, d3f, d3t):
        ok = (np.abs(d2f) <= df_max) & (np.abs(d3f) <= df_max) & (d2t >= 1) & (d3t >= 1) & (d2t <= DT_MAX) \
            & (d3t <= DT_MAX)
        h = (((f1 // q_f1 * rdf + d2f + df_max) * DT_MAX + d2t - 1) * rdf + d3f + df_max) * DT_MAX + d3t - 1
        return h.astype(np.uint64), ok

    def fn(t: np.ndarray, f: np.ndarray, side: str):
        f, t = f.astype(np.int64), t.astype(np.int64)
        fan = fan_ref if side == "ref" else fan_q
        if t.size < 3:
            return np.zeros(0, np.uint64), np.zeros(0, np.int64)
        tgt = zone_targets(t, f, fan, df_max)
        if side == "ref" and consecutive:
            combos = np.array([(k, k + 1) for k in range(fan - 1)])
        else:
            combos = np.array([(a, b) for a in range(fan) for b in range(a + 1, fan)])
        p2, p3 = tgt[:, combos[:, 0]], tgt[:, combos[:, 1]]  # (n, combos)
        an = np.broadcast_to(np.arange(t.size)[:, None], p2.shape)
        m = (p2 >= 0) & (p3 >= 0)
        an, p2, p3 = an[m], p2[m], p3[m]
        d = [f[p2] - f[an], t[p2] - t[an], f[p3] - f[an], t[p3] - t[an]]
        jit = [(a, b, c, e) for a in range(-jit_f, jit_f + 1) for b in range(-jit_t, jit_t + 1)
               for c in range(-jit_f, jit_f + 1) for e in range(-jit_t, jit_t + 1)] if side == "query" else [(0,) * 4]
        jit = np.array(jit)  # (J, 4): every variant of the four offsets, as broadcast columns
        d2f, d2t, d3f, d3t = (d[i][:, None] + jit[None, :, i] for i in range(4))
        h, ok = pack(f[an][:, None], d2f, d2t, d3f, d3t)
        return h[ok], np.broadcast_to(t[an][:, None], ok.shape)[ok]
    return fn


SCHEMES: dict[str, Callable] = {
    "pair": pair_scheme(),
    "triplet": triplet_scheme(),
    "triplet_f6": triplet_scheme(fan_ref=6),
    "triplet_all4": triplet_scheme(consecutive=False),
    "triplet_jt": triplet_scheme(jit_t=1),
    "triplet_jtf": triplet_scheme(jit_t=1, jit_f=1),
    "triplet_f6_jt": triplet_scheme(fan_ref=6, jit_t=1),
    "triplet_all4_jtf": triplet_scheme(consecutive=False, jit_t=1, jit_f=1),
    "triplet_jt_df31": triplet_scheme(jit_t=1, df_max=31),
    "triplet_f6_jt_df31": triplet_scheme(fan_ref=6, jit_t=1, df_max=31),
    "triplet_f6_q6_jt_df31": triplet_scheme(fan_ref=6, fan_q=6, jit_t=1, df_max=31),
    "triplet_f4_q6_jt_df31": triplet_scheme(fan_ref=4, fan_q=6, jit_t=1, df_max=31),
    "triplet_f6_q10_jt_df31": triplet_scheme(fan_ref=6, fan_q=10, jit_t=1, df_max=31),
    "triplet_f8_q10_jt_df31": triplet_scheme(fan_ref=8, fan_q=10, jit_t=1, df_max=31),
}


# --- evaluation ---------------------------------------------------------------------------------------

def _slice(d: dict, side: str, i: int) -> tuple[np.ndarray, np.ndarray]:
    s, e = d[f"{side}_start"][i], d[f"{side}_start"][i + 1]
    return d[f"{side}_t"][s:e], d[f"{side}_f"][s:e]


def _scores(qh, qt, rh, rtr, rt, exclude: int) -> tuple[list[int], int, int]:
    """(the 8 best tracks, best score, second score) with the track ``exclude`` left out (-1: none)."""
    if exclude >= 0:
        keep = rtr != exclude
        rh, rtr, rt = rh[keep], rtr[keep], rt[keep]
    m = score_candidates(qh.astype(np.int64), qt, rh.astype(np.int64), rtr, rt, SHORTLIST)
    if not m:
        return [], 0, 0
    return [c.track_key for c in m], m[0].score, (m[1].score if len(m) > 1 else 0)


class _Index:
    """One scheme's reference rows sorted by hash, as the snapshot keeps them."""

    def __init__(self, d: dict, scheme: Callable) -> None:
        n_ref = d["ref_start"].size - 1
        parts = [scheme(*_slice(d, "ref", i), "ref") for i in range(n_ref)]
        h = np.concatenate([p[0] for p in parts])
        t = np.concatenate([p[1] for p in parts]).astype(np.int64)
        tr = np.concatenate([np.full(p[0].size, i, np.int64) for i, p in enumerate(parts)])
        o = np.argsort(h, kind="stable")
        self.h, self.t, self.tr = h[o], t[o], tr[o]
        self.scheme = scheme

    def candidates(self, qh: np.ndarray, tracks: np.ndarray | None = None):
        """The rows of the query's hashes (of ``tracks`` only, when given): (h, track, t)."""
        uq = np.unique(qh)
        lo, hi = np.searchsorted(self.h, uq, "left"), np.searchsorted(self.h, uq, "right")
        n = hi - lo
        sel = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
        if tracks is not None:
            sel = sel[np.isin(self.tr[sel], tracks)]
        return self.h[sel], self.tr[sel], self.t[sel]


def _query(d: dict, qi: int, first_s: float | None) -> tuple[np.ndarray, np.ndarray]:
    t, f = _slice(d, "q", qi)
    if first_s is not None:
        keep = t < first_s * FRAMES_PER_S
        t, f = t[keep], f[keep]
    return t, f


def eval_scheme(d: dict, name: str, first_s: float | None) -> dict:
    """One corpus, one scheme: top-1, named-right at <= 0.5% unknown named, and the costs.

    ``hybrid:<scheme>``: the scheme's 8 best tracks (stage 1), re-scored with the engine's pairs of
    those tracks only (stage 2, which the build could derive from each track's stored peaks).
    """
    stage1 = _Index(d, SCHEMES[name.split(":")[-1]])
    stage2 = _Index(d, SCHEMES["pair"]) if name.startswith("hybrid:") else None
    hours = float(d["ref_seconds"].sum()) / 3600
    known, unknown, cand_rows, top1, top8, q_ms = [], [], [], [], [], []
    for qi, true in enumerate(d["q_track"]):
        if true < 0:
            continue
        t, f = _query(d, qi, first_s)
        t0 = time.perf_counter()
        qh, qt = stage1.scheme(t, f, "query")
        rows = stage1.candidates(qh)
        q_ms.append(1000 * (time.perf_counter() - t0))
        cand_rows.append(rows[0].size)
        res = []
        for exclude in (-1, int(true)):
            best, s1, s2 = _scores(qh, qt, *rows, exclude)
            if stage2 is not None:
                ph, pt = stage2.scheme(t, f, "query")
                best, s1, s2 = _scores(ph, pt, *stage2.candidates(ph, np.array(best, np.int64)), exclude)
            res.append((best, s1, s2))
        (best, s1, s2), (_, u1, u2) = res
        ok = bool(best) and best[0] == true
        top1.append(ok)
        top8.append(true in best)
        known.append((ok, s1, s2))
        unknown.append((u1, u2))
    return {"hours": round(hours, 2), "rows_per_h": round(stage1.h.size / hours),
            "cand_rows_per_h_p50": round(float(np.median(cand_rows)) / hours),
            "hash_lookup_ms_p50": round(float(np.median(q_ms)), 1),
            "top1": round(float(np.mean(top1)), 3), f"top{SHORTLIST}": round(float(np.mean(top8)), 3),
            **named_at_unknown_rate(known, unknown)}


def grow(index: _Index, k: int, n_ref: int, seconds: np.ndarray, seed: int = 0) -> _Index:
    """The index with ``k - 1`` copy decoys of every track (fingerprint_scale.py's harsh ``copy`` kind).

    Copy ``j`` of track ``i`` is track ``i + j * n_ref``: every row of the real track again, at a
    uniform random time, so every posting list is ``k`` times as long and each decoy shares all its
    hashes with one real song but never lines up with a recording.  Rows stay sorted by hash.
    """
    if k == 1:
        return index
    rng = np.random.default_rng(seed)
    g = _Index.__new__(_Index)
    g.scheme = index.scheme
    g.h = np.repeat(index.h, k)
    copy = np.tile(np.arange(k, dtype=np.int64), index.h.size)
    g.tr = np.repeat(index.tr, k) + copy * n_ref
    span = seconds[np.repeat(index.tr, k)] * FRAMES_PER_S
    g.t = np.where(copy == 0, np.repeat(index.t, k), (rng.random(copy.size) * span).astype(np.int64))
    return g


def _pairs_of(pairs: _Index, track: int, n_ref: int, qh: np.ndarray):
    """A (possibly decoy) track's pair rows of the query's hashes; a decoy's times are random (its seed)."""
    h, tr, t = pairs.candidates(qh, np.array([track % n_ref]))
    if track >= n_ref:
        t = np.random.default_rng(track).integers(0, max(1, int(t.max(initial=0)) + 1), t.size)
    return h, np.full(h.size, track, np.int64), t


def eval_scale(d: dict, name: str, factors: list[int], first_s: float | None, n: int) -> list[dict]:
    """Triplet stage 1 + pair stage 2 (or pairs alone) against the index grown ``factor`` times."""
    n_ref = d["ref_start"].size - 1
    base = _Index(d, SCHEMES[name])
    pairs = _Index(d, SCHEMES["pair"])
    hours = float(d["ref_seconds"].sum()) / 3600
    qis = [qi for qi, tr in enumerate(d["q_track"]) if tr >= 0][:n or None]
    out = []
    for k in factors:
        g = grow(base, k, n_ref, d["ref_seconds"])
        known, unknown, rows_n, ms1, ms2, top8 = [], [], [], [], [], []
        for qi in qis:
            true = int(d["q_track"][qi])
            t, f = _query(d, qi, first_s)
            ph, pt = SCHEMES["pair"](t, f, "query")
            res = []
            for exclude in (-1, true):
                t0 = time.perf_counter()
                qh, qt = g.scheme(t, f, "query")
                rows = g.candidates(qh)
                best, s1, s2 = _scores(qh, qt, *rows, exclude)
                t1 = time.perf_counter()
                if name != "pair" and best:
                    parts = [_pairs_of(pairs, c, n_ref, ph) for c in best]
                    best, s1, s2 = _scores(ph, pt, *(np.concatenate(x) for x in zip(*parts)), exclude)
                if exclude < 0:
                    rows_n.append(rows[0].size)
                    ms1.append(1000 * (t1 - t0))
                    ms2.append(1000 * (time.perf_counter() - t1))
                    top8.append(true in best)
                res.append((best, s1, s2))
            (best, s1, s2), (_, u1, u2) = res
            known.append((bool(best) and best[0] == true, s1, s2))
            unknown.append((u1, u2))
        r = {"scheme": name, "factor": k, "hours": round(hours * k), "rows": int(g.h.size),
             "cand_rows_p50": int(np.median(rows_n)), "stage1_ms_p50": round(float(np.median(ms1)), 1),
             "stage1_ms_p95": round(float(np.percentile(ms1, 95)), 1),
             "stage2_ms_p50": round(float(np.median(ms2)), 1), "top1": round(float(np.mean([x[0] for x in known])), 3),
             f"top{SHORTLIST}": round(float(np.mean(top8)), 3), **named_at_unknown_rate(known, unknown)}
        out.append(r)
        print(json.dumps(r), flush=True)
        del g
    return out


def _z(s1: float, s2: float) -> float:
    return (s1 - s2) / np.sqrt(s2 + 1.0)


def named_at_unknown_rate(known: list, unknown: list) -> dict:
    """Share named right when a (score, z) rule names at most :data:`UNKNOWN_RATE` of unknown songs.

    The rule names the best candidate when its score >= S and its margin z over the runner-up >= Z
    (the two parts of the engine's :func:`confidence`); of all (S, Z) on a grid whose unknown rate
    is within the limit, the one naming the most recordings right is taken -- the same for every
    scheme, so the schemes are compared at their best threshold, not at one tuned for pairs.
    """
    best = (0.0, 0.0, 0.0)
    u1, u2 = np.array(unknown, float).reshape(-1, 2).T
    kok, k1, k2 = np.array(known, float).reshape(-1, 3).T
    uz, kz = _z(u1, u2), _z(k1, k2)
    for s_min in [*range(2, 40), *range(40, 200, 5)]:
        for z_min in np.arange(0.0, 10.01, 0.25):
            if np.mean((u1 >= s_min) & (uz >= z_min)) > UNKNOWN_RATE:
                continue
            r = float(np.mean((kok > 0) & (k1 >= s_min) & (kz >= z_min)))
            if r > best[0]:
                best = (r, s_min, float(z_min))
    return {"named_right": round(best[0], 3), "at_score": best[1], "at_z": best[2]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("peaks")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--workers", type=int, default=2)
    e = sub.add_parser("eval")
    e.add_argument("--cache", type=Path, nargs="+", required=True)
    e.add_argument("--schemes", nargs="+", default=[*SCHEMES, "hybrid:triplet"])
    e.add_argument("--json", type=Path)
    sc = sub.add_parser("scale", help="stage 1 of a scheme against its index grown with copy decoys")
    sc.add_argument("--cache", type=Path, required=True)
    sc.add_argument("--schemes", nargs="+", default=["triplet_jt"])
    sc.add_argument("--factors", type=int, nargs="+", default=[1, 16, 48])
    sc.add_argument("--n", type=int, default=0, help="first N recordings (0: all)")
    sc.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.cmd == "peaks":
        cache_peaks(args.corpus, args.out, args.workers)
        return 0
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "unknown_rate": UNKNOWN_RATE, "runs": []}
    if args.cmd == "scale":
        d = dict(np.load(args.cache))
        for name in args.schemes:
            for first in (None, 5.0):
                for r in eval_scale(d, name, args.factors, first, args.n):
                    out["runs"].append({"corpus": args.cache.name, "recording": "phone10" if first is None
                                        else "phone_first5", **r})
                    if args.json:
                        args.json.write_text(json.dumps(out, indent=1))
        return 0
    for c in args.cache:
        d = dict(np.load(c))
        for name in args.schemes:
            for first in (None, 5.0):
                t0 = time.perf_counter()
                r = {"corpus": c.name, "scheme": name, "recording": "phone10" if first is None else "phone_first5",
                     **eval_scheme(d, name, first), "eval_s": round(time.perf_counter() - t0)}
                out["runs"].append(r)
                print(json.dumps(r), flush=True)
                if args.json:
                    args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
