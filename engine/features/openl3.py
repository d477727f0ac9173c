"""OpenL3 audio embeddings (mel128 / mel256 input, 512-d) as a plain PyTorch module.

Why a port: the original OpenL3 (Cramer et al., ICASSP 2019, github.com/marl/openl3)
is a Keras model whose front end needs Kapre and TensorFlow (~600 MB) at run time.
The network is small (8 conv layers, ~4.7 M parameters) so it is re-expressed here in
torch, with the mel front end written on ``torch.stft`` (torchaudio is not available
on every target).  The weights are the published torch conversion of the official
Keras weights by the torchopenl3 project (github.com/torchopenl3/torchopenl3-models):
they load with ``torch.load(weights_only=True)``, so neither TensorFlow nor h5py is
needed.

What one 1-second window goes through (Kapre 0.1.4 semantics, as OpenL3 <= 0.3 and the
converted weights use them):

1. 48 kHz mono, 48 000 samples; Keras ``padding="same"`` for a 2048/242 framing, i.e.
   982 zeros on each side, giving 199 frames;
2. power STFT, periodic Hann window, n_fft 2048, hop 242 (no centring: the padding is
   step 1);
3. HTK mel filterbank, 0 .. 24 kHz, area-normalised filters, 128 or 256 bands, applied
   to the power spectrum, then square root (Kapre ``power_melgram=1``);
4. ``10 * log10(max(x, 1e-10))``, minus the window's maximum, floored at -80 dB;
5. BatchNorm, then four conv blocks (64, 128, 256, 512 channels; each two 3x3 "same"
   convs with BatchNorm + ReLU; blocks 1-3 end with a 2x2 max-pool); the last conv
   is ``audio_embedding_layer`` (no BatchNorm / ReLU after it);
6. a max-pool over the whole remaining map ((32, 24) for mel256, (16, 24) for mel128),
   giving the 512-d embedding.

The converted weights file also carries the front end's constants (Kapre's DFT
kernels and mel filterbank, imported from the Keras model).  The mel filterbank from
the file is used as is, so the front end matches the one the weights were made with
even where our own computation of it would differ by rounding.  The DFT kernels are
compared with the periodic-Hann DFT that ``torch.stft`` computes and dropped when
they agree (the expected case: Kapre's kernels are fixed); should a file carry other
kernels, they are applied as a strided convolution, as Kapre did.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import ModelError
from engine.features.base import Backbone
from engine.features.download import fetch_weights, file_digests

log = logging.getLogger(__name__)

__all__ = [
    "WEIGHTS",
    "MelFrontEnd",
    "OpenL3AudioNet",
    "OpenL3Backbone",
    "PublishedWeights",
    "kapre_mel_filterbank",
    "load_published_state_dict",
]

SAMPLE_RATE = 48_000
N_FFT = 2048
HOP = 242
N_BINS = N_FFT // 2 + 1
AMIN = 1e-10
DYNAMIC_RANGE_DB = 80.0
BN_EPS = 1e-3  # Keras BatchNormalization default
EMBEDDING_DIM = 512
#: final max-pool per input representation for the 512-d embedding (OpenL3's table)
POOL_512: dict[str, tuple[int, int]] = {"mel128": (16, 24), "mel256": (32, 24)}
N_MELS: dict[str, int] = {"mel128": 128, "mel256": 256}


# --------------------------------------------------------------------------- weights


class PublishedWeights:
    """Where one weights file lives and what its bytes must hash to."""

    def __init__(self, filename: str, git_blob_sha1: str) -> None:
        self.filename = filename
        self.git_blob_sha1 = git_blob_sha1

    @property
    def url(self) -> str:
        return f"{_WEIGHTS_BASE_URL}/{self.filename}"


#: Commit-pinned, so the URL can never start serving different bytes.
_WEIGHTS_REPO = "torchopenl3/torchopenl3-models"
_WEIGHTS_COMMIT = "a5df8fd155993e1601590b19649e882a68f80186"
_WEIGHTS_BASE_URL = f"https://github.com/{_WEIGHTS_REPO}/raw/{_WEIGHTS_COMMIT}"

#: The published files and their git blob ids (read from the repository's tree at
#: ``_WEIGHTS_COMMIT``; the files are unchanged since the first commit 6990ae8).  The
#: project publishes no sha256, and the files could not be downloaded from the machine
#: this was written on, so the git blob id is the pin; the sha256 is computed from the
#: verified file and becomes part of :attr:`OpenL3Backbone.model_id`.
WEIGHTS: dict[tuple[str, str], PublishedWeights] = {
    ("mel256", "music"): PublishedWeights(
        "torchopenl3_mel256_music_512.pth.tar", "54df87b6bfe9747d001991da436b3d1ac768b2a6"
    ),
    ("mel128", "music"): PublishedWeights(
        "torchopenl3_mel128_music_512.pth.tar", "d77ec1cde7dc0098f02277dd70040451eead8e64"
    ),
    ("mel256", "env"): PublishedWeights(
        "torchopenl3_mel256_env_512.pth.tar", "a37a08222ebf9d8a88a84beeae76ad909dac0bc6"
    ),
    ("mel128", "env"): PublishedWeights(
        "torchopenl3_mel128_env_512.pth.tar", "0bd0f509b478fd015f5ff44fc260b3248d03307d"
    ),
}


# --------------------------------------------------------------------------- front end


def _hz_to_mel_htk(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz_htk(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def kapre_mel_filterbank(
    n_mels: int, sr: int = SAMPLE_RATE, n_fft: int = N_FFT, fmin: float = 0.0,
    fmax: float | None = None,
) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` HTK-mel triangles with area normalisation.

    This is what Kapre 0.1.4 (``htk=True, norm=1``; the same as today's
    ``librosa.filters.mel(htk=True, norm="slaney")``) built into the Keras model.  It
    only serves models built without a weights file; a loaded file brings its own.
    """
    fmax = sr / 2.0 if fmax is None else fmax
    fft_freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    mel_f = _mel_to_hz_htk(np.linspace(_hz_to_mel_htk(fmin), _hz_to_mel_htk(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


def kapre_dft_kernels(n_fft: int = N_FFT) -> tuple[torch.Tensor, torch.Tensor]:
    """Kapre's windowed DFT kernels in torchopenl3's ``(n_bins, 1, n_fft)`` layout.

    Used only to check a weights file's kernels against what ``torch.stft`` computes
    (and by tests that build a file in the published layout).
    """
    t = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    angle = 2.0 * math.pi * k[:, None] * t[None, :] / n_fft
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    real = (torch.cos(angle) * window).float().unsqueeze(1)
    imag = (-torch.sin(angle) * window).float().unsqueeze(1)
    return real, imag


class MelFrontEnd(nn.Module):
    """1-s waveforms ``(batch, 48000)`` -> log-mel ``(batch, 1, n_mels, 199)``.

    ``mel_basis`` is a persistent buffer named as in the published state dict, so
    loading the file replaces the computed filterbank with the one the weights
    were trained with.
    """

    def __init__(self, n_mels: int) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.register_buffer("mel_basis", torch.from_numpy(kapre_mel_filterbank(n_mels)))
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)
        #: Set only when a weights file brings DFT kernels that are *not* a plain
        #: periodic-Hann DFT; then they are applied as Kapre did (a strided conv).
        self.register_buffer("dft_kernels", None, persistent=False)

    def use_dft_kernels(self, real: torch.Tensor, imag: torch.Tensor) -> None:
        """Apply these ``(n_bins, 1, n_fft)`` kernels instead of ``torch.stft``."""
        self.dft_kernels = torch.cat([real, imag], dim=0).float()

    @staticmethod
    def same_padding(n_samples: int) -> tuple[int, int]:
        """Keras/TensorFlow ``padding="same"`` for a strided 1-D conv of width N_FFT."""
        if n_samples % HOP == 0:
            total = max(N_FFT - HOP, 0)
        else:
            total = max(N_FFT - n_samples % HOP, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = self.same_padding(x.shape[-1])
        x = F.pad(x, (left, right))
        if self.dft_kernels is None:
            spec = torch.stft(
                x, n_fft=N_FFT, hop_length=HOP, win_length=N_FFT, window=self.window,
                center=False, return_complex=True,
            )
            power = spec.real.square() + spec.imag.square()  # (B, n_bins, frames)
        else:
            ri = F.conv1d(x.unsqueeze(1), self.dft_kernels, stride=HOP)  # (B, 2*n_bins, frames)
            power = ri[:, :N_BINS].square() + ri[:, N_BINS:].square()
        mel = torch.sqrt(torch.matmul(self.mel_basis, power))  # Kapre power_melgram=1
        db = 10.0 * torch.log10(torch.clamp(mel, min=AMIN))
        db = db - db.amax(dim=(1, 2), keepdim=True)
        db = torch.clamp(db, min=-DYNAMIC_RANGE_DB)
        return db.unsqueeze(1)


# --------------------------------------------------------------------------- network


class OpenL3AudioNet(nn.Module):
    """The OpenL3 audio sub-network with the 512-d output pooling.

    Layer names follow the published state dict (which follows the Keras layer
    names), so the file loads without renaming.
    """

    #: (conv name, in, out, BatchNorm after it, max-pool after the ReLU)
    _LAYERS: tuple[tuple[str, int, int, str | None, bool], ...] = (
        ("conv2d_1", 1, 64, "batch_normalization_2", False),
        ("conv2d_2", 64, 64, "batch_normalization_3", True),
        ("conv2d_3", 64, 128, "batch_normalization_4", False),
        ("conv2d_4", 128, 128, "batch_normalization_5", True),
        ("conv2d_5", 128, 256, "batch_normalization_6", False),
        ("conv2d_6", 256, 256, "batch_normalization_7", True),
        ("conv2d_7", 256, 512, "batch_normalization_8", False),
        ("audio_embedding_layer", 512, 512, None, False),
    )

    def __init__(self, input_repr: str = "mel256") -> None:
        super().__init__()
        if input_repr not in N_MELS:
            raise ValueError(f"input_repr must be one of {sorted(N_MELS)}, not {input_repr!r}")
        self.input_repr = input_repr
        self.speclayer = MelFrontEnd(N_MELS[input_repr])
        self.batch_normalization_1 = nn.BatchNorm2d(1, eps=BN_EPS)
        for conv, c_in, c_out, bn, _ in self._LAYERS:
            setattr(self, conv, nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
            if bn is not None:
                setattr(self, bn, nn.BatchNorm2d(c_out, eps=BN_EPS))
        self.final_pool = POOL_512[input_repr]

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``(batch, 48000)`` float32 at 48 kHz -> ``(batch, 512)``."""
        x = self.batch_normalization_1(self.speclayer(waveforms))
        for conv, _, _, bn, pool in self._LAYERS:
            x = getattr(self, conv)(x)
            if bn is None:
                break
            x = F.relu(getattr(self, bn)(x))
            if pool:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
        x = F.max_pool2d(x, kernel_size=self.final_pool, stride=self.final_pool)
        return x.flatten(1)


# --------------------------------------------------------------------------- loading


_DFT_KEYS = ("speclayer.dft_real_kernels", "speclayer.dft_imag_kernels")


def load_published_state_dict(model: OpenL3AudioNet, state: Mapping[str, torch.Tensor]) -> None:
    """Load a torchopenl3-layout state dict into ``model``, strictly.

    Why not plain ``load_state_dict``: the published file also holds Kapre's DFT
    kernels, which our ``torch.stft`` front end does not need.  They are compared
    with the kernels ``torch.stft`` implies (a mismatch means the file expects a
    different front end, so the embeddings would be wrong) and then dropped.
    Anything else missing or unexpected is an error, never a silently half-loaded
    model.
    """
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    n_mels = model.speclayer.n_mels

    expected_dft = kapre_dft_kernels()
    found = [state.pop(key, None) for key in _DFT_KEYS]
    if any(k is not None for k in found):
        if any(k is None for k in found):
            raise ModelError(f"weights file has only one of {_DFT_KEYS}")
        for key, kernels, ref in zip(_DFT_KEYS, found, expected_dft):
            if tuple(kernels.shape) != tuple(ref.shape):
                raise ModelError(
                    f"{key} has shape {tuple(kernels.shape)}, expected {tuple(ref.shape)}"
                )
        err = max((k.float() - ref).abs().max().item() for k, ref in zip(found, expected_dft))
        if err > 1e-4:
            # Not the DFT torch.stft computes: honour the file (slower, but faithful).
            log.warning("weights file's DFT kernels differ from a periodic-Hann DFT by %.3g; "
                        "using the file's kernels", err)
            model.speclayer.use_dft_kernels(found[0], found[1])

    mel = state.get("speclayer.mel_basis")
    if mel is not None:
        if tuple(mel.shape) == (n_mels, N_BINS):
            log.debug("file mel filterbank vs computed: max |diff| %.3g",
                      (mel.float() - model.speclayer.mel_basis).abs().max().item())
        if tuple(mel.shape) == (N_BINS, n_mels):  # Kapre's own (bins, mels) orientation
            state["speclayer.mel_basis"] = mel = mel.t().contiguous()
        if tuple(mel.shape) != (n_mels, N_BINS):
            raise ModelError(
                f"speclayer.mel_basis has shape {tuple(mel.shape)}, expected {(n_mels, N_BINS)} "
                f"for {model.input_repr}"
            )
    else:
        log.warning("weights file has no mel filterbank; using the computed Kapre one")
        state["speclayer.mel_basis"] = model.speclayer.mel_basis

    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"weights do not fit the OpenL3 {model.input_repr} network: {exc}") from exc


# --------------------------------------------------------------------------- backbone


class OpenL3Backbone(Backbone):
    """OpenL3 (music, mel128/mel256, 512-d) as a :class:`Backbone`.

    Weights are fetched on construction (cached in ``cache_dir/openl3``), so a
    missing file fails at start-up with :class:`~engine.errors.WeightsUnavailableError`
    rather than on the first query.
    """

    name = "openl3"
    sample_rate = SAMPLE_RATE
    patch_seconds = 1.0
    dim = EMBEDDING_DIM

    def __init__(
        self,
        cache_dir: Path,
        input_repr: str = "mel256",
        content_type: str = "music",
        threads: int = 0,
        weights_url: str | None = None,
        *,
        weights_sha256: str | None = None,
        weights_mirror: str | None = None,
        batch_size: int = 8,
        timeout_s: float = 60.0,
        progress: bool = True,
    ) -> None:
        """``weights_url`` replaces the published URL (the file must still match the
        pinned git blob id unless ``weights_sha256`` pins other bytes, e.g. in tests
        or for a re-exported file); ``weights_mirror`` is a base URL serving the
        published file names; ``batch_size`` bounds memory (about 40 MB per window
        for mel256).
        """
        key = (input_repr, content_type)
        if key not in WEIGHTS:
            raise ValueError(
                f"OpenL3 {input_repr}/{content_type} is not supported; choose from "
                f"{sorted(WEIGHTS)}"
            )
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        published = WEIGHTS[key]
        self.input_repr = input_repr
        self.content_type = content_type
        self.batch_size = batch_size
        if threads > 0:
            # torch's intra-op pool is process-wide; the worker count in Settings is
            # sized with this in mind.
            torch.set_num_threads(threads)

        dest = Path(cache_dir) / "openl3" / published.filename
        path = fetch_weights(
            weights_url or published.url,
            dest,
            weights_sha256,
            git_blob_sha1=None if weights_sha256 else published.git_blob_sha1,
            timeout_s=timeout_s,
            progress=progress,
            mirror=None if weights_url else weights_mirror,
        )
        self.weights_path = path
        self._sha256 = file_digests(path).sha256

        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle / zip errors: the file is not a state dict
            raise ModelError(f"{path} is not a readable torch state dict: {exc}") from exc
        if not isinstance(state, Mapping):
            raise ModelError(f"{path} holds a {type(state).__name__}, not a state dict")
        self.model = OpenL3AudioNet(input_repr)
        load_published_state_dict(self.model, state)
        self.model.eval()
        log.info("OpenL3 %s/%s loaded from %s (%s)", input_repr, content_type, path, self.model_id)

    @property
    def model_id(self) -> str:
        return f"openl3-{self.input_repr}-{self.content_type}:{self._sha256[:8]}"

    def features(self, audio: np.ndarray, hop_seconds: float) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"audio must be mono (1-D), got shape {audio.shape}")
        patch = round(self.patch_seconds * self.sample_rate)
        hop = max(1, round(hop_seconds * self.sample_rate))
        n = self.n_patches(audio.shape[0], hop_seconds)
        wave = torch.from_numpy(np.ascontiguousarray(audio))
        if wave.shape[0] < patch:
            wave = F.pad(wave, (0, patch - wave.shape[0]))
        windows = wave.unfold(0, patch, hop)[:n]  # a view: no copy of the whole track
        self.model.eval()
        out = np.empty((n, self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                batch = windows[start:start + self.batch_size].contiguous()
                out[start:start + batch.shape[0]] = self.model(batch).numpy()
        return out
