"""Compare the PyTorch musicnn port with the original TensorFlow musicnn, once.

Why: the port (engine/features/musicnn.py) must give the numbers the pretrained
network was trained to give; this is the evidence, recorded in
docs/musicnn_port.md.  TensorFlow is never a project dependency, so this runs in
two interpreters:

1. a throwaway venv with TensorFlow + the original package::

       python3 -m venv /work/tfcheck
       /work/tfcheck/bin/pip install 'tensorflow-cpu==2.21.*' 'tf_keras==2.21.*' librosa
       /work/tfcheck/bin/pip install --no-deps musicnn==0.1.0

   runs the original graph (``musicnn.models.define_model``, restored with
   ``tf.compat.v1.train.Saver`` exactly as ``musicnn.extractor`` does) on
   librosa's log-mel of a real track, with the package's float16 cast replaced
   by float32 (the documented bug), all patches in one batch (the package's
   batch loop repeats the first batch's cnn1..3, see the notes);
2. the project venv (``--port-python``, default ``.venv/bin/python`` of the repo)
   runs the port on the *same* log-mel patches, and also its own torch mel front
   end on the same audio, and prints max abs / rel differences as JSON.

Usage (from the repo root)::

    TF_USE_LEGACY_KERAS=1 PYTHONPATH=. /work/tfcheck/bin/python bench/check_musicnn_port.py \\
        --audio /usr/share/games/hedgewars/Data/Music/main_theme.ogg

``--port-only FILE.npz`` is the second half (called automatically).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("mean_pool", "max_pool", "penultimate", "taggram")


def run_tf(audio_path: str, dataset: str, offset: float, seconds: float, out_npz: Path) -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import librosa
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    from musicnn import configuration as config
    from musicnn import models

    model = f"{dataset}_musicnn"
    audio, sr = librosa.load(audio_path, sr=config.SR, offset=offset, duration=seconds)
    audio = audio.astype(np.float32)
    mel = librosa.feature.melspectrogram(
        y=audio, sr=sr, hop_length=config.FFT_HOP, n_fft=config.FFT_SIZE, n_mels=config.N_MELS
    ).T
    # the package does mel.astype(np.float16) here: overflows on loud audio; float32 instead
    logmel = np.log10(10000 * mel.astype(np.float32) + 1)
    n_frames = (
        librosa.time_to_frames(3, sr=config.SR, n_fft=config.FFT_SIZE, hop_length=config.FFT_HOP)
        + 1
    )
    starts = list(range(0, logmel.shape[0] - n_frames + 1, n_frames))
    batch = np.stack([logmel[s : s + n_frames] for s in starts]).astype(np.float32)

    labels = config.MSD_LABELS if dataset == "MSD" else config.MTT_LABELS
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, config.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y, _timbral, _temporal, _c1, _c2, _c3, mean_pool, max_pool, penultimate = (
            models.define_model(x, is_training, model, len(labels))
        )
        taggram = tf.nn.sigmoid(y)
    import musicnn

    sess = tf.compat.v1.Session()
    sess.run(tf.compat.v1.global_variables_initializer())
    tf.compat.v1.train.Saver().restore(sess, os.path.dirname(musicnn.__file__) + "/" + model + "/")
    outs = sess.run(
        [mean_pool, max_pool, penultimate, taggram], feed_dict={x: batch, is_training: False}
    )
    sess.close()
    np.savez(
        out_npz,
        audio=audio,
        librosa_logmel=logmel.astype(np.float32),
        batch=batch,
        starts=np.array(starts),
        dataset=np.array(dataset),
        tf_version=np.array(tf.__version__),
        **{f"tf_{k}": v for k, v in zip(LAYERS, outs)},
    )


def run_port(npz_path: Path) -> dict:
    import torch

    sys.path.insert(0, str(REPO))
    from engine.features.musicnn import MusicnnBackbone

    d = np.load(npz_path)
    dataset = str(d["dataset"])
    with tempfile.TemporaryDirectory() as cache:
        bb = MusicnnBackbone(Path(cache), dataset=dataset)
        net = bb.load()
        with torch.inference_mode():
            out = net(torch.from_numpy(d["batch"]))
            ref = net.forward_reference(torch.from_numpy(d["batch"]))
            # the port end to end: its own torch mel front end on the same audio
            own_mel = bb.log_mel(d["audio"]).numpy()
            starts = d["starts"]
            own_batch = np.stack([own_mel[s : s + 187] for s in starts])
            own = net(torch.from_numpy(own_batch))
        model_id = bb.model_id

    def diff(a: np.ndarray, b: np.ndarray) -> dict:
        a = np.asarray(a, np.float64)
        b = np.asarray(b, np.float64)
        return {
            "max_abs": float(np.abs(a - b).max()),
            "max_abs_ref": float(np.abs(b).max()),
            "rel_to_max": float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)),
            "cosine_min": float(
                np.min(
                    np.sum(a * b, 1)
                    / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)
                )
            )
            if a.ndim == 2
            else None,
        }

    report: dict = {
        "model_id": model_id,
        "tf_version": str(d["tf_version"]),
        "torch_version": torch.__version__,
        "n_patches": int(d["batch"].shape[0]),
        "audio_seconds": float(d["audio"].size / 16000),
        "logmel_port_vs_librosa": diff(
            own_mel[: d["librosa_logmel"].shape[0]], d["librosa_logmel"]
        ),
        "same_input": {},
        "end_to_end": {},
        "fast_vs_literal_torch": {},
    }
    for layer in LAYERS:
        tf_out = d[f"tf_{layer}"]
        report["same_input"][layer] = diff(getattr(out, layer).numpy(), tf_out)
        report["end_to_end"][layer] = diff(getattr(own, layer).numpy(), tf_out)
        report["fast_vs_literal_torch"][layer] = diff(
            getattr(out, layer).numpy(), getattr(ref, layer).numpy()
        )
    spread = d["tf_penultimate"].std(axis=0).mean()
    report["tf_penultimate_mean_std_across_patches"] = float(spread)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--audio", help="a real music file (any format librosa reads)")
    ap.add_argument("--dataset", default="MSD", choices=["MSD", "MTT"])
    ap.add_argument("--offset", type=float, default=0.0, help="start (s) in the file")
    ap.add_argument("--seconds", type=float, default=60.0, help="length (s) to compare")
    ap.add_argument("--port-python", default=str(REPO / ".venv" / "bin" / "python"))
    ap.add_argument("--port-only", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--keep", type=Path, help="keep the TF outputs in this .npz")
    args = ap.parse_args()

    if args.port_only:
        print(json.dumps(run_port(args.port_only), indent=2))
        return
    if not args.audio:
        ap.error("--audio is required")
    npz = args.keep or Path(tempfile.mkdtemp()) / "tf_musicnn.npz"
    run_tf(args.audio, args.dataset, args.offset, args.seconds, npz)
    res = subprocess.run(
        [args.port_python, __file__, "--port-only", str(npz)],
        check=True,
        capture_output=True,
        text=True,
    )
    print(res.stdout)


if __name__ == "__main__":
    main()
