"""Cache every backbone layer of every catalogue patch of a corpus, for similarity experiments.

    python bench/similarity_features.py --corpus /work/corpus --out /work/simfeat [--datasets MSD MTT]

Writes ``<out>/<track_id>.npz`` with, per dataset (``msd_``/``mtt_``), the musicnn
``mean_pool`` (n, 753), ``max_pool`` (n, 753), ``penultimate`` (n, 200) and ``logits`` (n, 50)
of every 3-s patch on the catalogue grid (hop = ``SYNESTHETE_SEGMENT_HOP_S``), plus the
MFCC + chroma + contrast statistics of the whole track (the baseline of
``index_builder.evaluation.baseline``).  ``bench/similarity_eval.py`` reads these files.  Tracks
already written are skipped, so the script can be stopped and restarted; ``--shard i/n``
splits the work between processes.  Nothing it writes belongs in the repository.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("similarity_features")


def _spread_patches(audio: np.ndarray, n: int, hop: float, sr: int = 16000) -> np.ndarray:
    """The concatenation of ``n`` evenly spread patch-long excerpts (all audio when ``n`` is 0 or more)."""
    patch = int(3.0 * sr)
    total = 1 + max(0, len(audio) - patch) // int(hop * sr)
    if n <= 0 or total <= n:
        return audio
    starts = np.linspace(0, total - 1, n).round().astype(int) * int(hop * sr)
    return np.concatenate([audio[s:s + patch] for s in starts])


def _track_ids(corpus: Path, watch: bool):
    """Track ids of tracks.csv, or (``watch``) of finished catalogue files until tracks.csv exists."""
    seen: set[str] = set()
    while True:
        done = (corpus / "tracks.csv").exists()
        if done:
            with open(corpus / "tracks.csv", newline="") as fh:
                ids = sorted({r["track_id"] for r in csv.DictReader(fh)})
        else:
            # a file still being written is the newest one: leave it for the next round
            files = sorted((corpus / "catalogue").glob("*.mp3"), key=lambda f: f.stat().st_mtime)[:-1]
            ids = [f.stem for f in files]
        for t in ids:
            if t not in seen:
                seen.add(t)
                yield t
        if done or not watch:
            return
        time.sleep(20)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, required=True, help="dev corpus dir (tracks.csv + catalogue/)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--datasets", nargs="+", default=["MSD", "MTT"])
    p.add_argument("--shard", default="0/1", help="i/n: this process takes every n-th track from i")
    p.add_argument("--max-patches", type=int, default=0,
                   help="keep at most this many 3-s patches per track, evenly spread (0 = all): a cheaper sample")
    p.add_argument("--watch", action="store_true",
                   help="also take catalogue files that appear while the corpus is still being made")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from engine.audio import decode, limits_from_settings
    from engine.features.musicnn import MusicnnBackbone
    from engine.settings import Settings
    from index_builder.evaluation.baseline import mfcc_stats

    settings = Settings.from_env()
    limits = limits_from_settings(settings, for_catalogue=True)
    nets = {d: MusicnnBackbone(cache_dir=settings.resolved_model_cache_dir, dataset=d,
                               threads=settings.torch_threads) for d in args.datasets}
    i, n = (int(x) for x in args.shard.split("/"))
    args.out.mkdir(parents=True, exist_ok=True)
    hop = float(settings.segment_hop_s)
    t0 = time.perf_counter()
    for k, tid in enumerate(_track_ids(args.corpus, args.watch)):
        dest = args.out / f"{tid}.npz"
        if k % n != i or dest.exists():
            continue
        src = next((args.corpus / "catalogue").glob(f"{tid}.*"))
        audio = decode(src, 16000, limits).samples
        audio = _spread_patches(audio, args.max_patches, hop)
        arrays: dict[str, np.ndarray] = {"mfcc_stats": mfcc_stats(audio, 16000)}
        for d, net in nets.items():
            out = net.outputs(audio, hop)
            for layer in ("mean_pool", "max_pool", "penultimate", "logits"):
                arrays[f"{d.lower()}_{layer}"] = getattr(out, layer).numpy().astype(np.float32)
        tmp = dest.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(dest)
        log.info("%d %s %.0f s audio (%.0f s elapsed)", k + 1, tid, len(audio) / 16000, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
