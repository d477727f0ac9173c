"""The optimisation: an :class:`~engine.head.EmbeddingHead` trained on cached features.

Batches hold one pair per *distinct* track, so other moments of the same song are
never negatives.  A pair is a clean catalogue patch and a phone-degraded view of the
same moment (:mod:`index_builder.training.cache`).  The loss is InfoNCE between the
two, plus relational distillation toward the untrained head (its copy, frozen, is the
teacher), plus optionally a supervised-contrastive term (:mod:`.losses`).
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .cache import ViewConfig
from .losses import info_nce, relational_kd, sup_con

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_tracks: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    distill_weight: float = 1.0
    supervised: str = "none"
    supervised_weight: float = 0.5
    seed: int = 0


@dataclass
class TrainResult:
    head: Any
    meta: dict
    history: list[float]


@dataclass
class _Pairs:
    """Everything an epoch reads, as tensors: clean patches, degraded views, and which is whose."""

    clean: Any  # torch (P, in_dim): every clean patch of every track
    views: Any  # torch (V, in_dim): every degraded view
    track: np.ndarray  # (V,) the track of each view
    clean_index: np.ndarray  # (V,) row of ``clean`` each view is paired with
    n_tracks: int  # tracks with at least one view


def _batches(track_of_pair: np.ndarray, n_tracks_with_pairs: list[int], batch: int,
             rng: np.random.Generator) -> Iterable[np.ndarray]:
    """One epoch: every pair once; each batch holds pairs of distinct tracks."""
    per_track: dict[int, list[int]] = {}
    for i, t in enumerate(track_of_pair):
        per_track.setdefault(int(t), []).append(i)
    queues = {t: list(rng.permutation(v)) for t, v in per_track.items()}
    while queues:
        order = rng.permutation(sorted(queues))
        round_ = [queues[t].pop() for t in order]
        for t in list(queues):
            if not queues[t]:
                del queues[t]
        for i in range(0, len(round_), batch):
            chunk = np.asarray(round_[i:i + batch])
            if len(chunk) >= 2:
                yield chunk


def _stack_views(views: list, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """All degraded views as (features, their track, global index of their clean patch); None if none."""
    vf, vt, vc = [], [], []
    for t, v in enumerate(views):
        if v is None or len(v["feats"]) == 0:
            continue
        vf.append(v["feats"])
        vt.append(np.full(len(v["grid"]), t))
        vc.append(offsets[t] + v["grid"])
    if not vf:
        return None
    return np.concatenate(vf), np.concatenate(vt), np.concatenate(vc)


def _pairs(all_clean: np.ndarray, clean: list[np.ndarray], views: list[dict | None]) -> _Pairs:
    """The training pairs; ``ValueError`` without views or with fewer than two tracks that have some."""
    import torch

    offsets = np.cumsum([0] + [len(c) for c in clean])
    stacked = _stack_views(views, offsets)
    if stacked is None:
        raise ValueError("no degraded views to train on")
    pair_track = stacked[1]
    n_tracks = len({int(t) for t in pair_track})
    if n_tracks < 2:
        raise ValueError("contrastive training needs at least two tracks with views")
    return _Pairs(torch.as_tensor(all_clean), torch.as_tensor(stacked[0]), pair_track, stacked[2], n_tracks)


def _epoch(head, teacher, pairs: _Pairs, batches: Iterable[np.ndarray], opt, sched, cfg: TrainConfig,
           labels) -> float:
    """One pass over ``batches``; the mean loss per pair.  ``labels``: a torch tensor per track, or None."""
    import torch

    total, count = 0.0, 0
    for idx in batches:
        a = head(pairs.clean[pairs.clean_index[idx]])
        b = head(pairs.views[idx])
        loss = info_nce(a, b, cfg.temperature)
        if cfg.distill_weight > 0:
            with torch.no_grad():
                a0 = teacher(pairs.clean[pairs.clean_index[idx]])
            loss = loss + cfg.distill_weight * relational_kd(a, a0, cfg.temperature)
        if labels is not None:
            loss = loss + cfg.supervised_weight * sup_con(a, labels[pairs.track[idx]], cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched.last_epoch + 1 < sched.total_steps:
            sched.step()
        total += float(loss.detach()) * len(idx)
        count += len(idx)
    return total / max(1, count)


def train_head(clean: list[np.ndarray], views: list[dict | None], cfg: TrainConfig, *,
               labels: np.ndarray | None = None, out_dim: int = 256, progress: bool = True,
               log_every: int = 1) -> TrainResult:
    """Train an EmbeddingHead on cached features.  ``labels``: one int per track (-1 = none).

    ``clean[t]``: (patches, in_dim) clean features of track t; ``views[t]``: its
    ``{feats, grid}`` (:meth:`FeatureCache.training_views`) or None.  Deterministic for a
    given ``cfg.seed``.  Raises ``ValueError`` without views of at least two tracks.
    """
    import torch
    from tqdm import tqdm

    from engine.head import EmbeddingHead

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    in_dim = next(c.shape[1] for c in clean if c.size)
    all_clean = np.concatenate([c for c in clean if len(c)])
    head = EmbeddingHead(in_dim, out_dim, seed=cfg.seed)
    head.fit_normalisation(all_clean)
    teacher = copy.deepcopy(head).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    pairs = _pairs(all_clean, clean, views)
    batch = min(cfg.batch_tracks, pairs.n_tracks)
    use_sup = cfg.supervised != "none" and labels is not None and (labels >= 0).sum() >= 2
    label_t = torch.as_tensor(labels, dtype=torch.long) if use_sup else None

    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = sum(1 for _ in _batches(pairs.track, [], batch, np.random.default_rng(0)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, steps_per_epoch * cfg.epochs),
                                                pct_start=0.1, anneal_strategy="cos")
    history: list[float] = []
    bar = tqdm(range(cfg.epochs), desc="epochs", unit="epoch", disable=not progress, dynamic_ncols=True)
    head.train()
    for epoch in bar:
        history.append(_epoch(head, teacher, pairs, _batches(pairs.track, [], batch, rng), opt, sched, cfg, label_t))
        bar.set_postfix(loss=f"{history[-1]:.3f}")
        if (epoch + 1) % log_every == 0:
            log.info("epoch %d/%d loss %.4f", epoch + 1, cfg.epochs, history[-1])
    head.eval()
    return TrainResult(head, _meta(cfg, use_sup, pairs, len(all_clean), history), history)


def _meta(cfg: TrainConfig, use_sup: bool, pairs: _Pairs, n_clean: int, history: list[float]) -> dict:
    """What the checkpoint records about the run (``engine.head.save_head`` metadata)."""
    return {
        "trained": True,
        "objective": "infonce(clean, phone_degrade view)" + (" + relational distillation" if cfg.distill_weight else "")
                     + (f" + supcon({cfg.supervised})" if use_sup else ""),
        "train_config": asdict(cfg),
        "n_tracks": int(pairs.n_tracks),
        "n_pairs": len(pairs.track),
        "n_clean_patches": n_clean,
        "loss_first": history[0] if history else None,
        "loss": history[-1] if history else None,
        "epochs": cfg.epochs,
    }


def retrieval_accuracy(head, clean: list[np.ndarray], views: list[dict | None], max_views: int = 4000,
                       seed: int = 0) -> dict[str, float]:
    """How often a degraded view's nearest catalogue patch is its own (patch) or its track (track)."""
    all_clean = np.concatenate([c for c in clean if len(c)])
    owner = np.concatenate([np.full(len(c), t) for t, c in enumerate(clean)])
    offsets = np.cumsum([0] + [len(c) for c in clean])
    stacked = _stack_views(views, offsets)
    if stacked is None:
        return {"patch_top1": float("nan"), "track_top1": float("nan"), "n": 0}
    f, t, c = stacked
    if len(f) > max_views:
        sel = np.random.default_rng(seed).choice(len(f), max_views, replace=False)
        f, t, c = f[sel], t[sel], c[sel]
    cat = head.embed(all_clean)
    q = head.embed(f)
    nn_idx = np.argmax(q @ cat.T, axis=1)
    return {"patch_top1": float(np.mean(nn_idx == c)), "track_top1": float(np.mean(owner[nn_idx] == t)),
            "n": len(f)}


def data_hash(sigs: list[str], vcfg: ViewConfig) -> str:
    """Which audio (content hashes) and which view config a head was trained on: 16 hex digits."""
    h = hashlib.sha256()
    for s in sorted(x for x in sigs if x):
        h.update(s.encode())
    h.update(vcfg.key().encode())
    return h.hexdigest()[:16]
