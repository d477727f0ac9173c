"""``synesthete-index train``: fine-tune the embedding head on the catalogue's own audio.

No labels are needed.  The head learns that a moment of a song recorded by a phone
next to a speaker is *the same moment* as the catalogue's clean audio, and not any
other track's moment in the batch: a symmetric InfoNCE (NT-Xent) loss between the
clean catalogue patch and a degraded view of it (:func:`index_builder.augment.phone_degrade`)
against all other tracks' views in the batch.

What keeps it from forgetting what the pretrained backbone knows about similarity:
a *relational distillation* term.  For every clean patch in a batch, the softmax
over its cosine similarities to the other tracks' clean patches (same temperature)
is kept close (KL) to what the untrained head gave.  The untrained head is an
orthogonal projection of the standardised features (see ``engine.head``), so this
term anchors the neighbourhoods that made the pretrained features good at
similarity, while InfoNCE makes them robust.  Optionally (``--supervised artist|genre``)
a supervised-contrastive term pulls tracks with the same label together; a head
trained that way must never be scored on those labels (``evaluate.py`` says so).

Batches hold one pair per *distinct* track, so other moments of the same song are
never negatives.  Positives mimic a real query: a 10-15 s excerpt is degraded as a
whole (reverb, noise and level over the whole recording), starts at a random
offset of +-1.5 s from the catalogue's 3-s patch grid (the worst misalignment the
query hop allows), and each of its patches is paired with the nearest catalogue
patch.

Cost, and what is cached: backbone features dominate (musicnn: seconds of CPU per
minute of audio), so training never runs the backbone over whole tracks.  Per
track it samples ``--excerpts`` excerpts of ``--excerpt-patches`` catalogue
patches (default 2 x 4 = 24 s), computes the clean features of those patches
(on the catalogue's own 3-s grid) and of one degraded view of each excerpt, i.e.
48 s of audio per track whatever its length, and caches them under
``<data_dir>/feature_cache/<backbone model_id>/<audio signature>.views-<config>.npz``
(keyed by the file's content hash and the view config), so reruns, more epochs
and other seeds of the optimiser reuse them.  Epochs then cost about a second.

After training, run ``synesthete-index build`` again: the head's weights are part
of the model id, so every vector is re-embedded.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

AUGMENT_VERSION = 1  # bump when augment.phone_degrade changes what it makes


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class CatalogueItem:
    track_id: str
    path: Path
    artist: str = ""
    genres: tuple[str, ...] = ()


def audio_signature(path: Path) -> str:
    """Content hash of an audio file (blake2b-128 of its bytes): the feature cache key."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def catalogue_items(settings, csv_path: Path | None = None, audio_dir: Path | None = None) -> list[CatalogueItem]:
    """Tracks with audio: from ``--csv`` + ``--audio`` (or a bare folder), else the CatalogueDB."""
    from engine.catalogue import CatalogueDB, read_folder, read_kaggle_csv

    items: list[CatalogueItem] = []
    if csv_path is not None:
        from index_builder.matching import match_folder

        if audio_dir is None:
            raise SystemExit("--csv needs --audio DIR")
        tracks = read_kaggle_csv(Path(csv_path), spotify_ids=False).tracks
        res = match_folder(tracks, Path(audio_dir), read_tags=None)
        for tid, p in sorted(res.matched.items()):
            t = tracks[tid]
            items.append(CatalogueItem(tid, Path(p), t.artist, tuple(t.genres)))
    elif audio_dir is not None:
        for tid, t in sorted(read_folder(Path(audio_dir), use_tags=False).items()):
            items.append(CatalogueItem(tid, Path(t.audio_path), t.artist, tuple(t.genres)))
    else:
        db_path = settings.catalogue_db_path
        if not db_path.exists():
            raise SystemExit(f"no catalogue at {db_path}; give --csv and --audio, or run build first")
        db = CatalogueDB(db_path, read_only=True)
        try:
            for t in db.all_tracks():
                if t.audio_path and Path(t.audio_path).is_file():
                    items.append(CatalogueItem(t.track_id, Path(t.audio_path), t.artist, tuple(t.genres)))
        finally:
            db.close()
        items.sort(key=lambda i: i.track_id)
    if not items:
        raise SystemExit("no catalogue tracks with audio to train on")
    return items


# ----------------------------------------------------------------------------- feature cache


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
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            write(fh)
        tmp.replace(path)

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


# ----------------------------------------------------------------------------- losses


def info_nce(a, b, temperature: float):
    """Symmetric InfoNCE: row i of ``a`` matches row i of ``b``; both L2-normalised."""
    import torch
    import torch.nn.functional as F

    logits = a @ b.T / temperature
    target = torch.arange(len(a))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def relational_kd(student, teacher, temperature: float):
    """KL(teacher || student) of each row's softmax over the *other* rows' cosines."""
    import torch
    import torch.nn.functional as F

    n = len(student)
    if n < 3:
        return student.sum() * 0.0
    mask = ~torch.eye(n, dtype=torch.bool)
    s = (student @ student.T / temperature)[mask].view(n, n - 1)
    t = (teacher @ teacher.T / temperature)[mask].view(n, n - 1)
    return F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), log_target=True, reduction="batchmean")


def sup_con(z, labels, temperature: float):
    """Supervised contrastive loss (Khosla et al. 2020) over rows with a label (>= 0)."""
    import torch

    keep = labels >= 0
    z, labels = z[keep], labels[keep]
    n = len(z)
    if n < 2:
        return z.sum() * 0.0
    logits = z @ z.T / temperature
    eye = torch.eye(n, dtype=torch.bool)
    logits = logits.masked_fill(eye, -1e9)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    has = pos.any(1)
    if not has.any():
        return z.sum() * 0.0
    return -(log_prob * pos).sum(1)[has].div(pos.sum(1)[has]).mean()


# ----------------------------------------------------------------------------- training


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


def train_head(clean: list[np.ndarray], views: list[dict | None], cfg: TrainConfig, *,
               labels: np.ndarray | None = None, out_dim: int = 256, progress: bool = True,
               log_every: int = 1) -> TrainResult:
    """Train an EmbeddingHead on cached features.  ``labels``: one int per track (-1 = none)."""
    import torch

    from engine.head import EmbeddingHead

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    in_dim = next(c.shape[1] for c in clean if c.size)
    all_clean = np.concatenate([c for c in clean if len(c)])
    offsets = np.cumsum([0] + [len(c) for c in clean])
    head = EmbeddingHead(in_dim, out_dim, seed=cfg.seed)
    head.fit_normalisation(all_clean)
    teacher = copy.deepcopy(head).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    stacked = _stack_views(views, offsets)
    if stacked is None:
        raise ValueError("no degraded views to train on")
    view_feats = torch.as_tensor(stacked[0])
    pair_track, pair_clean = stacked[1], stacked[2]
    clean_t = torch.as_tensor(all_clean)
    n_tracks = len({int(t) for t in pair_track})
    if n_tracks < 2:
        raise ValueError("contrastive training needs at least two tracks with views")
    batch = min(cfg.batch_tracks, n_tracks)
    label_t = torch.as_tensor(labels if labels is not None else np.full(len(clean), -1), dtype=torch.long)
    use_sup = cfg.supervised != "none" and labels is not None and (labels >= 0).sum() >= 2

    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = sum(1 for _ in _batches(pair_track, [], batch, np.random.default_rng(0)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, steps_per_epoch * cfg.epochs),
                                                pct_start=0.1, anneal_strategy="cos")
    from tqdm import tqdm

    history: list[float] = []
    bar = tqdm(range(cfg.epochs), desc="epochs", unit="epoch", disable=not progress, dynamic_ncols=True)
    head.train()
    for epoch in bar:
        total, count = 0.0, 0
        for idx in _batches(pair_track, [], batch, rng):
            a = head(clean_t[pair_clean[idx]])
            b = head(view_feats[idx])
            loss = info_nce(a, b, cfg.temperature)
            if cfg.distill_weight > 0:
                with torch.no_grad():
                    a0 = teacher(clean_t[pair_clean[idx]])
                loss = loss + cfg.distill_weight * relational_kd(a, a0, cfg.temperature)
            if use_sup:
                loss = loss + cfg.supervised_weight * sup_con(a, label_t[pair_track[idx]], cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched.last_epoch + 1 < sched.total_steps:
                sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        history.append(total / max(1, count))
        bar.set_postfix(loss=f"{history[-1]:.3f}")
        if (epoch + 1) % log_every == 0:
            log.info("epoch %d/%d loss %.4f", epoch + 1, cfg.epochs, history[-1])
    head.eval()
    meta = {
        "trained": True,
        "objective": "infonce(clean, phone_degrade view)" + (" + relational distillation" if cfg.distill_weight else "")
                     + (f" + supcon({cfg.supervised})" if use_sup else ""),
        "train_config": asdict(cfg),
        "n_tracks": int(n_tracks),
        "n_pairs": len(pair_track),
        "n_clean_patches": len(all_clean),
        "loss_first": history[0] if history else None,
        "loss": history[-1] if history else None,
        "epochs": cfg.epochs,
    }
    return TrainResult(head, meta, history)


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
    h = hashlib.sha256()
    for s in sorted(x for x in sigs if x):
        h.update(s.encode())
    h.update(vcfg.key().encode())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS,  # never clobber the top-level --data-dir
                   help="data directory (default: settings)")
    p.add_argument("--csv", type=Path, default=None, help="tracks CSV (Kaggle layout); needs --audio")
    p.add_argument("--audio", type=Path, default=None, help="folder of the catalogue's audio files")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--supervised", choices=("none", "artist", "genre"), default="none",
                   help="add a supervised-contrastive term on these labels (never score the head on them)")
    p.add_argument("--out", type=Path, default=None, help="checkpoint path (default: <data_dir>/head.pt)")
    p.add_argument("--excerpts", type=int, default=ViewConfig.excerpts,
                   help="degraded excerpts per track (the expensive part: each is run through the backbone)")
    p.add_argument("--excerpt-patches", type=int, default=ViewConfig.excerpt_patches)
    p.add_argument("--no-opus", action="store_true", help="skip the Opus round trip in the degraded views")
    p.add_argument("--temperature", type=float, default=TrainConfig.temperature)
    p.add_argument("--distill-weight", type=float, default=TrainConfig.distill_weight)
    p.add_argument("--no-progress", action="store_true")


def _labels(items: list[CatalogueItem], kind: str) -> np.ndarray | None:
    if kind == "none":
        return None
    vals = [(it.artist if kind == "artist" else (it.genres[0] if it.genres else "")) for it in items]
    names = sorted({v for v in vals if v})
    ids = {n: i for i, n in enumerate(names)}
    return np.asarray([ids.get(v, -1) if v else -1 for v in vals], dtype=np.int64)


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


def main(args: argparse.Namespace) -> int:

    from engine.features import make_backbone
    from engine.head import save_head
    from index_builder.runtime import settings_from_args

    settings = settings_from_args(args)
    started = time.perf_counter()
    backbone = make_backbone(settings)
    items = catalogue_items(settings, args.csv, args.audio)
    cache = FeatureCache(settings.data_dir, backbone, settings)
    vcfg = ViewConfig(excerpts=args.excerpts, excerpt_patches=args.excerpt_patches, opus=not args.no_opus,
                      seed=args.seed)
    log.info("training on %d tracks; backbone %s; features cached in %s", len(items), backbone.model_id, cache.dir)
    sigs, clean, views, failed = collect_features(items, cache, vcfg, progress=not args.no_progress)
    t_feat = time.perf_counter() - started
    keep = [i for i, s in enumerate(sigs) if s]
    items = [items[i] for i in keep]
    clean = [clean[i] for i in keep]
    views = [views[i] for i in keep]
    sigs = [sigs[i] for i in keep]
    cfg = TrainConfig(epochs=args.epochs, seed=args.seed, supervised=args.supervised,
                      temperature=args.temperature, distill_weight=args.distill_weight)
    labels = _labels(items, args.supervised)
    t1 = time.perf_counter()
    res = train_head(clean, views, cfg, labels=labels, out_dim=settings.embedding_dim,
                     progress=not args.no_progress)
    t_train = time.perf_counter() - t1
    from engine.head import EmbeddingHead

    untrained = EmbeddingHead(res.head.in_dim, res.head.out_dim, seed=cfg.seed)
    untrained.fit_normalisation(np.concatenate([c for c in clean if len(c)]))
    before = retrieval_accuracy(untrained, clean, views)
    after = retrieval_accuracy(res.head, clean, views)
    meta = {
        **res.meta,
        "backbone": backbone.model_id,
        "train_data_hash": data_hash(sigs, vcfg),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "view_config": asdict(vcfg),
        "augment_version": AUGMENT_VERSION,
        "failed_tracks": failed,
        "feature_seconds": round(t_feat, 1),
        "train_seconds": round(t_train, 1),
        "train_retrieval_untrained": before,
        "train_retrieval_trained": after,
        "labels_used": args.supervised,
    }
    out = Path(args.out) if args.out else settings.resolved_head_path
    save_head(out, res.head, meta)
    print(f"trained head on {len(items)} tracks ({meta['n_pairs']} degraded views, {meta['n_clean_patches']} "
          f"catalogue patches) in {t_feat + t_train:.0f}s (features {t_feat:.0f}s, training {t_train:.1f}s)")
    print(f"loss {res.history[0]:.3f} -> {res.history[-1]:.3f}; degraded view -> own patch top-1 "
          f"{before['patch_top1']:.3f} -> {after['patch_top1']:.3f}, own track {before['track_top1']:.3f} -> "
          f"{after['track_top1']:.3f} (training views)")
    if failed:
        print(f"{len(failed)} track(s) could not be decoded and were left out: {', '.join(failed[:10])}")
    print(f"wrote {out}; now run `synesthete-index build` to re-embed the catalogue with it")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="synesthete-index train")
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
