"""Backbone features for training and ``eval``, cached under ``<data_dir>/feature_cache/<model id>/``.

Backbone features dominate the cost (musicnn: seconds of CPU per minute of audio),
so training never runs the backbone over whole tracks.  Per track it samples a few
excerpts of catalogue patches, computes the clean features of those patches (on the
catalogue's own 3-s grid) and of one phone-degraded view of each excerpt, and caches
them keyed by the file's content hash (:func:`~index_builder.training.data.audio_signature`)
and the view config, so reruns, more epochs and other optimiser seeds reuse them.
``eval`` reads (and fills) the same cache with clean features of whole tracks.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine.fileio import atomic_write

from .data import CatalogueItem, audio_signature

log = logging.getLogger(__name__)

AUGMENT_VERSION = 1  # bump when augment.phone_degrade changes what it makes


@dataclass(frozen=True)
class ViewConfig:
    """How degraded views are sampled (part of the cache key)."""

    excerpts: int = 2  # degraded excerpts per track
    excerpt_patches: int = 4  # catalogue patches per excerpt (4 x 3 s ~ a 12-s voice message)
    max_shift_s: float = 1.5  # |offset| from the patch grid; = half the catalogue hop
    opus: bool = True
    seed: int = 0

    def key(self) -> str:
        blob = json.dumps({**asdict(self), "augment": AUGMENT_VERSION}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


class FeatureCache:
    """Backbone features per audio file, under ``<data_dir>/feature_cache/<model_id>/``."""

    def __init__(self, data_dir: Path, backbone, settings) -> None:
        self.backbone = backbone
        self.settings = settings
        safe = backbone.model_id.replace("/", "_").replace(":", "-")
        self.dir = Path(data_dir) / "feature_cache" / safe
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hop = float(settings.segment_hop_s)

    def clean_path(self, sig: str) -> Path:
        return self.dir / f"{sig}.clean-h{self.hop:g}.npy"

    def views_path(self, sig: str, cfg: ViewConfig) -> Path:
        return self.dir / f"{sig}.views-{cfg.key()}.npz"

    def decode(self, path: Path) -> np.ndarray:
        from engine.audio import decode, limits_from_settings

        return decode(Path(path), self.backbone.sample_rate,
                      limits_from_settings(self.settings, for_catalogue=True)).samples

    @staticmethod
    def _save(path: Path, write) -> None:
        atomic_write(path, write)

    def clean(self, item_path: Path, sig: str, audio: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Clean features of every catalogue patch (what ``build`` indexes); (features, audio if decoded)."""
        p = self.clean_path(sig)
        if p.exists():
            return np.load(p), audio
        if audio is None:
            audio = self.decode(item_path)
        f = self.backbone.features(audio, self.hop).astype(np.float32)
        self._save(p, lambda fh: np.save(fh, f))
        return f, audio

    def clean_window(self, item_path: Path, sig: str, g0: int, n: int,
                     audio: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Clean features of catalogue patches ``g0 .. g0+n-1`` only (the same grid as :meth:`clean`)."""
        full = self.clean_path(sig)
        if full.exists():
            return np.load(full)[g0:g0 + n], audio
        p = self.dir / f"{sig}.clean-h{self.hop:g}-g{g0}-n{n}.npy"
        if p.exists():
            return np.load(p), audio
        if audio is None:
            audio = self.decode(item_path)
        f = self._window_features(audio, g0, n)
        self._save(p, lambda fh: np.save(fh, f))
        return f, audio

    def _window_features(self, audio: np.ndarray, g0: int, n: int) -> np.ndarray:
        sr = self.backbone.sample_rate
        a = int(round(g0 * self.hop * sr))
        b = a + int(round(((n - 1) * self.hop + self.backbone.patch_seconds) * sr))
        seg = audio[a:b]
        if len(seg) == 0:
            return np.zeros((0, self.backbone.dim), np.float32)
        # patches that fit entirely (or the first one, padded) - like the full-track grid
        return self.backbone.features(seg, self.hop)[:n].astype(np.float32)

    def training_views(self, item_path: Path, sig: str, cfg: ViewConfig,
                       noise_pool: np.ndarray | None = None) -> tuple[dict, np.ndarray | None]:
        """{clean, feats, grid} for the sampled excerpts (cached); ``grid`` indexes ``clean``."""
        p = self.views_path(sig, cfg)
        if p.exists():
            with np.load(p) as z:
                return {k: z[k] for k in ("clean", "feats", "grid")}, None
        audio = self.decode(item_path)
        views = self.make_views(audio, sig, cfg, noise_pool)
        self._save(p, lambda fh: np.savez(fh, **views))
        return views, audio

    def make_views(self, audio: np.ndarray, sig: str, cfg: ViewConfig, noise_pool: np.ndarray | None) -> dict:
        """Clean patches of a few excerpts + degraded views of them, each view paired with the nearest clean patch.

        Only the excerpts are run through the backbone (clean and degraded), so the
        cost per track is ``2 x excerpts x excerpt_patches x 3 s`` of audio whatever
        the track's length.
        """
        from engine.audio import normalise_loudness
        from index_builder.augment import phone_degrade

        sr = self.backbone.sample_rate
        hop = self.hop
        dim = self.backbone.dim
        n_grid = self.backbone.n_patches(len(audio), hop)
        # a per-track generator: the same views whatever order tracks come in
        rng = np.random.default_rng([cfg.seed, int(sig[:8], 16)])
        span = max(1, min(cfg.excerpt_patches, n_grid))
        n_starts = max(1, n_grid - span + 1)
        starts = np.sort(rng.choice(n_starts, size=min(cfg.excerpts, n_starts), replace=False))
        clean, feats, grid = [], [], []
        for g in starts:
            g = int(g)
            base = len(clean)
            cf = self._window_features(audio, g, span)
            clean.extend(cf)
            shift = float(rng.uniform(-cfg.max_shift_s, cfg.max_shift_s))
            t0 = max(0.0, g * hop + shift)
            length = (span - 1) * hop + self.backbone.patch_seconds
            seg = audio[int(t0 * sr): int((t0 + length) * sr)]
            if len(seg) < int(self.backbone.patch_seconds * sr * 0.5):
                continue
            deg = phone_degrade(seg, sr, rng, opus=cfg.opus, noise_pool=noise_pool)
            deg, _ = normalise_loudness(deg, sr)
            f = self.backbone.features(deg, hop)
            for j in range(len(f)):
                k = int(round((t0 + j * hop) / hop)) - g  # nearest catalogue patch, within this excerpt
                if 0 <= k < len(cf):
                    feats.append(f[j])
                    grid.append(base + k)
        return {
            "clean": np.asarray(clean, np.float32).reshape(-1, dim),
            "feats": np.asarray(feats, np.float32).reshape(-1, dim),
            "grid": np.asarray(grid, np.int32),
        }


def _progress(iterable, total: int, desc: str, enabled: bool = True):
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="track", disable=not enabled, smoothing=0.1,
                dynamic_ncols=True)


def collect_features(items: list[CatalogueItem], cache: FeatureCache, cfg: ViewConfig,
                     progress: bool = True) -> tuple[list[str], list[np.ndarray], list[dict | None], list[str]]:
    """Per item: signature, clean excerpt patches, views {feats, grid}; undecodable items reported and dropped."""
    from engine.errors import SynestheteError

    sigs, cleans, views, failed = [], [], [], []
    pool: np.ndarray | None = None
    for it in _progress(items, len(items), "features", progress):
        try:
            sig = audio_signature(it.path)
            v, audio = cache.training_views(it.path, sig, cfg, noise_pool=pool)
        except (SynestheteError, OSError) as exc:
            log.warning("skipping %s (%s): %s", it.track_id, it.path, exc)
            failed.append(it.track_id)
            sigs.append("")
            cleans.append(np.zeros((0, cache.backbone.dim), np.float32))
            views.append(None)
            continue
        if audio is not None and len(audio) > 0:
            # "another song in the room" for the next track's views: a minute of this one
            pool = audio[len(audio) // 3: len(audio) // 3 + 60 * cache.backbone.sample_rate].copy()
        sigs.append(sig)
        cleans.append(v["clean"])
        views.append({"feats": v["feats"], "grid": v["grid"]})
    return sigs, cleans, views, failed
