"""CPU cost and memory of the PyTorch musicnn port (numbers for docs/musicnn_port.md).

Why separate processes: torch's thread count and a process's peak RSS are
process-wide, so each configuration runs in a fresh interpreter.

    .venv/bin/python bench/musicnn_speed.py [--audio FILE] [--seconds 120] [--threads 1 2]

Reports, per thread count: CPU seconds per minute of audio (user+sys of the
process, so it counts every thread), wall-clock x real time, the split between
the mel front end and the network, and peak RSS.  With ``--audio`` a real file is
decoded with soundfile and resampled to 16 kHz; otherwise a synthetic mix is used
(the cost does not depend on content).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load_audio(path: str | None, seconds: float):
    import numpy as np

    if path:
        import soundfile as sf
        from scipy.signal import resample_poly

        y, sr = sf.read(path, dtype="float32", always_2d=True)
        y = y.mean(axis=1)
        from math import gcd

        g = gcd(16000, sr)
        y = resample_poly(y, 16000 // g, sr // g).astype(np.float32)
        reps = int(np.ceil(seconds * 16000 / y.size))
        return np.tile(y, reps)[: int(seconds * 16000)]
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    y = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.01 * np.sin(t))) + 0.05 * rng.standard_normal(
        t.size
    )
    return y.astype(np.float32)


def child(threads: int, audio_path: str | None, seconds: float, hop: float, batch: int) -> dict:
    sys.path.insert(0, str(REPO))
    import torch

    from engine.features.musicnn import MusicnnBackbone

    torch.set_num_threads(threads)
    audio = _load_audio(audio_path, seconds)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as cache:
        bb = MusicnnBackbone(Path(cache), threads=threads, batch_size=batch)
        bb.features(audio[: 3 * 16000], hop)  # load + warm-up (oneDNN primitive creation)

        def cpu() -> float:
            t = os.times()
            return t.user + t.system

        c0, _w0 = cpu(), time.perf_counter()
        logmel = None
        for _ in range(3):
            logmel = bb.log_mel(audio)
        c1, w1 = cpu(), time.perf_counter()
        feats = bb.features(audio, hop)
        c2, w2 = cpu(), time.perf_counter()
    minutes = seconds / 60.0
    mel_cpu = (c1 - c0) / 3
    total_cpu = c2 - c1
    return {
        "threads": threads,
        "batch_size": batch,
        "hop_s": hop,
        "audio_s": seconds,
        "patches": int(feats.shape[0]),
        "mel_frames": int(logmel.shape[0]) if logmel is not None else 0,
        "cpu_s_per_audio_min": round(total_cpu / minutes, 3),
        "of_which_mel_cpu_s_per_min": round(mel_cpu / minutes, 3),
        "wall_s_per_audio_min": round((w2 - w1) / minutes, 3),
        "x_realtime_wall": round(seconds / (w2 - w1), 1),
        "x_realtime_per_cpu_s": round(seconds / total_cpu, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_import_mb": round(rss_before / 1024, 1),
        "torch": torch.__version__,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--audio")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--hop", type=float, default=3.0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.audio, args.seconds, args.hop, args.batch)))
        return
    for n in args.threads:
        cmd = [sys.executable, __file__, "--child", str(n), "--seconds", str(args.seconds),
               "--hop", str(args.hop), "--batch", str(args.batch)]  # fmt: skip
        if args.audio:
            cmd += ["--audio", args.audio]
        env = dict(os.environ, OMP_NUM_THREADS=str(n))
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        print(out.strip())


if __name__ == "__main__":
    main()
