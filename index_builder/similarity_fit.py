"""The build's last step: fit the similarity model on the catalogue and rewrite the track vectors.

Why in the build and not a separate command: a new user must never meet an
untrained similarity (issue 13).  The model (``engine.similarity``: pooled statistics +
PCA by default) needs no labels and costs seconds on the descriptors the backbone pass
already left behind (``engine.descriptors``), so every build that changed the set of
indexed tracks refits it and rewrites every track vector from the same model, and
places the catalogue rows without audio (:func:`place_unheard`).

Crash safety: the model file is written atomically, then the vectors, then the
catalogue's ``similarity_model`` mark.  A crash in between leaves a mark that does
not match the data, so the next build refits; queries read the model whose id the
mark names, and the service refuses a mismatch with a clear message.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.similarity import MODEL_META  # the key every query process checks

log = logging.getLogger(__name__)

DATA_META = "similarity_data"  # catalogue meta: hash of the indexed set the model was fitted on


@dataclass
class SimilarityFitResult:
    status: str  # "fitted" | "unchanged" | "too_small" (< 2 tracks) | "too_uniform" | "disabled"
    n_tracks: int = 0
    seconds: float = 0.0
    model_sha: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def data_hash(indexed: dict[int, tuple[str, str]]) -> str:
    """Hash of (track_key, audio signature, model id) of every indexed track."""
    h = hashlib.sha256()
    for k in sorted(indexed):
        h.update(f"{k}:{indexed[k][0]}:{indexed[k][1]};".encode())
    return h.hexdigest()[:16]


def track_scalars(descs, tracks: dict, tag_names) -> list[dict]:
    """The filter fields of each described track (engine.filters): catalogue genres and
    popularity (``tracks``: their catalogue rows by key), tempo and instrumental score from the audio."""
    from engine.filters import instrumental_score, normalise_genre

    out = []
    for d in descs:
        t = tracks.get(d.track_key)
        out.append({"genres": [normalise_genre(g) for g in (t.genres if t else [])],
                    "bpm": d.bpm, "instrumental": instrumental_score(tag_names, d.tags),
                    "popularity": t.popularity if t else None})
    return out


def supervision_labels(term: str, descs: list, heard: dict) -> list[str] | None:
    """One label per described track for the supervised term: its first genre or its artist ("" unknown)."""
    if term == "none":
        return None
    if term == "genre":
        return [(heard[d.track_key].genres[:1] or [""])[0] if d.track_key in heard else "" for d in descs]
    return [heard[d.track_key].artist or "" if d.track_key in heard else "" for d in descs]


def refit_similarity(settings, store, catalogue, descriptors, backbone_id: str,
                     blocks: tuple[tuple[str, int], ...], tag_names: tuple[str, ...] = (), *,
                     force: bool = False) -> SimilarityFitResult:
    """Fit the model on every indexed track's descriptors and rewrite their track vectors.

    ``blocks``: the backbone's descriptor layout (``Backbone.descriptor_layout``);
    ``tag_names``: its tags (for the instrumental filter field).
    Does nothing when the indexed set and the rows without audio are unchanged since the
    last fit (and the model file is there).  Below ``engine.similarity.MIN_TRACKS`` tracks
    the model is not called trained (``about`` says so); with fewer than two tracks, too
    uniform a catalogue or the method off there is no model and every track vector goes
    back to the identification head's mean (:func:`_fall_back`).
    """
    import time

    from engine.similarity import SimilarityConfig, fit_from_stats, fit_track_encoder

    t0 = time.perf_counter()
    path = Path(settings.similarity_model_path)
    if settings.similarity_method == "off":
        _fall_back(path, catalogue, store, descriptors, backbone_id, tag_names)
        return SimilarityFitResult("disabled")
    indexed = catalogue.indexed_state()
    unheard = [t for t in catalogue.all_tracks() if t.audio_features and t.track_key not in indexed]
    want = (data_hash(indexed) + f"/{settings.similarity_method}/k{settings.similarity_dba_k}/"
            + f"{settings.similarity_supervised}{settings.similarity_supervised_weight:g}/" + _features_hash(unheard)
            + ("" if settings.similarity_spread_weight == 1.0 else f"/s{settings.similarity_spread_weight:g}"))
    if not force and _unchanged(settings, catalogue, store, want, list(indexed)):
        return SimilarityFitResult("unchanged", len(indexed), model_sha=catalogue.get_meta(MODEL_META))
    descs = [d for d in descriptors.iter(backbone_id) if d.track_key in indexed]
    if len(descs) < 2:
        _fall_back(path, catalogue, store, descriptors, backbone_id, tag_names)
        return SimilarityFitResult("too_small", len(descs))
    cfg = SimilarityConfig(method=settings.similarity_method, blocks=blocks, out_dim=store.dim,
                           dba_k=settings.similarity_dba_k, supervised=settings.similarity_supervised,
                           supervised_weight=settings.similarity_supervised_weight,
                           spread_weight=settings.similarity_spread_weight)
    log.info("fitting the similarity model (%s) on %d tracks", cfg.method, len(descs))
    means, stds = np.stack([d.mean for d in descs]), np.stack([d.std for d in descs])
    heard = catalogue.get_many([d.track_key for d in descs])
    try:
        if cfg.method == "lda":
            if any(len(d.sample) == 0 for d in descs):
                log.warning("some tracks were described without a segment sample (built with another method); "
                            "their mean stands in for it: run `synesthete-index build --rebuild` for a full LDA fit")
            enc = fit_track_encoder([d.sample if len(d.sample) else d.mean[None, :] for d in descs], cfg)
        else:
            enc = fit_from_stats(means, stds, cfg, supervision_labels(cfg.supervised, descs, heard))
    except ValueError as exc:  # too uniform to fit: the head's vectors stay, about says so
        log.warning("no similarity model: %s", exc)
        _fall_back(path, catalogue, store, descriptors, backbone_id, tag_names)
        return SimilarityFitResult("too_uniform", len(descs), detail={"reason": str(exc)})
    enc.meta.update(backbone=backbone_id, data_hash=want)
    vecs = enc.vectors_from_stats(means, stds)
    if cfg.dba_k:
        from engine.similarity import database_side_augmentation

        vecs = database_side_augmentation(vecs, cfg.dba_k)
    from engine.reasons import MatchScale

    enc.meta["match_scale"] = MatchScale.fit(vecs).to_list()  # calibrated on this catalogue's pairs
    enc.save(path)
    _save_hubness(settings, vecs, enc.sha)
    catalogue.set_meta(MODEL_META, "")  # from here until the mark: vectors and model disagree
    scalars = track_scalars(descs, heard, tag_names)
    store.set_track_vectors([(d.track_key, v, sc) for d, v, sc in zip(descs, vecs, scalars)])
    placed = place_unheard(store, heard, set(indexed), descs, vecs, unheard)
    store.flush()
    catalogue.set_meta(MODEL_META, enc.sha)
    catalogue.set_meta(DATA_META, want)
    secs = time.perf_counter() - t0
    log.info("similarity model fitted on %d tracks in %.1f s (%d components)", len(descs), secs, enc.n_components)
    return SimilarityFitResult("fitted", len(descs), secs, enc.sha,
                               {"method": enc.meta["method"], "n_components": enc.n_components, "dba_k": cfg.dba_k,
                                **placed})


def _save_hubness(settings, vecs: np.ndarray, model_sha: str) -> None:
    """Mutual proximity's statistics for these vectors (``engine.hubness``), whatever the setting.

    Why always: O(n d^2), ~0.1 s per 10k tracks, so turning ``SYNESTHETE_SIMILARITY_HUBNESS=mp``
    on later needs no rebuild.  A failure is logged: MP is optional, the index is complete.
    """
    from engine.hubness import MutualProximity

    try:
        MutualProximity.fit(vecs, model_sha).save(settings.hubness_path)
    except (OSError, ValueError) as exc:
        log.warning("mutual proximity statistics not written (%s): SYNESTHETE_SIMILARITY_HUBNESS=mp will "
                    "answer with cosine ranking", exc)


def _unchanged(settings, catalogue, store, want: str, keys: list[int]) -> bool:
    """True when the saved model was fitted on this data (``want``) and is the one the index marks;
    its mutual proximity statistics are then made sure of (:func:`_ensure_hubness`)."""
    from engine.similarity import TrackEncoder

    path = Path(settings.similarity_model_path)
    if catalogue.get_meta(DATA_META) != want or not path.exists():
        return False
    try:
        enc = TrackEncoder.load(path)
    except Exception:  # noqa: BLE001 - unreadable: refit
        log.warning("the similarity model %s is unreadable; fitting it again", path, exc_info=True)
        return False
    if enc.sha != catalogue.get_meta(MODEL_META):
        return False
    _ensure_hubness(settings, store, enc.sha, keys)
    return True


def _ensure_hubness(settings, store, model_sha: str, keys: list[int]) -> None:
    """An unchanged model whose mutual proximity statistics are missing or stale (an index built
    before they existed): fitted from the stored track vectors, so no rebuild is needed."""
    from engine.hubness import MutualProximity

    try:
        if MutualProximity.load(settings.hubness_path).model_sha == model_sha:
            return
    except ValueError:
        pass  # missing or unreadable: fit below
    vecs: dict[int, np.ndarray] = {}
    for i in range(0, len(keys), 5000):  # bounded reads: a 232k-track catalogue is ~240 MB of vectors
        vecs.update(store.track_vectors(keys[i:i + 5000]))
    if len(vecs) >= 2:
        _save_hubness(settings, np.stack(list(vecs.values())), model_sha)


def _drop(path: Path, catalogue) -> bool:
    """Forget the model (file + marks); True when there was one."""
    had = bool(catalogue.get_meta(MODEL_META))
    path.unlink(missing_ok=True)
    catalogue.set_meta(MODEL_META, "")
    catalogue.set_meta(DATA_META, "")
    return had


def _fall_back(path: Path, catalogue, store, descriptors, backbone_id: str, tag_names) -> None:
    """No model: every track vector back to the identification head's mean segment vector.

    Queries then use the recording's head mean too (``SynestheteService.query_track_vector``),
    so catalogue and query vectors stay in one space.  The rows are rewritten with their
    filter fields too, so filters work without a model.
    """
    _drop(path, catalogue)
    indexed = catalogue.indexed_state()
    descs = [d for d in descriptors.iter(backbone_id) if d.track_key in indexed and d.head_vector is not None]
    scalars = track_scalars(descs, catalogue.get_many([d.track_key for d in descs]), tag_names)
    store.set_track_vectors([(d.track_key, d.head_vector, sc) for d, sc in zip(descs, scalars)])
    store.flush()
    missing = len(indexed) - len(descs)
    if missing:
        log.warning("%d tracks have no stored fallback vector; rebuild with --rebuild to restore them", missing)


def _features_hash(rows) -> str:
    h = hashlib.sha256()
    for t in sorted(rows, key=lambda t: t.track_key):
        h.update(f"{t.track_key}:{sorted(t.audio_features.items())}:{t.genres};".encode())
    return h.hexdigest()[:16]


def place_unheard(store, heard: dict, indexed: set[int], descs, vecs: np.ndarray, unheard) -> dict[str, Any]:
    """Rows without audio: predicted from their Spotify features and genre (engine.feature_map).

    Learned on the heard tracks (``heard``: their catalogue rows by key; ``vecs``: their
    track vectors, in ``descs`` order) that have features too; rows in the tracks collection
    that are neither indexed nor placeable any more are removed.  Returns what the build
    report says ({"unheard_placed": n} or {"unheard_skipped": reason}).
    """
    from engine.feature_map import fit_feature_mapping
    from engine.filters import normalise_genre

    feats = [heard[d.track_key].audio_features if d.track_key in heard else None for d in descs]
    genres = [heard[d.track_key].genres if d.track_key in heard else [] for d in descs]
    out: dict[str, Any] = {}
    placed_keys: set[int] = set()
    if unheard:
        try:
            mapping = fit_feature_mapping(feats, genres, vecs)
        except ValueError as exc:
            log.warning("%d catalogue rows without audio stay out of the answers: %s", len(unheard), exc)
            out["unheard_skipped"] = str(exc)
        else:
            pred = mapping.predict([t.audio_features for t in unheard], [t.genres for t in unheard])
            rows = [(t.track_key, v, {"genres": [normalise_genre(g) for g in t.genres],
                                      "bpm": t.audio_features.get("tempo"),
                                      "instrumental": t.audio_features.get("instrumentalness"),
                                      "popularity": t.popularity}) for t, v in zip(unheard, pred)]
            store.set_track_vectors(rows)
            placed_keys = {t.track_key for t in unheard}
            out.update(unheard_placed=len(rows), feature_columns=mapping.meta["columns"],
                       feature_rows=mapping.meta["rows"])
            log.info("placed %d rows without audio by their Spotify features (learned on %d tracks)",
                     len(rows), mapping.meta["rows"])
    stale = set(store.all_track_keys()) - indexed - placed_keys
    if stale:
        store.delete_tracks(sorted(stale))
    return out
