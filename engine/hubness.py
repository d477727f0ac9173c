"""Hubness reduction for the track search: mutual proximity, Gaussian approximation.

Source: Schnitzer, Flexer, Schedl & Widmer, "Local and global scaling reduce hubs in space",
JMLR 13 (2012), "MP (Gaussian)": in high dimensions a few tracks ("hubs") are near everything
and crowd every answer list; mutual proximity replaces the similarity ``s`` of query ``q`` and
track ``t`` by the probability that ``s`` is high *for both*:

    MP(q, t) = Phi((s - mu_q) / sd_q) * Phi((s - mu_t) / sd_t)

with ``mu_x``, ``sd_x`` the mean and standard deviation of ``x``'s similarities to every
catalogue track.  For cosine similarity of unit vectors both moments are exact and cheap from
two catalogue statistics, the mean vector ``m`` (d,) and the second moment ``S = X^T X / n``
(d, d): ``mu_x = x . m`` and ``sd_x^2 = x^T S x - mu_x^2``.  So the build fits ``m`` and ``S``
once (O(n d^2): ~0.1 s per 10k tracks at d=256), and a query re-ranks its Milvus candidates
(:data:`MP_POOL` of them) by MP, without a second search.

Off by default (``SYNESTHETE_SIMILARITY_HUBNESS=none``): hubs grow with the catalogue, and at a
few hundred tracks it changed same-artist P@5 by +-0.02-0.03 (docs/quality.md).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Milvus candidates a query re-ranks by MP (the cosine top ``MP_POOL``; the answer is chosen among them).
#: Fixed, and above every page the API can ask for (offset 100 + k 25, three times over), so each
#: page of one seed is a slice of the same re-ranked list: a pool that grew with the offset would
#: let MP move tracks across pages (repeats, gaps).
MP_POOL = 400
#: the similarity spread never taken below this (a track identical to every other)
_MIN_SD = 1e-6


@dataclass(frozen=True)
class MutualProximity:
    """The catalogue statistics MP needs: ``mean`` (d,), ``second`` (d, d), of ``n`` unit track vectors.

    ``model_sha``: the similarity model whose vectors they describe (a refit makes them stale).
    """

    mean: np.ndarray
    second: np.ndarray
    n: int
    model_sha: str

    @classmethod
    def fit(cls, vectors: np.ndarray, model_sha: str) -> MutualProximity:
        """From the catalogue's track vectors ``(n, d)`` (unit length, as stored); ``ValueError`` below 2."""
        x = np.asarray(vectors, np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"mutual proximity needs at least 2 track vectors, got shape {x.shape}")
        return cls(x.mean(0), x.T @ x / len(x), len(x), model_sha)

    def moments(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mu, sd)`` of each row's cosine similarity to every catalogue track, each ``(m,)``."""
        x = np.atleast_2d(np.asarray(vectors, np.float64))
        mu = x @ self.mean
        var = np.einsum("ij,jk,ik->i", x, self.second, x) - mu ** 2
        return mu, np.sqrt(np.maximum(var, _MIN_SD ** 2))

    def scores(self, query: np.ndarray, candidates: np.ndarray, sims: np.ndarray) -> np.ndarray:
        """MP of the query ``(d,)`` with each candidate ``(m, d)`` at cosine ``sims`` ``(m,)``: ``(m,)`` in [0, 1]."""
        from scipy.special import ndtr

        mu_q, sd_q = self.moments(query[None, :])
        mu_t, sd_t = self.moments(candidates)
        s = np.asarray(sims, np.float64)
        return ndtr((s - mu_q[0]) / sd_q[0]) * ndtr((s - mu_t) / sd_t)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, mean=self.mean, second=self.second, n=np.array(self.n), sha=np.array(self.model_sha))
        return buf.getvalue()

    def save(self, path: Path) -> None:
        """Atomic write (a crash never leaves half a file)."""
        from .fileio import atomic_write_bytes

        atomic_write_bytes(Path(path), self.to_bytes())

    @classmethod
    def load(cls, path: Path) -> MutualProximity:
        """Read a saved file; ``ValueError`` (with the cause) when it is unreadable or inconsistent."""
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                mp = cls(z["mean"].astype(np.float64), z["second"].astype(np.float64), int(z["n"]), str(z["sha"]))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same problem
            raise ValueError(f"cannot read {path}: {exc}") from exc
        if mp.second.shape != (len(mp.mean), len(mp.mean)):
            raise ValueError(f"{path}: inconsistent shapes {mp.mean.shape} / {mp.second.shape}")
        return mp


def load_for(path: Path, model_sha: str | None) -> MutualProximity | None:
    """The statistics for the index's similarity model, or None (said in the log) when missing or stale.

    Why not an error: MP only re-orders answers; without it the cosine ranking answers, and the
    log says how to get it back (a build refits the similarity model and writes the file).
    """
    if model_sha is None:  # no similarity model: the stored vectors are the head's, not the model's
        log.warning("SYNESTHETE_SIMILARITY_HUBNESS=mp needs the similarity model, which this index lacks: "
                    "answers use cosine ranking")
        return None
    if not Path(path).exists():
        log.warning("SYNESTHETE_SIMILARITY_HUBNESS=mp but %s is missing: answers use cosine ranking; "
                    "run `synesthete-index build` to fit it (no re-embedding)", path)
        return None
    try:
        mp = MutualProximity.load(path)
    except ValueError as exc:
        log.warning("mutual proximity off (%s): answers use cosine ranking; `synesthete-index build` refits it", exc)
        return None
    if mp.model_sha != model_sha:
        log.warning("%s belongs to another similarity model: answers use cosine ranking; "
                    "run `synesthete-index build` to refit it (no re-embedding)", path)
        return None
    return mp


def k_occurrence_skewness(sims: np.ndarray, k: int = 5) -> float:
    """Skewness of the k-occurrence N_k (how often each item is in others' top k): the hubness measure
    of Radovanović et al. 2010.  ``sims``: ``(n, n)``, larger = closer; the diagonal is ignored."""
    s = np.array(sims, np.float64)
    np.fill_diagonal(s, -np.inf)
    top = np.argsort(-s, axis=1)[:, :k]
    counts = np.bincount(top.ravel(), minlength=len(s)).astype(np.float64)
    sd = counts.std()
    return float(((counts - counts.mean()) ** 3).mean() / sd ** 3) if sd > 0 else 0.0
