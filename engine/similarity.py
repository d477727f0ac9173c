"""The similarity model: a track's backbone descriptors -> one *track vector* for "sounds alike".

Why a model of its own, apart from the segment head (``engine.head``): the segment
head is trained for identification (a phone recording of a moment = that moment),
which is the opposite of what similarity needs (two *different* songs that sound
alike).  One head could not serve both (docs/quality.md), so:

- **segment vectors** (``engine.head``, Milvus ``segments``) answer "which catalogue song is this?";
- **track vectors** (this module, Milvus ``tracks``) answer "which songs sound like it?".

Two methods, measured side by side on held-out artists (``bench/similarity_eval.py``,
docs/quality.md), both fitted on the catalogue's own audio without labels:

- ``pooled`` (default): per track the mean *and* the spread (std over segments) of
  musicnn's ``mean_pool`` layer and the mean of its ``penultimate`` layer
  (``Backbone.descriptor_blocks``); each statistic standardised with the catalogue's
  own statistics and L2-normalised so the three blocks weigh the same; then a PCA,
  fitted on the catalogue, down to the collection's dimension.  Second-order pooling
  of frame features is the classic song-level timbre model (Mandel & Ellis 2005);
  here it is applied to the CNN's features.  It generalised best to artists the
  fit had not seen.
- ``lda``: a *track-level linear discriminant analysis*: every catalogue track a class,
  its segments the samples, so the directions kept are those along which a song
  agrees with itself and differs from others (the within-/between-class recipe of
  speaker recognition, Dehak et al. 2011, with songs as speakers), with a
  Ledoit-Wolf-shrunk within-class covariance (Ledoit & Wolf 2004).  It wins a little
  on the catalogue it was fitted on and loses on held-out artists, so it is not the
  default.

Both degrade gracefully on a toy catalogue (fewer than :data:`MIN_TRACKS` tracks): the
PCA keeps every direction the catalogue spans, the LDA falls back to that PCA.
Optionally the catalogue's vectors are refined by *database-side augmentation*
(:func:`database_side_augmentation`).  Everything is numpy / scikit-learn / scipy; a
fitted model is a few MB at most, saved with its config and metadata.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError

log = logging.getLogger(__name__)

SIMILARITY_FORMAT_VERSION = 2
#: catalogue meta key: the id (``TrackEncoder.sha``) of the model the track vectors come from;
#: written by the index builder, checked by every query process
MODEL_META = "similarity_model"
METHODS = ("pooled", "lda")
#: supervised terms of the pooled method: a Fisher LDA block on the catalogue's genre or artist labels
SUPERVISED_TERMS = ("none", "genre", "artist")
#: fewer tracks than this: no LDA (it would learn the catalogue, not similarity); the PCA instead
MIN_TRACKS = 20


@dataclass(frozen=True)
class SimilarityConfig:
    """How track vectors are made (saved with the model, part of its id)."""

    method: str = "pooled"  # "pooled" | "lda"
    #: the descriptor's (name, dim) blocks; the first block's spread is used too (pooled)
    blocks: tuple[tuple[str, int], ...] = (("mean_pool", 753), ("penultimate", 200))
    out_dim: int = 256  # zero-padded when the catalogue spans fewer directions
    max_segments_per_track: int = 40  # segments per track for the LDA (cost bound)
    max_tracks: int = 50000  # tracks sampled for fitting (cost bound)
    dba_k: int = 0  # database-side augmentation neighbours (0 = off; applied by the builder)
    #: "genre" / "artist": add a supervised block, an LDA on the catalogue's genre or artist labels
    #: (pooled method; "artist" is metric learning that needs many artists: docs/quality.md)
    supervised: str = "none"
    supervised_weight: float = 0.5  # that block's share of a vector's norm, relative to the audio block
    #: pooled: the weight of the first block's spread (std over segments) relative to a mean block
    #: (each block is L2-normalised, then weighted); 0 leaves the spread out
    spread_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"similarity method must be one of {METHODS}, not {self.method!r}")
        if self.supervised not in SUPERVISED_TERMS:
            raise ValueError(f"similarity supervision must be one of {SUPERVISED_TERMS}, not {self.supervised!r}")
        if not (0.0 <= float(self.spread_weight) <= 4.0):
            raise ValueError(f"the spread's weight must be within 0..4, not {self.spread_weight!r}")

    @property
    def in_dim(self) -> int:
        return int(sum(d for _, d in self.blocks))

    def to_dict(self) -> dict[str, Any]:
        d = {**asdict(self), "blocks": [list(b) for b in self.blocks]}
        if d["spread_weight"] == 1.0:  # the weight before it was a setting: models fitted then keep their id
            del d["spread_weight"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimilarityConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "blocks" in known:
            known["blocks"] = tuple((str(n), int(k)) for n, k in known["blocks"])
        return cls(**known)


def _l2n(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def track_stats(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) over a track's segment descriptors ``(n, d)`` -> two ``(d,)`` float32 arrays.

    Raises ``ValueError`` for an empty or non-2-D input.
    """
    s = np.asarray(segments, np.float32)
    if s.ndim != 2 or len(s) == 0:
        raise ValueError(f"expected (n >= 1, d) segment descriptors, got {s.shape}")
    return s.mean(0), s.std(0)


def pooled_descriptor(mean: np.ndarray, std: np.ndarray, cfg: SimilarityConfig) -> np.ndarray:
    """``[mean of block 1 | std of block 1 | mean of the other blocks]`` of one or many tracks."""
    a = cfg.blocks[0][1]
    mean, std = np.atleast_2d(mean), np.atleast_2d(std)
    return np.concatenate([mean[:, :a], std[:, :a], mean[:, a:]], axis=1).astype(np.float32)


def _pooled_blocks(cfg: SimilarityConfig) -> list[tuple[int, float]]:
    """``(width, weight)`` of each L2-normalised block of :func:`pooled_descriptor`, in order.

    The first block's mean (weight 1), its spread (``cfg.spread_weight``), then each further
    block's mean (weight 1) on its own: every block counts the same whatever its width
    (musicnn MSD and MTT ``mean_pool`` 753-d beside ``penultimate`` 200-d).
    """
    a = cfg.blocks[0][1]
    return [(a, 1.0), (a, float(cfg.spread_weight))] + [(d, 1.0) for _, d in cfg.blocks[1:]]


@dataclass
class TrackEncoder:
    """A fitted similarity model: ``track_vector(segments (n, in_dim)) -> (out_dim,)`` unit vector.

    pooled: ``x = pooled_descriptor``; ``z = (x - mean) * scale``, each block L2-normalised,
    minus ``center``, times ``projection``.  lda: ``z = (segment mean - mean) * scale``
    times ``projection`` (``center`` is zero).
    """

    config: SimilarityConfig
    mean: np.ndarray  # (p,) standardisation mean of the pooled (or segment) descriptor
    scale: np.ndarray  # (p,) 1 / std
    center: np.ndarray  # (p,) the catalogue's mean after block normalisation (pooled)
    projection: np.ndarray  # (p, k)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def in_dim(self) -> int:
        return self.config.in_dim

    @property
    def n_components(self) -> int:
        return int(self.projection.shape[1])

    def _normalised(self, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        if self.config.method == "lda":
            return (np.atleast_2d(mean) - self.mean) * self.scale
        z = (pooled_descriptor(mean, std, self.config) - self.mean) * self.scale
        parts, i = [], 0
        for d, w in _pooled_blocks(self.config):
            parts.append(w * _l2n(z[:, i:i + d]))
            i += d
        return np.concatenate(parts, axis=1) - self.center

    def vectors_from_stats(self, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
        """Track vectors ``(n, out_dim)`` from per-track (mean, std) ``(n, in_dim)`` each."""
        means, stds = np.atleast_2d(np.asarray(means, np.float32)), np.atleast_2d(np.asarray(stds, np.float32))
        if means.shape[1] != self.in_dim or stds.shape != means.shape:
            raise ValueError(f"expected ({self.in_dim},) track statistics, got {means.shape} / {stds.shape}")
        p = self._normalised(means, stds) @ self.projection
        out = np.zeros((len(p), self.config.out_dim), np.float32)
        out[:, : min(p.shape[1], self.config.out_dim)] = p[:, : self.config.out_dim]
        return _l2n(out)

    def track_vector(self, segments: np.ndarray) -> np.ndarray:
        """The unit track vector ``(out_dim,)`` of one track's (or recording's) segment descriptors ``(n, in_dim)``.

        Raises ``ValueError`` on an empty input or a wrong width.
        """
        s = np.asarray(segments, np.float32)
        if s.ndim != 2 or s.shape[1] != self.in_dim or len(s) == 0:
            raise ValueError(f"expected (n >= 1, {self.in_dim}) segment descriptors, got {s.shape}")
        m, sd = track_stats(s)
        return self.vectors_from_stats(m[None], sd[None])[0]

    def track_vectors(self, segment_lists: list[np.ndarray]) -> np.ndarray:
        """One unit vector per track, ``(len(segment_lists), out_dim)``."""
        if not segment_lists:
            return np.zeros((0, self.config.out_dim), np.float32)
        stats = [track_stats(s) for s in segment_lists]
        return self.vectors_from_stats(np.stack([m for m, _ in stats]), np.stack([s for _, s in stats]))

    @property
    def sha(self) -> str:
        """Short hash of the weights and config: names the model the track vectors came from."""
        h = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode())
        for a in (self.mean, self.scale, self.center, self.projection):
            h.update(np.ascontiguousarray(a, "<f4").tobytes())
        return h.hexdigest()[:12]

    # ---- persistence ------------------------------------------------------------

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        meta = {**self.meta, "config": self.config.to_dict(), "format": SIMILARITY_FORMAT_VERSION}
        np.savez(buf, mean=self.mean, scale=self.scale, center=self.center, projection=self.projection,
                 meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        return buf.getvalue()

    def save(self, path: Path) -> None:
        """Atomic write (a crash never leaves half a model)."""
        from .fileio import atomic_write_bytes

        atomic_write_bytes(Path(path), self.to_bytes())

    @classmethod
    def load(cls, path: Path) -> TrackEncoder:
        """Read a saved model; ``ModelError`` when it is unreadable, of another format or inconsistent."""
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                arrays = [z[k].astype(np.float32) for k in ("mean", "scale", "center", "projection")]
            if meta.get("format") != SIMILARITY_FORMAT_VERSION:
                raise ModelError(f"similarity model {path} has format {meta.get('format')}, "
                                 f"expected {SIMILARITY_FORMAT_VERSION}")
            cfg = SimilarityConfig.from_dict(meta.pop("config"))
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user problem
            raise ModelError(f"cannot read similarity model {path}: {exc}") from exc
        mean, scale, center, proj = arrays
        if not (mean.shape == scale.shape == center.shape and proj.ndim == 2 and proj.shape[0] == mean.shape[0]):
            raise ModelError(f"similarity model {path} has inconsistent shapes")
        return cls(cfg, mean, scale, center, proj, meta)


def fit_track_encoder(segment_lists: list[np.ndarray], cfg: SimilarityConfig,
                      labels: list[str] | None = None) -> TrackEncoder:
    """Fit the model on a catalogue: one ``(n_i, in_dim)`` array of segment descriptors per track.

    See :func:`fit_from_stats`; the LDA needs the segments themselves, the pooled
    method only each track's (mean, std).  ``labels``: one genre per track, for the
    supervised term (pooled method).
    """
    stats = [track_stats(s) for s in segment_lists if len(s)]
    if cfg.method == "lda":
        return _fit_lda([s for s in segment_lists if len(s)], stats, cfg)
    return fit_from_stats(np.stack([m for m, _ in stats]) if stats else np.zeros((0, cfg.in_dim)),
                          np.stack([s for _, s in stats]) if stats else np.zeros((0, cfg.in_dim)), cfg, labels)


def fit_from_stats(means: np.ndarray, stds: np.ndarray, cfg: SimilarityConfig,
                   labels: list[str] | None = None) -> TrackEncoder:
    """Fit the pooled method on per-track (mean, std) of the segment descriptors, ``(n, in_dim)`` each.

    With ``cfg.supervised == "genre"`` and ``labels`` (one genre or "" per track), a
    supervised block is appended: Fisher LDA directions of the genres (:func:`_lda`),
    scaled to ``supervised_weight`` of the audio block's typical norm.  Measured with folds
    split by artist (quality.md) it did not generalise on the dev corpus, so it is off by
    default.
    Raises ``ValueError`` (a sentence for the user) for fewer than two tracks, or when all
    tracks have the same descriptors.
    Cost: one SVD of ``(n, 2*a + b)``; about a second for 10k tracks.
    """
    if len(means) < 2:
        raise ValueError(f"a similarity model needs at least two tracks; this catalogue has {len(means)}")
    rng = np.random.default_rng(cfg.seed)
    if len(means) > cfg.max_tracks:
        keep = np.sort(rng.choice(len(means), cfg.max_tracks, replace=False))
        means, stds = means[keep], stds[keep]
    x = pooled_descriptor(means, stds, cfg)
    mu, sd = x.mean(0), np.maximum(x.std(0), 1e-4)
    enc = TrackEncoder(cfg, mu.astype(np.float32), (1.0 / sd).astype(np.float32),
                       np.zeros(x.shape[1], np.float32), np.eye(x.shape[1], dtype=np.float32))
    z = enc._normalised(means, stds)
    enc.center = z.mean(0).astype(np.float32)
    enc.projection, ratio = _pca(z - enc.center, cfg.out_dim)
    if enc.n_components == 0:
        raise ValueError("the catalogue's tracks all sound the same to the backbone (identical descriptors); "
                         "there is nothing to tell them apart by")
    if cfg.supervised != "none" and labels is not None:
        enc.projection, enc_sup = _with_label_block(z - enc.center, enc.projection, labels, cfg)
    else:
        enc_sup = None
    enc.meta = {"trained": len(means) >= MIN_TRACKS, "n_tracks": int(len(means)), "supervised": enc_sup,
                "method": pooled_method_text(cfg),
                "n_components": enc.n_components, "explained_variance": round(float(ratio), 4),
                "created": datetime.now(UTC).isoformat(timespec="seconds")}
    return enc


def pooled_method_text(cfg: SimilarityConfig) -> str:
    """What ``about`` says of a pooled model: its backbones and blocks, e.g.
    ``pooled musicnn MSD+MTT statistics (mean_pool mean + spread x0.5, penultimate means) + PCA, ...``."""
    models = ["MSD"] + sorted({n.split("_", 1)[0].upper() for n, _ in cfg.blocks[1:] if n.startswith("mtt_")})
    spread = "" if cfg.spread_weight == 0 else (" + spread" if cfg.spread_weight == 1 else
                                                 f" + spread x{cfg.spread_weight:g}")
    return (f"pooled musicnn {'+'.join(models)} statistics (mean_pool mean{spread}, penultimate means) + PCA, "
            "fitted on the catalogue")


def _with_label_block(zc: np.ndarray, proj: np.ndarray, labels: list[str], cfg: SimilarityConfig
                      ) -> tuple[np.ndarray, dict | None]:
    """``[audio PCA | w * label LDA]`` columns within ``out_dim``; unchanged with < 2 usable labels.

    ``labels``: one genre or artist (``cfg.supervised``) per track, "" for none.  With artists as
    classes this is the within/between-class metric learning of speaker recognition (Dehak et
    al. 2011) with artists as speakers: directions along which an artist's tracks agree.  It
    needs many artists to learn directions that hold for artists it has not seen.
    """
    names = sorted({g for g in labels if g})
    y = np.asarray([names.index(g) if g else -1 for g in labels])
    keep = y >= 0
    counts = np.bincount(y[keep], minlength=len(names)) if keep.any() else np.zeros(0, int)
    if (counts >= 2).sum() < 2:
        return proj, None
    k = min(len(names) - 1, 16 if cfg.supervised == "genre" else 64, cfg.out_dim // 4)
    g, _ = _lda(zc[keep], y[keep], k)
    audio = proj[:, : cfg.out_dim - g.shape[1]]
    na = np.linalg.norm(zc @ audio, axis=1).mean()
    ng = np.linalg.norm(zc @ g, axis=1).mean()
    g = g * (cfg.supervised_weight * na / max(ng, 1e-12))
    return np.hstack([audio, g]).astype(np.float32), {"labels": cfg.supervised, "classes": len(names),
                                                       "components": int(g.shape[1])}


def _fit_lda(segment_lists: list[np.ndarray], stats, cfg: SimilarityConfig) -> TrackEncoder:
    """Track-level LDA on sampled segments; a PCA of the track means below MIN_TRACKS tracks."""
    rng = np.random.default_rng(cfg.seed)
    if len(segment_lists) < 2:
        raise ValueError(f"a similarity model needs at least two tracks; this catalogue has {len(segment_lists)}")
    idx = list(range(len(segment_lists)))
    if len(idx) > cfg.max_tracks:
        idx = sorted(rng.choice(idx, cfg.max_tracks, replace=False).tolist())
    xs, ys = [], []
    for label, i in enumerate(idx):
        s = np.asarray(segment_lists[i], np.float32)
        if len(s) > cfg.max_segments_per_track:
            s = s[np.sort(rng.choice(len(s), cfg.max_segments_per_track, replace=False))]
        xs.append(s)
        ys.append(np.full(len(s), label))
    x, y = np.concatenate(xs), np.concatenate(ys)
    mean, scale = x.mean(0), (1.0 / np.maximum(x.std(0), 1e-4)).astype(np.float32)
    xz = (x - mean) * scale
    if sum(len(s) >= 2 for s in xs) >= MIN_TRACKS:
        proj, ratio = _lda(xz, y, min(cfg.out_dim, len(idx) - 1, x.shape[1]))
        method, trained = "track-level LDA (Ledoit-Wolf shrinkage), fitted on the catalogue", True
    else:
        means = np.stack([xz[y == c].mean(0) for c in range(len(idx))])
        proj, ratio = _pca(means - means.mean(0), cfg.out_dim)
        method, trained = "PCA of the track means (catalogue too small for the LDA)", False
    meta = {"trained": trained, "method": method, "n_tracks": len(idx), "n_segments": int(len(x)),
            "n_components": int(proj.shape[1]), "explained_variance": round(float(np.sum(ratio)), 4),
            "created": datetime.now(UTC).isoformat(timespec="seconds")}
    return TrackEncoder(cfg, mean.astype(np.float32), scale, np.zeros_like(mean, np.float32), proj, meta)


def _lda(xz: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Fisher LDA with a Ledoit-Wolf-shrunk pooled within-track covariance: (d, k) directions, variance ratios.

    The within-class scatter is estimated once on the class-centred segments
    (``sklearn.covariance.ledoit_wolf``) rather than per class as scikit-learn's
    ``LinearDiscriminantAnalysis`` does (one shrinkage per class: minutes at 10k tracks);
    the between-class scatter is the covariance of the track means (weighted by their
    segment counts); directions solve ``Sb v = l Sw v`` (``scipy.linalg.eigh``), each
    weighted by the square root of its share of the discriminant variance.
    """
    from scipy.linalg import eigh
    from sklearn.covariance import ledoit_wolf

    n_cls = int(y.max()) + 1
    counts = np.bincount(y, minlength=n_cls).astype(np.float64)
    sums = np.zeros((n_cls, xz.shape[1]))
    np.add.at(sums, y, xz)
    means = sums / counts[:, None]
    sw, _ = ledoit_wolf(xz - means[y], assume_centered=True)
    mc = means - (counts[:, None] * means).sum(0) / counts.sum()
    sb = (mc * counts[:, None]).T @ mc / counts.sum()
    evals, evecs = eigh(sb, sw)
    order = np.argsort(evals)[::-1][:k]
    evals = np.clip(evals[order], 0, None)
    ratio = evals / max(evals.sum(), 1e-12)
    proj = evecs[:, order] * np.sqrt(ratio / max(ratio[0], 1e-12))[None, :]
    return proj.astype(np.float32), ratio


def _pca(centred: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Orthonormal (d, <=k) basis of the rows' span, largest variance first; and the variance share kept."""
    _, sv, vt = np.linalg.svd(np.asarray(centred, np.float64), full_matrices=False)
    keep = (sv > sv.max() * 1e-6) if len(sv) and sv.max() > 0 else np.zeros(len(sv), bool)
    basis = vt[keep][:k]
    var = sv[keep] ** 2
    share = float(var[:k].sum() / var.sum()) if var.sum() > 0 else 1.0
    return np.asarray(basis.T, np.float32), share


def database_side_augmentation(vectors: np.ndarray, k: int, alpha: float = 3.0,
                               block: int = 4096) -> np.ndarray:
    """DBA: each unit vector -> normalised sum of itself and its ``k`` nearest others, weighted sim^alpha.

    ``vectors`` ``(n, D)`` unit rows; returns ``(n, D)`` unit rows.  ``k = 0`` returns the input.
    Source: Arandjelović & Zisserman 2012 (average query expansion / DBA), with the
    alpha-weighting of Radenović et al. 2018.  Cost O(n^2 D), in blocks of ``block`` rows.
    """
    v = np.asarray(vectors, np.float32)
    if k <= 0 or len(v) < 2:
        return v.copy()
    k = min(k, len(v) - 1)
    out = np.empty_like(v)
    for a in range(0, len(v), block):
        sims = v[a:a + block] @ v.T
        rows = np.arange(sims.shape[0])
        sims[rows, a + rows] = -np.inf
        nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        w = np.clip(np.take_along_axis(sims, nn, 1), 0, None) ** alpha
        out[a:a + block] = v[a:a + block] + np.einsum("nk,nkd->nd", w, v[nn])
    return _l2n(out)
