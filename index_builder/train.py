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

This module is the command (arguments, the run, what it prints); the phases live in
:mod:`index_builder.training`: ``data`` (tracks), ``cache`` (features and views),
``losses`` and ``loop`` (the optimisation).
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from index_builder.training.cache import AUGMENT_VERSION, FeatureCache, ViewConfig, collect_features
from index_builder.training.data import catalogue_items, labels_of
from index_builder.training.loop import TrainConfig, data_hash, retrieval_accuracy, train_head

log = logging.getLogger(__name__)


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
    labels = labels_of(items, args.supervised)
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
