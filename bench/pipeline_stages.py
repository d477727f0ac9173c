"""Where the product's pipeline loses against the original musicnn package: one stage at a time.

    SYNESTHETE_TORCH_THREADS=1 python bench/pipeline_stages.py --corpus ../devdata/set_a --out ../devdata/stages_a \
        --corpus ../devdata/set_b --out ../devdata/stages_b [--max-patches 24]

Issue 29 measured, on an unseen corpus, plain MSD ``mean_pool`` track means at same-artist P@5
0.55 through the original package (librosa decode, raw level) and 0.50 through this product's
pipeline, with the same network (the port equals the original to float precision:
docs/musicnn_port.md, and its torch mel equals librosa's to 3e-6).  So the loss is in what
reaches the network.  This script feeds the **same network** (the port, MSD) the **same
patches** (``--max-patches`` evenly spread 3-s patches, non-overlapping as the package reads
them) of each track, decoded five ways that add the product's stages one at a time:

1. ``librosa``: ``librosa.load(sr=16000, mono=True)`` (soxr resampling, channel mean, raw
   level): the original package's input;
2. ``ffmpeg``: ffmpeg's resampler to 16 kHz, channel mean, raw level;
3. ``ffmpeg + mono/rumble``: the product's downmix (``engine.audio.channels_to_mono``: the
   side channel where it is louder, DC and rumble removed), raw level;
4. ``+ level (no limiter)``: 3 scaled to the product's active-RMS target
   (``TARGET_RMS_DBFS``) by a plain gain;
5. ``product decode``: ``engine.audio.decode`` as the build runs it (4 with the soft limiter).

It prints same-artist / genre / artist-filtered genre P@5 of each (cosine, every track against
all others), per corpus.  Per-track vectors are cached in ``--out`` (resumable).  Nothing it
writes belongs in the repository.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchutil

log = logging.getLogger("pipeline_stages")
SR = 16000
VARIANTS = ("librosa", "ffmpeg", "ffmpeg + mono/rumble", "+ level (no limiter)", "product decode")


def _patch_starts(n_samples: int, n: int) -> np.ndarray:
    """Start samples of ``n`` evenly spread non-overlapping 3-s patches (all when fewer fit)."""
    patch = 3 * SR
    total = max(1, n_samples // patch)
    idx = np.arange(total) if n <= 0 or total <= n else np.linspace(0, total - 1, n).round().astype(int)
    return idx * patch


def _track_vector(net, audio: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Mean ``mean_pool`` (753,) over the patches at ``starts`` (each patch's own log-mel)."""
    import torch

    patch = 3 * SR
    audio = np.pad(audio, (0, max(0, int(starts[-1]) + patch - len(audio))))
    mels = [net.log_mel(audio[s:s + patch])[:187] for s in starts]
    out = net.outputs_of_patches(torch.stack(mels))
    return out.mean_pool.numpy().mean(0)


def _variants(src: Path, limits) -> dict[str, np.ndarray]:
    """The five decodes of one file (see the module docstring), each float32 mono at 16 kHz."""
    import librosa

    from engine import audio as A

    out = {"librosa": librosa.load(str(src), sr=SR, mono=True)[0].astype(np.float32)}
    frames = A.decode_stereo(src, SR, limits.max_seconds, limits.timeout_s).frames
    out["ffmpeg"] = frames.mean(1).astype(np.float32)
    mono, dc = A.channels_to_mono(frames, SR)
    out["ffmpeg + mono/rumble"] = mono
    gain_db, _ = A.loudness_gain_db(mono, SR, A.silence_floor_db(dc, src.suffix.lstrip(".")))
    out["+ level (no limiter)"] = (mono * 10 ** (gain_db / 20)).astype(np.float32)
    out["product decode"] = A.decode(src, SR, limits).samples
    return out


def extract(corpus: Path, out: Path, max_patches: int) -> None:
    from engine.audio import limits_from_settings
    from engine.features.musicnn import MusicnnBackbone
    from engine.settings import Settings

    settings = Settings.from_env()
    limits = limits_from_settings(settings, for_catalogue=True)
    net = MusicnnBackbone(cache_dir=settings.resolved_model_cache_dir, dataset="MSD", threads=settings.torch_threads)
    out.mkdir(parents=True, exist_ok=True)
    with open(corpus / "tracks.csv", newline="") as fh:
        ids = sorted({r["track_id"] for r in csv.DictReader(fh)})
    t0 = time.perf_counter()
    for k, tid in enumerate(ids, 1):
        dest = out / f"{tid}.npz"
        src = next((corpus / "catalogue").glob(f"{tid}.*"), None)
        if dest.exists() or src is None:
            continue
        try:
            decoded = _variants(src, limits)
        except Exception as exc:  # noqa: BLE001 - one bad file is skipped, said, not fatal
            log.warning("%s skipped: %s", tid, exc)
            continue
        starts = _patch_starts(min(len(a) for a in decoded.values()), max_patches)
        vecs = {name: _track_vector(net, decoded[name], starts) for name in VARIANTS}
        tmp = dest.with_suffix(".tmp.npz")
        np.savez(tmp, **{f"v{i}": vecs[name] for i, name in enumerate(VARIANTS)})
        tmp.replace(dest)
        if k % 20 == 0:
            log.info("%s: %d/%d tracks (%.0f s)", corpus.name, k, len(ids), time.perf_counter() - t0)


def extract_levels(corpus: Path, out: Path, max_patches: int, targets: list[float]) -> None:
    """The product's decode before its level step, scaled to each of ``targets`` (dBFS active RMS, the
    product's own measure), with and without the product's soft limiter: is -20 dBFS the right level
    for a network trained on commercial masters?  Cached in ``out/levels/``."""
    import torch  # noqa: F401 - the backbone's

    from engine import audio as A
    from engine.audio import limits_from_settings
    from engine.features.musicnn import MusicnnBackbone
    from engine.settings import Settings

    settings = Settings.from_env()
    limits = limits_from_settings(settings, for_catalogue=True)
    net = MusicnnBackbone(cache_dir=settings.resolved_model_cache_dir, dataset="MSD", threads=settings.torch_threads)
    dest_dir = out / "levels"
    dest_dir.mkdir(parents=True, exist_ok=True)
    with open(corpus / "tracks.csv", newline="") as fh:
        ids = sorted({r["track_id"] for r in csv.DictReader(fh)})
    for k, tid in enumerate(ids, 1):
        dest = dest_dir / f"{tid}.npz"
        src = next((corpus / "catalogue").glob(f"{tid}.*"), None)
        if dest.exists() or src is None:
            continue
        frames = A.decode_stereo(src, SR, limits.max_seconds, limits.timeout_s).frames
        mono, dc = A.channels_to_mono(frames, SR)
        gain_db, _ = A.loudness_gain_db(mono, SR, A.silence_floor_db(dc, src.suffix.lstrip(".")))
        current = A.TARGET_RMS_DBFS - gain_db
        starts = _patch_starts(len(mono), max_patches)
        vecs = {}
        for t in targets:
            x = (mono * 10 ** ((t - current) / 20)).astype(np.float32)
            vecs[f"t{t:g}"] = _track_vector(net, x, starts)
            if np.max(np.abs(x)) > 1.0:
                x = np.tanh(x).astype(np.float32)
            vecs[f"t{t:g}_limited"] = _track_vector(net, x, starts)
        tmp = dest.with_suffix(".tmp.npz")
        np.savez(tmp, **vecs)
        tmp.replace(dest)
        if k % 40 == 0:
            log.info("%s levels: %d/%d tracks", corpus.name, k, len(ids))


def report(corpus: Path, cache: Path, title: str, columns: list[tuple[str, str]], ref: str | None = None) -> dict:
    """Same-artist, genre and artist-filtered genre P@5 of each cached ``(key, label)`` column of the
    ``<cache>/<track_id>.npz`` files, printed per corpus (and as a multiple of ``ref``'s)."""
    from benchutil import corpus_labels

    from index_builder.evaluation.metrics import similarity_report

    rows = corpus_labels(corpus)
    ids = sorted(t for t in rows if (cache / f"{t}.npz").exists())
    loaded = [np.load(cache / f"{t}.npz") for t in ids]
    figures = {}
    for key, label in columns:
        x = np.stack([z[key] for z in loaded]).astype(np.float64)
        figures[label] = similarity_report(x, [rows[t]["artist"] for t in ids], [rows[t]["genres"] for t in ids], k=5)
    print(f"\n== {corpus.name}: {len(ids)} tracks; {title}")
    print(f"  {'':28s} artist  genre  g|af" + (f"   x {ref}" if ref else ""))
    for label, r in figures.items():
        ratio = f"  {r['artist_p5'] / max(figures[ref]['artist_p5'], 1e-9):.3f}" if ref else ""
        print(f"  {label:28s} {r['artist_p5']:.3f}  {r['genre_p5']:.3f}  {r['genre_p5_artist_filtered']:.3f}{ratio}")
    return figures


def report_stages(corpus: Path, out: Path) -> dict:
    return report(corpus, out, "plain MSD mean_pool track means, cosine, by decode",
                  [(f"v{i}", name) for i, name in enumerate(VARIANTS)], ref="librosa")


def report_levels(corpus: Path, out: Path) -> dict:
    keys = np.load(next((out / "levels").glob("*.npz"))).files
    return report(corpus, out / "levels", "plain MSD mean_pool means at each level (dBFS active RMS)",
                  [(k, k) for k in keys])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, action="append", required=True)
    p.add_argument("--out", type=Path, action="append", required=True, help="cache dir per corpus (in order)")
    p.add_argument("--max-patches", type=int, default=24, help="evenly spread 3-s patches per track (0 = all)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--level-targets", type=float, nargs="*", default=None,
                   help="instead: the product's decode scaled to these active-RMS levels (dBFS), e.g. -26 -20 -14")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if len(args.corpus) != len(args.out):
        raise SystemExit("give one --out per --corpus, in the same order")
    if args.level_targets:
        for corpus, out in zip(args.corpus, args.out):
            if not args.report_only:
                extract_levels(corpus, out, args.max_patches, args.level_targets)
            report_levels(corpus, out)
        return 0
    for corpus, out in zip(args.corpus, args.out):
        if not args.report_only:
            extract(corpus, out, args.max_patches)
    for corpus, out in zip(args.corpus, args.out):
        report_stages(corpus, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
