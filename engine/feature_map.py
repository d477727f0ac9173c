"""Rows without audio, placed in the similarity space by their Spotify features and genre (issue 14).

The Kaggle catalogue lists far more rows than anyone has audio for.  A row without
audio but with Spotify's audio features (danceability, energy, tempo, …) and a genre
can still be a seed and an answer: a ridge regression (scikit-learn ``RidgeCV``, the
regularisation chosen by efficient leave-one-out cross-validation) learned on the rows
that have *both* audio and features maps ``[standardised features | genre one-hot]``
to their track vectors; its prediction, L2-normalised, is the row's vector.  Such
answers are marked "matched by its Spotify features, not heard".

Only the feature columns present on (almost) every training row are used, so a
catalogue whose CSV carries a subset of Spotify's columns still works.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: fewer rows with both audio and features than this: no mapping (it would not generalise)
MIN_ROWS = 30
#: a feature column is used when at least this share of the training rows has it
COLUMN_COVERAGE = 0.9


@dataclass
class FeatureMapping:
    """``predict(features dicts, genre lists) -> (n, D)`` unit vectors."""

    columns: list[str]
    genres: list[str]  # one-hot vocabulary (lower case)
    mean: np.ndarray  # (len(columns),)
    scale: np.ndarray  # (len(columns),)
    coef: np.ndarray  # (len(columns) + len(genres), D)
    intercept: np.ndarray  # (D,)
    meta: dict[str, Any] = field(default_factory=dict)

    def _design(self, features: list[dict[str, float] | None], genres: list[list[str]]) -> np.ndarray:
        x = np.array([[(f or {}).get(c, np.nan) for c in self.columns] for f in features], np.float64)
        x = np.where(np.isnan(x), self.mean, x)  # a missing column: the training mean (zero after scaling)
        z = (x - self.mean) / self.scale
        g = np.zeros((len(genres), len(self.genres)))
        index = {name: i for i, name in enumerate(self.genres)}
        for row, gs in enumerate(genres):
            for name in gs:
                if name.lower() in index:
                    g[row, index[name.lower()]] = 1.0
        return np.hstack([z, g])

    def predict(self, features: list[dict[str, float] | None], genres: list[list[str]]) -> np.ndarray:
        """Unit vectors ``(n, D)`` for rows described by ``features`` and ``genres``."""
        y = self._design(features, genres) @ self.coef + self.intercept
        return (y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def usable_columns(features: list[dict[str, float] | None]) -> list[str]:
    """The Spotify columns present on at least :data:`COLUMN_COVERAGE` of the rows."""
    from .catalogue import SPOTIFY_FEATURES

    n = max(1, len(features))
    return [c for c in SPOTIFY_FEATURES if sum(1 for f in features if f and c in f) / n >= COLUMN_COVERAGE]


def fit_feature_mapping(features: list[dict[str, float] | None], genres: list[list[str]],
                        vectors: np.ndarray) -> FeatureMapping:
    """Learn features + genre -> track vector on rows that have both.

    Raises ``ValueError`` (a sentence) with fewer than :data:`MIN_ROWS` rows or no usable column.
    """
    from sklearn.linear_model import RidgeCV

    keep = [i for i, f in enumerate(features) if f]
    if len(keep) < MIN_ROWS:
        raise ValueError(f"mapping Spotify features to sound needs {MIN_ROWS} tracks with both audio and "
                         f"features; this catalogue has {len(keep)}")
    feats = [features[i] for i in keep]
    cols = usable_columns(feats)
    if not cols:
        raise ValueError("no Spotify feature column is present on most rows")
    x = np.array([[f.get(c, np.nan) for c in cols] for f in feats], np.float64)
    mean = np.nanmean(x, axis=0)
    scale = np.maximum(np.nanstd(x, axis=0), 1e-6)
    vocab = sorted({g.lower() for i in keep for g in genres[i]})
    m = FeatureMapping(cols, vocab, mean, scale, np.zeros((len(cols) + len(vocab), vectors.shape[1])),
                       np.zeros(vectors.shape[1]))
    design = m._design(feats, [genres[i] for i in keep])
    ridge = RidgeCV(alphas=np.logspace(-2, 3, 12)).fit(design, np.asarray(vectors, np.float64)[keep])
    m.coef, m.intercept = ridge.coef_.T.copy(), np.asarray(ridge.intercept_, np.float64)
    m.meta = {"rows": len(keep), "columns": cols, "genres": len(vocab), "alpha": float(ridge.alpha_)}
    return m
