"""``synesthete-index calibrate``: fit when to say "sounds like", on the catalogue's own audio.

Why: a landmark margin or a unanimous vote of two segments is not a probability; how
much evidence makes an answer safe depends on the catalogue (its size sets the chance
level of a wrong match, its music how dense and repetitive the landmarks are) and on
the recording (length, noise).  So the build ends by *measuring* it here:

1. up to :data:`QUERY_BUDGET` self-queries from catalogue tracks (on a small catalogue
   several per track, one of each of :data:`KINDS` at most): excerpts of :data:`KINDS` lengths from a random point in the
   track's first :data:`SOURCE_S` seconds; most are phone-degraded exactly as the head's
   training views are (``index_builder.augment.phone_degrade``: room, noise, phone
   band, level drift, an Opus voice-message codec), a quarter are clean;
2. each goes through the service's own evidence path (``landmark_candidates`` with its speed
   variants, then :meth:`SynestheteService.observe`: landmark candidates + nearest catalogue
   segments, :data:`HITS_PER_SEGMENT` per segment);
3. every candidate the rule could name (:func:`engine.identify.candidates`) becomes one
   row: its :func:`~engine.identify.candidate_features` and whether it is the recorded
   song.  The same query *with its song removed from the catalogue*
   (:func:`engine.identify.evidence` with ``exclude``) gives the rows of music the
   catalogue does not hold, at this catalogue's density, so the model learns to stay
   silent for unknown songs too;
4. a logistic regression (scikit-learn, its L2 strength cross-validated by track) is the model; a
   two-fold split by track measures what it says at ``identify_threshold`` on tracks it
   was not fitted on; the figures go into the file and the build report.

Rows weigh known and unknown recordings equally (an even prior: as many recordings of
songs the catalogue lacks as of songs it holds).  Below :data:`MIN_TRACKS` fingerprinted
tracks there is too little to fit: the old file is removed and the safe rule answers
(``about`` says so).  Nothing is written until the fit is whole (``engine.fileio``).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from engine.identify import (FEATURES, Calibration, Observations, candidate_features, candidates, decide, evidence,
                             landmark_surprise)

log = logging.getLogger(__name__)

#: Fewer fingerprinted tracks than this: no calibration (too few wrong candidates to fit from).
MIN_TRACKS = 30
#: Self-queries per calibration, at most (about 0.3-0.5 s each on one core); the build's comes
#: from ``Settings.identify_calibration_queries`` (same default).
QUERY_BUDGET = 400
#: (view, seconds) of the self-queries, in turn: phone-like notes of several lengths, some clean.
KINDS: tuple[tuple[str, float], ...] = (("phone", 10.0), ("phone", 5.0), ("clean", 8.0), ("phone", 3.0))
#: Excerpts come from the first this many seconds of a track (one short decode per track).
SOURCE_S = 90.0
#: Candidate segments fetched per query segment: when the recorded song is removed, the first hit
#: of another track votes instead (a query segment's nearest few are often all of its own song).
HITS_PER_SEGMENT = 5
#: A candidate whose aligned landmark votes are this far beyond the chance level (-log10 of
#: the chance probability) and at least ``SHARED_AUDIO_MIN`` holds the same audio (:func:`shares_audio`).
SHARED_AUDIO_SURPRISE = 4.0
SHARED_AUDIO_MIN = 10
#: Inverse L2 strengths the cross-validation chooses from (scikit-learn's C; features are standardised).
C_GRID = tuple(float(c) for c in np.logspace(-2, 3, 11))


@dataclass
class CalibrationResult:
    status: str  # "fitted" | "unchanged" | "too_small" | "failed"
    tracks: int = 0
    queries: int = 0
    seconds: float = 0.0
    measured: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "tracks": self.tracks, "queries": self.queries,
                "seconds": round(self.seconds, 1), "measured": self.measured, "message": self.message}


@dataclass(frozen=True)
class SelfQuery:
    """One degraded excerpt of catalogue track ``truth`` and what the service observed of it."""

    truth: int
    kind: str  # e.g. "phone10"
    obs: Observations


def shares_audio(obs: Observations, truth: int, key: int) -> bool:
    """Whether catalogue track ``key`` holds the recorded song's audio too (a duplicate, a shared loop).

    Catalogues hold the same music twice (a remaster, a menu theme and its "enhanced" cut, a
    loop reused across a game's tracks; e.g. Naev "Ambient2" / "Ambient2 5" in the dev
    corpus).  A wrong track's aligned landmark votes stay at the chance level that the other
    wrong tracks show (15-21 for a clean 10-s excerpt); a track sharing the audio stands far
    above them.  So ``key`` shares the audio when its votes are at least
    :data:`SHARED_AUDIO_MIN` and :func:`engine.identify.landmark_surprise` against the best
    *other* wrong track is at least :data:`SHARED_AUDIO_SURPRISE` (1 in 10,000 by chance).
    Such a track is neither a right nor a wrong answer to learn from or to count.  Needs a
    third candidate as the chance level; without one the answer is counted as wrong.
    """
    if key == truth:
        return False
    scores = {m.track_key: float(m.score) for m in obs.matches}
    rest = [s for k, s in scores.items() if k not in (truth, key)]
    other = scores.get(key, 0.0)
    return bool(rest) and other >= SHARED_AUDIO_MIN and landmark_surprise(other, max(rest)) >= SHARED_AUDIO_SURPRISE


def design(queries: list[SelfQuery]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``(X (n, len(FEATURES)), y (n,) 0/1, track (n,))``: each candidate of each query, known and unknown.

    A candidate that :func:`shares_audio` with the recorded song gives no row.
    """
    xs, ys, groups = [], [], []
    for q in queries:
        for exclude in (None, q.truth):
            ev = evidence(q.obs, exclude=exclude)
            for key in candidates(ev):
                if shares_audio(q.obs, q.truth, key):
                    continue
                xs.append(candidate_features(ev, key))
                ys.append(int(exclude is None and key == q.truth))
                groups.append(q.truth)
    if not xs:
        return np.zeros((0, len(FEATURES))), np.zeros(0, int), np.zeros(0, int)
    return np.vstack(xs), np.asarray(ys), np.asarray(groups)


def _plain_l2_kwargs(cls: type) -> dict[str, Any]:
    """Arguments that keep ``LogisticRegressionCV`` a plain L2 fit across scikit-learn versions (1.9 warns without)."""
    import inspect

    params = inspect.signature(cls).parameters
    return {k: v for k, v in (("l1_ratios", (0.0,)), ("use_legacy_attributes", False)) if k in params}


def fit(x: np.ndarray, y: np.ndarray, info: dict[str, Any] | None = None,
        groups: np.ndarray | None = None) -> Calibration:
    """The :class:`~engine.identify.Calibration` of design rows ``x`` (n, len(FEATURES)), ``y`` (n,) 0/1.

    1. a logistic regression (scikit-learn) on standardised features, its L2 strength chosen
       by cross-validated log-loss (``LogisticRegressionCV``), folds split by track
       (``groups``) so that a track's queries never sit on both sides;
    2. out-of-fold scores of that model, and an isotonic regression from score to outcome on
       them, with one phantom wrong answer just above the best score (so the top of the map
       is ``n / (n + 1)`` of the ``n`` right answers seen there, never 1.0).

    Without groups or with too few rows of an outcome for folds, the plain logistic model
    (C = 1) answers alone.  Raises ValueError when both outcomes are not present.
    """
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import GroupKFold

    if len(set(y.tolist())) < 2:
        raise ValueError("the self-queries gave only one outcome; nothing to calibrate")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    folds = min(5, len(set(groups.tolist()))) if groups is not None else 0
    positives = int(y.sum())
    iso_x: tuple[float, ...] = ()
    iso_y: tuple[float, ...] = ()
    if folds >= 2 and min(positives, len(y) - positives) >= folds:
        splits = list(GroupKFold(folds).split(z, y, groups))
        cv = LogisticRegressionCV(Cs=list(C_GRID), cv=splits, scoring="neg_log_loss", max_iter=2000,
                                  **_plain_l2_kwargs(LogisticRegressionCV)).fit(z, y)
        c_best = float(np.ravel(cv.C_)[0])
        model = LogisticRegression(C=c_best, max_iter=2000).fit(z, y)
        iso_x, iso_y = _isotonic_map(z, y, splits, c_best)
    else:
        model = LogisticRegression(C=1.0, max_iter=2000).fit(z, y)
    return Calibration(tuple(float(w) for w in model.coef_[0]), float(model.intercept_[0]),
                       tuple(float(m) for m in mean), tuple(float(s) for s in scale), FEATURES, dict(info or {}),
                       iso_x, iso_y)


def _isotonic_map(z: np.ndarray, y: np.ndarray, splits: list, c: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Score -> probability: isotonic regression on out-of-fold logits, plus one phantom wrong answer on top."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    oof = np.zeros(len(y))
    for train, test in splits:
        if len(set(y[train].tolist())) < 2:
            return (), ()
        oof[test] = LogisticRegression(C=c, max_iter=2000).fit(z[train], y[train]).decision_function(z[test])
    scores = np.r_[oof, oof.max() + 1.0]
    outcome = np.r_[y, 0]
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(scores, outcome)
    xs, ys = np.asarray(iso.X_thresholds_, float), np.asarray(iso.y_thresholds_, float)
    # the phantom sits above every real score: the map's last real value is what the top holds
    keep = xs <= oof.max()
    xs, ys = xs[keep], ys[keep]
    return tuple(float(v) for v in xs), tuple(float(v) for v in np.maximum.accumulate(ys))


def held_out(queries: list[SelfQuery], threshold: float, seed: int = 0) -> dict[str, Any]:
    """What the rule says on tracks it was not fitted on: two folds split by track.

    Per query kind: ``says_right`` (known songs named correctly), ``says_wrong`` (known
    songs named wrongly), ``says_unknown`` (a song removed from the catalogue named as
    another: a wrong "sounds like" for music the catalogue lacks), and
    ``says_shared_audio`` (either named a track that :func:`shares_audio` with it).
    """
    tracks = np.array(sorted({q.truth for q in queries}))
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(tracks.tolist(), rng.permutation(len(tracks)) % 2))
    counts: dict[str, list[int]] = {}
    for fold in (0, 1):
        train = [q for q in queries if fold_of[q.truth] != fold]
        test = [q for q in queries if fold_of[q.truth] == fold]
        x, y, g = design(train)
        try:
            cal = fit(x, y, groups=g)
        except ValueError:
            continue
        for q in test:
            c = counts.setdefault(q.kind, [0, 0, 0, 0, 0])
            known = decide(evidence(q.obs), cal, threshold=threshold)
            unknown = decide(evidence(q.obs, exclude=q.truth), cal, threshold=threshold)
            c[0] += 1
            c[1] += known is not None and known.track_key == q.truth
            for d in (known, unknown):
                if d is not None and d.track_key != q.truth:
                    shared = shares_audio(q.obs, q.truth, d.track_key)
                    c[4] += shared
                    c[2 if d is known else 3] += not shared
    return {kind: {"n": n, "says_right": round(r / n, 4), "says_wrong": round(w / n, 4),
                   "says_unknown": round(u / n, 4), "says_shared_audio": round(s_ / n, 4)}
            for kind, (n, r, w, u, s_) in sorted(counts.items()) if n}


def data_signature(keys: list[int], model_id: str, landmark_version: int, lookup: str) -> str:
    """Which index a calibration belongs to: the fingerprinted tracks, the model, the landmark version and lookup."""
    h = hashlib.sha256(f"{model_id}|fp{landmark_version}|{lookup}|".encode())
    h.update(np.asarray(sorted(keys), dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def _view(service: Any, source: np.ndarray, sr: int, kind: tuple[str, float], rng: np.random.Generator):
    """One self-query as the service would receive it (a DecodedAudio), or None when too quiet to be one."""
    from engine import audio as audio_mod
    from index_builder.augment import phone_degrade

    view, seconds = kind
    n = int(seconds * sr)
    if len(source) < n:
        return None
    start = int(rng.integers(0, len(source) - n + 1))
    x = source[start:start + n]
    if view == "phone":
        x = phone_degrade(x, sr, rng)
    d = audio_mod.from_samples(x, sr, f"calibration/{view}")
    return d if d.active_seconds >= audio_mod.limits_from_settings(service.settings).min_signal_seconds else None


def collect(service: Any, tracks: list[tuple[int, str]], budget: int, rng: np.random.Generator) -> list[SelfQuery]:
    """Self-queries through the service's evidence path; a track that cannot be decoded is skipped (logged)."""
    from engine import audio as audio_mod
    from engine.errors import AudioError

    sr = service.embedder.sample_rate
    limits = audio_mod.DecodeLimits(max_bytes=2**40, max_seconds=SOURCE_S, min_signal_seconds=2.0, timeout_s=60.0)
    total = min(budget, len(KINDS) * len(tracks))  # each kind once per track at most
    order = rng.permutation(len(tracks))
    per_track = [total // len(tracks) + (r < total % len(tracks)) for r in range(len(tracks))]
    out: list[SelfQuery] = []
    done = 0
    for n, i in enumerate(order):
        if per_track[n] == 0:
            continue
        key, path = tracks[int(i)]
        try:
            source = audio_mod.decode(Path(path), sr, limits).samples
        except AudioError as exc:
            log.info("calibration skips track %d (%s): %s", key, path, exc)
            continue
        for _ in range(per_track[n]):
            kind = KINDS[done % len(KINDS)]
            done += 1
            d = _view(service, source, sr, kind, rng)
            if d is None:
                continue
            fp = service.landmark_candidates(d)  # with speed variants, as the service does
            emb = service.embedder.embed(d.samples, service.settings.query_hop_s)
            out.append(SelfQuery(key, f"{kind[0]}{kind[1]:g}", service.observe(d, fp, emb, HITS_PER_SEGMENT)))
    return out


def _calibration_tracks(service: Any) -> list[tuple[int, str]]:
    """Fingerprinted catalogue tracks whose audio file is still there."""
    fp_keys = service.fingerprints.track_keys() if service.fingerprints is not None else set()
    rows = service.catalogue.get_many(sorted(fp_keys))
    return sorted((k, t.audio_path) for k, t in rows.items() if t.audio_path and Path(t.audio_path).is_file())


def too_small(settings: Any, n_tracks: int, min_tracks: int = MIN_TRACKS) -> CalibrationResult:
    """No calibration for this catalogue: an old file is removed (it belongs to another catalogue)."""
    Path(settings.identify_calibration_path).unlink(missing_ok=True)
    return CalibrationResult("too_small", n_tracks, 0, 0.0, {},
                             f"{n_tracks} tracks with audio are too few to calibrate (< {min_tracks}); "
                             "identification uses the safe rule")


def run_calibration(settings: Any, *, embedder: Any = None, budget: int = QUERY_BUDGET, seed: int = 0,
                    force: bool = False, min_tracks: int = MIN_TRACKS) -> CalibrationResult:
    """Fit and write ``settings.identify_calibration_path`` for the index in ``settings.data_dir``.

    ``embedder``: the one the index was built with (default: the settings' own).  Skipped
    ("unchanged") when the file already belongs to this index, unless ``force``.  Raises
    what opening the service raises (StoreError and kin); a failed fit leaves the old file.
    """
    from engine.calibration import save_calibration
    from engine.fingerprint.backends import lookup_id
    from engine.fingerprint.landmarks import LANDMARK_VERSION
    from engine.service import SynestheteService

    t0 = time.monotonic()
    path = Path(settings.identify_calibration_path)
    service = SynestheteService(settings, embedder=embedder, read_only=True)
    try:
        tracks = _calibration_tracks(service)
        lookup = lookup_id(settings)
        sig = data_signature([k for k, _ in tracks], service.model_id, LANDMARK_VERSION, lookup)
        current = service.calibration.calibration  # what queries would use now (the service loaded it)
        if not force and current is not None and current.info.get("data") == sig:
            return CalibrationResult("unchanged", len(tracks), int(current.info.get("queries", 0)),
                                     time.monotonic() - t0, current.info.get("measured", {}), "already calibrated")
        if len(tracks) < min_tracks:
            return too_small(settings, len(tracks), min_tracks)
        queries = collect(service, tracks, budget, np.random.default_rng(seed))
        measured = held_out(queries, settings.identify_threshold, seed)
        x, y, groups = design(queries)
        info = {"tracks": len(tracks), "queries": len(queries), "rows": int(len(y)), "data": sig, "lookup": lookup,
                "model_id": service.model_id, "landmark_version": LANDMARK_VERSION,
                "threshold": settings.identify_threshold, "measured": measured,
                "fitted_at": datetime.now(UTC).isoformat(timespec="seconds")}
        try:
            cal = fit(x, y, info, groups)
        except ValueError as exc:
            return CalibrationResult("failed", len(tracks), len(queries), time.monotonic() - t0, measured, str(exc))
        save_calibration(path, cal)
        return CalibrationResult("fitted", len(tracks), len(queries), time.monotonic() - t0, measured,
                                 f"calibrated on {len(queries)} self-queries of {len(tracks)} tracks")
    finally:
        service.close()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queries", type=int, default=None,
                   help="self-queries (default SYNESTHETE_IDENTIFY_CALIBRATION_QUERIES, 400)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the excerpts and degradations")
    p.add_argument("--force", action="store_true", help="refit even when the calibration is current")


def main(args: argparse.Namespace) -> int:
    """The CLI: refit after ``train`` or when ``about`` says the calibration does not fit."""
    import json

    from index_builder.runtime import settings_from_args

    settings = settings_from_args(args)
    budget = args.queries if args.queries is not None else settings.identify_calibration_queries
    res = run_calibration(settings, budget=max(1, budget), seed=args.seed, force=args.force)
    print(f"calibration: {res.status}: {res.message} ({res.seconds:.0f} s)")
    if res.measured:
        print(json.dumps(res.measured, indent=1))
    return 0 if res.status in ("fitted", "unchanged", "too_small") else 1
