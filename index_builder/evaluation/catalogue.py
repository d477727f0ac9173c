"""The catalogue pass of an evaluation, and the vectors each configuration makes from it.

One pass over the catalogue's audio collects, per track: the clean backbone features
of every backbone in use (from and into the feature cache ``train`` uses), the MFCC
statistics of the baseline (cached by content hash) and the landmarks of the
fingerprint index (kept in a cache file named after the whole catalogue's content).
Each file is decoded at most once, and not at all when everything is cached.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.fileio import atomic_write

from engine.embed import l2n

from . import COMBINED, PRETRAINED, SIMILARITY
from .baseline import mfcc_stats
from .data import EmbedConfig, Query, short_sha, windows

#: sample rate of the baseline's statistics, the fingerprints and the queries' decode
SR = 16000


@dataclass
class CataloguePass:
    features: dict[str, list[np.ndarray]]  # "musicnn" | "logmel" -> per track (patches, dim)
    times: list[np.ndarray]  # per track: start (s) of each feature row
    mfcc: np.ndarray  # (tracks, 78) the baseline's statistics
    fp_index: Any  # engine.fingerprint.index.FingerprintIndex, or None without fingerprint configs
    fp_build_s: float  # seconds spent adding tracks to the fingerprint index


class _LazyAudio:
    """A track's samples, decoded on first use (or handed over by the feature cache)."""

    def __init__(self, path: Path, limits) -> None:
        self.path, self.limits = path, limits
        self.samples: np.ndarray | None = None

    def get(self) -> np.ndarray:
        from engine.audio import decode

        if self.samples is None:
            self.samples = decode(self.path, SR, self.limits).samples
        return self.samples


def _open_fingerprints(settings, sigs: list[str]):
    """The fingerprint index of exactly this catalogue's audio (a cache file), and the tracks it has."""
    from engine.fingerprint.index import FingerprintIndex
    from engine.fingerprint.landmarks import LANDMARK_VERSION

    fp_path = (settings.data_dir / "feature_cache" / "fingerprint"
               / f"v{LANDMARK_VERSION}-{short_sha(','.join(sigs))}.sqlite")
    fp_path.parent.mkdir(parents=True, exist_ok=True)
    fp_index = FingerprintIndex(fp_path, verify=settings.identify_verification)  # the service's rule, as configured
    return fp_index, fp_index.track_keys()


def _track_features(backbones, item, sig: str, audio: _LazyAudio, wins, hop: float,
                    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Clean features of one track per backbone (whole, or only ``wins``), and their start times."""
    out: dict[str, np.ndarray] = {}
    t = None
    for c in backbones:
        if wins is None:
            f, audio.samples = c.cache.clean(item.path, sig, audio.samples)
            t = np.arange(len(f)) * hop
        else:
            parts, ts = [], []
            for g0, n in wins:
                f, audio.samples = c.cache.clean_window(item.path, sig, g0, n, audio.samples)
                parts.append(f)
                ts.append((g0 + np.arange(len(f))) * hop)
            f, t = np.concatenate(parts), np.concatenate(ts)
        out["logmel" if c.name == "logmel" else "musicnn"] = f
    return out, t


def _track_mfcc(mfcc_dir: Path, sig: str, audio: _LazyAudio, wins, hop: float) -> np.ndarray:
    """The baseline's statistics of one track (of the same audio the embeddings see), cached."""
    mp = mfcc_dir / (f"{sig}.npy" if wins is None else f"{sig}.w{short_sha(str(wins))}.npy")
    if mp.exists():
        return np.load(mp)
    a = audio.get()
    if wins is not None:  # the same audio the embeddings' track vectors see
        a = np.concatenate([a[int(g0 * hop * SR): int(((g0 + n - 1) * hop + 3.0) * SR)] for g0, n in wins])
    v = mfcc_stats(a, SR)
    atomic_write(mp, lambda fh: np.save(fh, v))
    return v


def catalogue_pass(items: list, queries: list[Query], emb: dict[str, EmbedConfig], settings, *, use_fp: bool,
                   window_s: float | None, progress: bool) -> CataloguePass:
    """Features, baseline statistics and fingerprints of every catalogue track.

    ``window_s``: embed only that many seconds around each track's queries
    (:func:`~index_builder.evaluation.data.windows`); the fingerprint always sees whole tracks.
    """
    from tqdm import tqdm

    from engine.audio import limits_from_settings
    from index_builder.training.data import audio_signature

    backbones = list({id(c.backbone): c for c in emb.values()}.values())
    mfcc_dir = settings.data_dir / "feature_cache" / "mfcc-stats-v1"
    mfcc_dir.mkdir(parents=True, exist_ok=True)
    sig_list = [audio_signature(it.path) for it in tqdm(items, desc="hashing", disable=not progress)]
    fp_index, have_fp = _open_fingerprints(settings, sig_list) if use_fp else (None, set())
    by_id = {it.track_id: i for i, it in enumerate(items)}
    offsets_by_track: dict[int, list[float]] = defaultdict(list)
    for q in queries:
        offsets_by_track[by_id[q.track_id]].append(q.offset_s)
    out = CataloguePass({"musicnn": [], "logmel": []}, [], np.zeros((0, 0)), fp_index, 0.0)
    mfcc, hop = [], settings.segment_hop_s
    limits = limits_from_settings(settings, for_catalogue=True)
    for i, it in enumerate(tqdm(items, desc="catalogue", unit="track", disable=not progress)):
        audio = _LazyAudio(it.path, limits)
        wins = None
        if window_s:
            wins = windows(offsets_by_track.get(i, []), window_s, hop, lambda: len(audio.get()) / SR)
        feats, t = _track_features(backbones, it, sig_list[i], audio, wins, hop)
        for name, f in feats.items():
            out.features[name].append(f)
        if backbones:
            out.times.append(t.astype(np.float32))
        mfcc.append(_track_mfcc(mfcc_dir, sig_list[i], audio, wins, hop))
        if fp_index is not None and i not in have_fp:
            t0 = time.perf_counter()
            fp_index.add_track(i, audio.get(), SR)
            out.fp_build_s += time.perf_counter() - t0
    out.mfcc = np.stack(mfcc)
    return out


def catalogue_vectors(emb: dict[str, EmbedConfig], cat: CataloguePass, settings,
                      ) -> tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Per configuration: track vectors (n, D), and the segment table (vectors, owner track, start s).

    Besides the heads: the pretrained features' mean (:data:`PRETRAINED`) and the
    similarity model a build fits on them (:data:`SIMILARITY`).
    """
    track_vecs: dict[str, np.ndarray] = {}
    seg_tables: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for name, c in emb.items():
        feats = cat.features["logmel" if name == "logmel" else "musicnn"]
        segs = [c.head.head.embed(f) for f in feats]
        track_vecs[name] = np.stack([l2n(s.mean(0)) for s in segs])
        owner = np.concatenate([np.full(len(s), i) for i, s in enumerate(segs)])
        times = np.concatenate(cat.times).astype(np.float32)
        seg_tables[name] = (np.concatenate(segs), owner, times)
    if cat.features["musicnn"]:
        # the similarity model as a build fits it (label-free, on the catalogue) and the
        # pretrained features it starts from, side by side with the heads and the baseline
        from engine.similarity import SimilarityConfig, fit_track_encoder

        feats = cat.features["musicnn"]
        track_vecs[PRETRAINED] = l2n(np.stack([f.mean(0) for f in feats]))
        # on the cached head features (musicnn mean_pool): the build's model also pools the
        # penultimate layer; bench/answers_eval.py measures the built index itself
        enc = fit_track_encoder(feats, SimilarityConfig(blocks=(("features", feats[0].shape[1]),),
                                                        out_dim=settings.embedding_dim))
        track_vecs[SIMILARITY] = enc.track_vectors(feats)
    return track_vecs, seg_tables


def uses_fingerprints(configs: list[str]) -> bool:
    """Whether any configuration asked for needs the landmark index."""
    return "fingerprint" in configs or any(comb in configs for comb, _ in COMBINED)
