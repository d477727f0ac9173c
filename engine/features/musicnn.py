"""musicnn (Pons & Serra, 2019) in PyTorch, with its pretrained MSD / MTT weights.

Why a port: the pretrained weights ship on PyPI inside the ``musicnn`` 0.1.0
wheel, but as TF1 checkpoints for a TF1 graph; TensorFlow is a huge, fragile
dependency (the package no longer runs on current TF without patches) and its
process needs ~1 GB.  This module rebuilds the exact graph of
``musicnn.models.build_musicnn`` in torch, reads the checkpoint with
:mod:`engine.features.tf_checkpoint` (no TF, no protobuf), and caches the
converted state dict.  ``bench/check_musicnn_port.py`` compares it with the
original TF code; ``docs/musicnn_port.md`` records the difference and speed.

Faithful details of the TF graph (see /work/shared/notes/musicnn.md):

* input ``(batch, 187 frames, 96 mels)`` of ``log10(10000 * mel + 1)``; we do
  the log in float32 (the package casts to float16 first, which overflows to inf
  on loud audio and collapses every patch to one vector);
* BatchNorm everywhere with TF1's epsilon 1e-3, in inference mode;
* timbral front end: time zero-padding 3/3 then 'valid' conv; temporal front end:
  TF 'same' padding, which for an even kernel ``k`` pads ``k/2 - 1`` before and
  ``k/2`` after;
* each front-end block is conv -> ReLU -> BN -> max over frequency;
* back end: max and mean over time stacked as ``(753, 2)`` and flattened
  *interleaved* ``[max0, mean0, max1, mean1, ...]``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import ModelError, WeightsUnavailableError
from engine.features.base import Backbone, SegmentAnalysis
from engine.features.melspec import MelSpectrogram
from engine.features.tf_checkpoint import read_checkpoint
from engine.fileio import atomic_write

log = logging.getLogger(__name__)

__all__ = [
    "MSD_LABELS",
    "MTT_LABELS",
    "MusicnnBackbone",
    "MusicnnNet",
    "MusicnnOutputs",
    "convert_tf_weights",
    "find_checkpoint",
    "musicnn_log_mel",
    "state_dict_sha256",
]

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization default
INSTALL_HINT = "pip install --no-deps musicnn==0.1.0"

# Copied from musicnn/configuration.py (ISC licence) so tags work from the cache alone.
MTT_LABELS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip
MSD_LABELS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill",
    "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
    "60s", "rnb", "indie pop", "sad", "House", "happy",
)  # fmt: skip

LAYERS = {"mean_pool": 753, "max_pool": 753, "penultimate": 200}
DATASETS = ("MSD", "MTT")


# --------------------------------------------------------------------------- network


def _bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference BN as ``x * scale + shift`` (how TF1 computes it, too)."""
    assert bn.running_var is not None and bn.running_mean is not None
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    """Channels-last copy that oneDNN recognises as such even with one input channel.

    ``contiguous(memory_format=torch.channels_last)`` is a no-op for a
    ``(out, 1, kh, kw)`` weight (it already passes the channels-last contiguity
    check), so the conv would stay NCHW; explicit strides force the fast path.
    """
    n, c, h, w = t.shape
    out = torch.empty_strided(
        (n, c, h, w), (c * h * w, 1, w * c, c), dtype=t.dtype, device=t.device
    )
    return out.copy_(t)


@dataclass
class MusicnnOutputs:
    """The layers of the back end, each ``(batch, dim)``."""

    mean_pool: torch.Tensor
    max_pool: torch.Tensor
    penultimate: torch.Tensor
    logits: torch.Tensor

    @property
    def taggram(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)


class MusicnnNet(nn.Module):
    """``musicnn.models.build_musicnn`` (the ``*_musicnn`` models), inference only.

    Input ``(batch, frames, 96)`` log-mel; any ``frames`` >= 1 works (the net is
    fully convolutional up to the temporal pooling), 187 is what it was trained on.
    Parameter shapes and order mirror the TF variables; see :func:`convert_tf_weights`.
    """

    def __init__(
        self, n_mels: int = N_MELS, n_classes: int = 50, midend_filters: int = 64,
        backend_units: int = 200,
    ) -> None:  # fmt: skip
        super().__init__()
        n_timbral = int(1.6 * 128)  # 204
        n_temporal = int(1.6 * 32)  # 51
        self.temporal_kernels = (128, 64, 32)
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS)
        self.timbral = nn.ModuleList(
            [
                nn.Conv2d(1, n_timbral, (7, int(0.4 * n_mels))),
                nn.Conv2d(1, n_timbral, (7, int(0.7 * n_mels))),
            ]
        )
        self.timbral_bn = nn.ModuleList([nn.BatchNorm2d(n_timbral, eps=BN_EPS) for _ in range(2)])
        self.temporal = nn.ModuleList(
            [nn.Conv2d(1, n_temporal, (k, 1)) for k in self.temporal_kernels]
        )
        self.temporal_bn = nn.ModuleList([nn.BatchNorm2d(n_temporal, eps=BN_EPS) for _ in range(3)])
        n_front = 2 * n_timbral + 3 * n_temporal  # 561
        self.midend = nn.ModuleList(
            [
                nn.Conv1d(n_front, midend_filters, 7, padding=3),
                nn.Conv1d(midend_filters, midend_filters, 7, padding=3),
                nn.Conv1d(midend_filters, midend_filters, 7, padding=3),
            ]
        )
        self.midend_bn = nn.ModuleList(
            [nn.BatchNorm1d(midend_filters, eps=BN_EPS) for _ in range(3)]
        )
        self.n_features = n_front + 3 * midend_filters  # 753
        self.pool_bn = nn.BatchNorm1d(2 * self.n_features, eps=BN_EPS)
        self.dense = nn.Linear(2 * self.n_features, backend_units)
        self.dense_bn = nn.BatchNorm1d(backend_units, eps=BN_EPS)
        self.classifier = nn.Linear(backend_units, n_classes)

    @staticmethod
    def _conv_relu_bn_freqmax(
        x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d, time_pad: tuple[int, int]
    ) -> torch.Tensor:
        """conv -> ReLU -> BN -> max over frequency, returning ``(batch, channels, time)``.

        Why not literally: ReLU and the per-channel BN affine map are monotone, so
        ``max_f BN(ReLU(z))`` equals ``BN(ReLU(max_f z))`` for channels with a
        non-negative BN scale and ``BN(ReLU(min_f z))`` for negative ones (the MSD
        weights have many).  The min is taken as ``-max_f(-z)`` by negating those
        channels' filters (exact in floating point), so one ``max_pool2d`` over the
        conv output replaces three elementwise passes over the largest tensor of
        the net.  Channels-last layout roughly halves the conv time with oneDNN
        on CPU and makes the frequency max pool cheap.
        """
        scale, shift = _bn_affine(bn)
        sign = torch.where(scale >= 0, 1.0, -1.0).to(scale.dtype)
        weight = _nhwc(conv.weight * sign[:, None, None, None])
        if time_pad != (0, 0):
            x = F.pad(x, (0, 0, time_pad[0], time_pad[1]))
        z = F.conv2d(x, weight, conv.bias * sign)  # channels-last because the weight is
        y = F.max_pool2d(z, kernel_size=(1, z.shape[3])).flatten(2)  # (B, C, T)
        pick = y * sign[None, :, None]
        return torch.relu(pick) * scale[None, :, None] + shift[None, :, None]

    def frontend(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, 96)`` -> concatenated front-end features ``(B, 561, T)``."""
        scale, shift = _bn_affine(self.input_bn)
        h = (x * scale + shift).unsqueeze(1)  # (B, 1, T, F): time as height, like TF's NHWC
        feats = [
            self._conv_relu_bn_freqmax(h, conv, bn, (3, 3))
            for conv, bn in zip(self.timbral, self.timbral_bn)
        ]
        for k, conv, bn in zip(self.temporal_kernels, self.temporal, self.temporal_bn):
            # TF 'same': total k-1, the smaller half before
            feats.append(
                self._conv_relu_bn_freqmax(h, conv, bn, ((k - 1) // 2, k - 1 - (k - 1) // 2))
            )
        return torch.cat(feats, dim=1)

    def forward(self, x: torch.Tensor) -> MusicnnOutputs:
        front = self.frontend(x)
        m1 = self.midend_bn[0](torch.relu(self.midend[0](front)))
        m2 = self.midend_bn[1](torch.relu(self.midend[1](m1))) + m1
        m3 = self.midend_bn[2](torch.relu(self.midend[2](m2))) + m2
        feats = torch.cat([front, m1, m2, m3], dim=1)  # (B, 753, T)
        max_pool = feats.amax(dim=2)
        mean_pool = feats.mean(dim=2)
        # interleaved [max0, mean0, max1, ...], as TF's flatten of the (753, 2) stack
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)
        penultimate = self.dense_bn(torch.relu(self.dense(self.pool_bn(flat))))
        logits = self.classifier(penultimate)
        return MusicnnOutputs(
            mean_pool=mean_pool, max_pool=max_pool, penultimate=penultimate, logits=logits
        )

    def forward_reference(self, x: torch.Tensor) -> MusicnnOutputs:
        """The graph in its literal TF order (slow); tests check :meth:`forward` against it."""
        h = self.input_bn(x.unsqueeze(1))
        feats = []
        for conv, bn in zip(self.timbral, self.timbral_bn):
            feats.append(bn(torch.relu(conv(F.pad(h, (0, 0, 3, 3))))).amax(dim=3))
        for k, conv, bn in zip(self.temporal_kernels, self.temporal, self.temporal_bn):
            p = F.pad(h, (0, 0, (k - 1) // 2, k - 1 - (k - 1) // 2))
            feats.append(bn(torch.relu(conv(p))).amax(dim=3))
        front = torch.cat(feats, dim=1)
        m1 = self.midend_bn[0](torch.relu(self.midend[0](front)))
        m2 = self.midend_bn[1](torch.relu(self.midend[1](m1))) + m1
        m3 = self.midend_bn[2](torch.relu(self.midend[2](m2))) + m2
        fm = torch.cat([front, m1, m2, m3], dim=1)
        max_pool, mean_pool = fm.amax(dim=2), fm.mean(dim=2)
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)
        penultimate = self.dense_bn(torch.relu(self.dense(self.pool_bn(flat))))
        return MusicnnOutputs(mean_pool, max_pool, penultimate, self.classifier(penultimate))


# --------------------------------------------------------------------------- weights


def _bn_names(tf: str, torch_prefix: str) -> list[tuple[str, str]]:
    return [
        (f"{tf}/gamma", f"{torch_prefix}.weight"),
        (f"{tf}/beta", f"{torch_prefix}.bias"),
        (f"{tf}/moving_mean", f"{torch_prefix}.running_mean"),
        (f"{tf}/moving_variance", f"{torch_prefix}.running_var"),
    ]


def convert_tf_weights(tf_vars: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """TF variable dict (from :func:`read_checkpoint`) -> :class:`MusicnnNet` state dict.

    TF1 layer names follow creation order in ``build_musicnn``:
    ``batch_normalization`` (input), ``conv2d``/``_1`` (timbral 38/67 wide) with
    BN ``_1``/``_2``, ``conv2d_2..4`` (temporal 128/64/32) with BN ``_3..5``,
    ``conv2d_5..7`` (mid-end) with BN ``_6..8``, BN ``_9`` (pooled), ``dense``,
    BN ``_10``, ``dense_1``.  Every model variable must be used exactly once.
    """
    sd: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in tf_vars:
            raise ModelError(f"musicnn checkpoint lacks variable {name}")
        used.add(name)
        return np.asarray(tf_vars[name], dtype=np.float32)

    def bn(tf: str, prefix: str) -> None:
        for tf_name, t_name in _bn_names(tf, prefix):
            sd[t_name] = torch.from_numpy(take(tf_name).copy())
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)

    def conv2d(tf: str, prefix: str) -> None:  # [kh, kw, in, out] -> [out, in, kh, kw]
        sd[f"{prefix}.weight"] = torch.from_numpy(
            np.ascontiguousarray(take(f"{tf}/kernel").transpose(3, 2, 0, 1))
        )
        sd[f"{prefix}.bias"] = torch.from_numpy(take(f"{tf}/bias").copy())

    def conv1d(tf: str, prefix: str) -> None:  # [k, C, 1, out] (kernel spans all C) -> [out, C, k]
        k = take(f"{tf}/kernel")
        if k.shape[2] != 1:
            raise ModelError(f"unexpected mid-end kernel shape {k.shape} for {tf}")
        sd[f"{prefix}.weight"] = torch.from_numpy(
            np.ascontiguousarray(k[:, :, 0, :].transpose(2, 1, 0))
        )
        sd[f"{prefix}.bias"] = torch.from_numpy(take(f"{tf}/bias").copy())

    def dense(tf: str, prefix: str) -> None:  # [in, out] -> [out, in]
        sd[f"{prefix}.weight"] = torch.from_numpy(np.ascontiguousarray(take(f"{tf}/kernel").T))
        sd[f"{prefix}.bias"] = torch.from_numpy(take(f"{tf}/bias").copy())

    bn("batch_normalization", "input_bn")
    for i in range(2):
        conv2d(f"conv2d{'' if i == 0 else '_1'}", f"timbral.{i}")
        bn(f"batch_normalization_{1 + i}", f"timbral_bn.{i}")
    for i in range(3):
        conv2d(f"conv2d_{2 + i}", f"temporal.{i}")
        bn(f"batch_normalization_{3 + i}", f"temporal_bn.{i}")
    for i in range(3):
        conv1d(f"conv2d_{5 + i}", f"midend.{i}")
        bn(f"batch_normalization_{6 + i}", f"midend_bn.{i}")
    bn("batch_normalization_9", "pool_bn")
    dense("dense", "dense")
    bn("batch_normalization_10", "dense_bn")
    dense("dense_1", "classifier")
    unused = sorted(set(tf_vars) - used)
    if unused:
        raise ModelError(f"musicnn checkpoint has unexpected variables: {unused[:5]}")
    return sd


def state_dict_sha256(sd: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's *content* (names, dtypes, shapes, bytes, sorted by name).

    Why not the file's hash: ``torch.save``'s zip/pickle bytes are not promised to
    be stable across torch versions, but the model id must only change when the
    numbers do.
    """
    h = hashlib.sha256()
    for name in sorted(sd):
        t = sd[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def find_checkpoint(dataset: str = "MSD") -> Path | None:
    """Directory of the ``<dataset>_musicnn`` checkpoint in the installed ``musicnn`` package.

    Uses ``find_spec`` only: it locates the package without executing it, and
    ``musicnn.extractor`` / ``models`` import TensorFlow, which we never want.
    """
    try:
        spec = importlib.util.find_spec("musicnn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        d = Path(location) / f"{dataset}_musicnn"
        if (d / ".index").is_file():
            return d
    return None


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def musicnn_log_mel(mel: MelSpectrogram, audio: np.ndarray) -> torch.Tensor:
    """``log10(10000 * mel + 1)`` in float32, ``(frames, 96)``: musicnn's input, minus its float16 bug."""
    with torch.inference_mode():
        return torch.log10(mel(audio) * 10000.0 + 1.0)


# --------------------------------------------------------------------------- backbone


#: Hop (s) at which companion models (MTT beside MSD) read patches: the patch length, so their
#: patches do not overlap.  At the query's 1.5-s hop this halves their cost (issue 29:
#: a 10-s note's embedding 155 -> ~120 ms) for statistics the catalogue computes on this grid anyway.
COMPANION_HOP_S = 3.0


class MusicnnBackbone(Backbone):
    """Pretrained musicnn as a frozen feature extractor (default: MSD, ``mean_pool``, 753-d).

    Weights load lazily on first use (``model_id``, ``features``, ``tags``), from
    ``<cache_dir>/musicnn-<dataset>.pt`` if its sidecar sha256 matches, else by
    converting the checkpoint in the installed ``musicnn`` wheel.
    """

    name = "musicnn"
    sample_rate = SAMPLE_RATE
    patch_seconds = 3.0

    def __init__(
        self,
        cache_dir: Path,
        dataset: str = "MSD",
        layer: str = "mean_pool",
        threads: int = 0,
        batch_size: int = 4,
        companions: tuple[str, ...] = (),
    ) -> None:
        dataset = dataset.upper()
        if dataset not in DATASETS:
            raise ValueError(f"musicnn dataset must be one of {DATASETS}, not {dataset!r}")
        if layer not in LAYERS:
            raise ValueError(f"musicnn layer must be one of {sorted(LAYERS)}, not {layer!r}")
        self.cache_dir = Path(cache_dir)
        self.dataset = dataset
        self.layer = layer
        self.dim = LAYERS[layer]
        self.batch_size = max(1, int(batch_size))
        self.labels = MSD_LABELS if dataset == "MSD" else MTT_LABELS
        if threads > 0:
            # process-wide in torch; Settings.torch_threads is meant to set exactly this
            torch.set_num_threads(threads)
        self._mel = MelSpectrogram(SAMPLE_RATE, N_FFT, HOP, N_MELS)
        #: other musicnn models run on the same patches for the similarity descriptors only
        #: (MTT beside MSD, issue 29); the head and the tags stay this model's
        self.companions: tuple[MusicnnBackbone, ...] = tuple(
            MusicnnBackbone(cache_dir, dataset=c, layer=layer, batch_size=batch_size)
            for c in dict.fromkeys(x.upper() for x in companions) if c != dataset)
        self._net: MusicnnNet | None = None
        self._weights_sha256: str | None = None
        self._lock = threading.Lock()

    # ---- weights ----------------------------------------------------------

    @property
    def cache_path(self) -> Path:
        return self.cache_dir / f"musicnn-{self.dataset.lower()}.pt"

    @property
    def sidecar_path(self) -> Path:
        return self.cache_path.with_name(self.cache_path.name + ".sha256")

    def _load_cached(self) -> dict[str, torch.Tensor] | None:
        path, sidecar = self.cache_path, self.sidecar_path
        if not path.is_file():
            return None
        try:
            expected = sidecar.read_text().split()[0]
        except (FileNotFoundError, IndexError):
            log.warning(
                "musicnn cache %s has no valid sidecar %s; reconverting", path, sidecar.name
            )
            return None
        actual = _file_sha256(path)
        if actual != expected:
            log.warning(
                "musicnn cache %s sha256 %s != sidecar %s; reconverting",
                path,
                actual[:12],
                expected[:12],
            )
            return None
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable cache is just rebuilt
            log.warning("musicnn cache %s unreadable (%s); reconverting", path, exc)
            return None
        if not isinstance(sd, dict):
            return None
        return sd

    def _convert(self) -> dict[str, torch.Tensor]:
        ckpt = find_checkpoint(self.dataset)
        if ckpt is None:
            raise WeightsUnavailableError(
                f"musicnn {self.dataset} weights: no valid cache at {self.cache_path} and the "
                f"`musicnn` package is not installed; run `{INSTALL_HINT}`"
            )
        log.info("converting musicnn %s checkpoint %s -> %s", self.dataset, ckpt, self.cache_path)
        sd = convert_tf_weights(read_checkpoint(ckpt))
        atomic_write(self.cache_path, lambda f: torch.save(sd, f))
        digest = _file_sha256(self.cache_path)
        atomic_write(
            self.sidecar_path, lambda f: f.write(f"{digest}  {self.cache_path.name}\n".encode())
        )
        return sd

    def load(self) -> MusicnnNet:
        """Load (or convert and cache) the weights once; thread-safe."""
        with self._lock:
            if self._net is not None:
                return self._net
            sd = self._load_cached()
            net = MusicnnNet(n_classes=len(self.labels))
            if sd is not None:
                try:
                    net.load_state_dict(sd, strict=True)
                except (RuntimeError, KeyError) as exc:
                    log.warning(
                        "musicnn cache %s does not fit the network (%s); reconverting",
                        self.cache_path,
                        exc,
                    )
                    sd = None
            if sd is None:
                sd = self._convert()
                net.load_state_dict(sd, strict=True)
            net.eval()
            for p in net.parameters():
                p.requires_grad_(False)
            self._weights_sha256 = state_dict_sha256(net.state_dict())
            self._net = net
            log.info(
                "musicnn %s loaded (%s, layer %s)",
                self.dataset,
                self._weights_sha256[:12],
                self.layer,
            )
            return net

    @property
    def model_id(self) -> str:
        """``musicnn-msd:<12 hex>``; a non-default layer is part of the id (same dim, other numbers).

        With companions: ``musicnn-msd:<12 hex>+mtt:<12 hex>``, so an index built without the
        companion's descriptors (or with another's) is never mixed with one built with them.
        """
        self.load()
        assert self._weights_sha256 is not None
        tag = f"musicnn-{self.dataset.lower()}"
        if self.layer != "mean_pool":
            tag += f"/{self.layer}"
        own = f"{tag}:{self._weights_sha256[:12]}"
        for c in self.companions:
            c.load()
            own += f"+{c.dataset.lower()}:{c._weights_sha256[:12]}"
        return own

    # ---- inference --------------------------------------------------------

    def log_mel(self, audio: np.ndarray) -> torch.Tensor:
        """Padded log-mel of the whole signal, ``(frames, 96)``; audio under 3 s is zero-padded."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        patch = round(self.patch_seconds * self.sample_rate)
        if audio.size < patch:
            audio = np.pad(audio, (0, patch - audio.size))
        return musicnn_log_mel(self._mel, audio)

    def patches(self, audio: np.ndarray, hop_seconds: float) -> torch.Tensor:
        """``(n_patches, 187, 96)`` log-mel patches starting at ``0, hop, 2*hop, ...`` seconds."""
        logmel = self.log_mel(audio)
        n = self.n_patches(int(np.asarray(audio).size), hop_seconds)
        hop_samples = max(1, round(hop_seconds * self.sample_rate))
        starts = torch.tensor([round(i * hop_samples / HOP) for i in range(n)], dtype=torch.long)
        need = int(starts[-1]) + PATCH_FRAMES
        if need > logmel.shape[0]:  # rounding at the very end: pad with log(0+1) = 0
            logmel = F.pad(logmel, (0, 0, 0, need - logmel.shape[0]))
        idx = starts[:, None] + torch.arange(PATCH_FRAMES)[None, :]
        return logmel[idx]

    def outputs(self, audio: np.ndarray, hop_seconds: float) -> MusicnnOutputs:
        """All back-end layers for every patch (batched, inference mode)."""
        return self.outputs_of_patches(self.patches(audio, hop_seconds))

    def outputs_of_patches(self, x: torch.Tensor) -> MusicnnOutputs:
        """All back-end layers of ``(n, 187, 96)`` log-mel patches (:meth:`patches`): one front end, many nets."""
        net = self.load()
        chunks: list[MusicnnOutputs] = []
        with torch.inference_mode():
            for i in range(0, x.shape[0], self.batch_size):
                chunks.append(net(x[i : i + self.batch_size]))
        return MusicnnOutputs(
            *(
                torch.cat([getattr(c, f) for c in chunks])
                for f in ("mean_pool", "max_pool", "penultimate", "logits")
            )
        )

    def features(self, audio: np.ndarray, hop_seconds: float) -> np.ndarray:
        out = self.outputs(audio, hop_seconds)
        return getattr(out, self.layer).numpy().astype(np.float32, copy=False)

    @property
    def descriptor_blocks(self) -> tuple[tuple[str, int], ...]:  # type: ignore[override]
        """``mean_pool`` and ``penultimate`` of this model, then of each companion (``mtt_mean_pool``, ...).

        The similarity model pools them (docs/quality.md, bench/similarity_eval.py).
        """
        own = (("mean_pool", LAYERS["mean_pool"]), ("penultimate", LAYERS["penultimate"]))
        return own + tuple((f"{c.dataset.lower()}_{name}", d) for c in self.companions for name, d in own)

    @property
    def tag_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.labels

    def analyse(self, audio: np.ndarray, hop_seconds: float) -> SegmentAnalysis:
        """One pass: the configured layer (head), ``[mean_pool | penultimate]`` (n, 953), tag probabilities (n, 50)."""
        x = self.patches(audio, hop_seconds)  # the log-mel once: every model reads the same patches
        out = self.outputs_of_patches(x)
        feats = getattr(out, self.layer).numpy().astype(np.float32, copy=False)
        parts = [out.mean_pool, out.penultimate]
        # companions only feed track statistics: non-overlapping patches are enough (the catalogue's
        # 3-s grid), so at a denser query hop they read every k-th patch, rows repeated to align
        stride = max(1, round(COMPANION_HOP_S / hop_seconds))
        for c in self.companions:
            o = c.outputs_of_patches(x[::stride])
            parts += [torch.repeat_interleave(t, stride, dim=0)[: len(x)] for t in (o.mean_pool, o.penultimate)]
        desc = torch.cat(parts, dim=1).numpy().astype(np.float32, copy=False)
        return SegmentAnalysis(feats, desc, out.taggram.numpy().astype(np.float32, copy=False))

    def tags(self, audio: np.ndarray, hop_seconds: float = 3.0) -> dict[str, float]:
        """Mean tag probability over the clip, tags sorted by probability (for ``/about``)."""
        probs = self.outputs(audio, hop_seconds).taggram.mean(dim=0).tolist()
        return dict(sorted(zip(self.labels, probs), key=lambda kv: -kv[1]))
