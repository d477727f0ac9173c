"""OpenL3 port: architecture, front end, loading the published layout, features.

The real weights cannot be downloaded on the build machines, so the tests make a
randomly initialised file in the exact layout torchopenl3 published (the Keras layer
names, plus Kapre's DFT kernels and mel filterbank), serve it from a local HTTP server
and load it through the real download path.
"""

from __future__ import annotations

import functools
import hashlib
import re

import numpy as np
import pytest
import torch

from engine.errors import ModelError, WeightsUnavailableError
from engine.features.openl3 import (
    WEIGHTS,
    MelFrontEnd,
    OpenL3AudioNet,
    OpenL3Backbone,
    kapre_dft_kernels,
    kapre_mel_filterbank,
    load_published_state_dict,
)
from tests.weights_server import WeightsServer, dead_url

SR = 48_000

# (conv, in, out) and the BatchNorm sizes, as in torchopenl3/models.py (PytorchOpenl3)
_CONVS = [
    ("conv2d_1", 1, 64), ("conv2d_2", 64, 64), ("conv2d_3", 64, 128), ("conv2d_4", 128, 128),
    ("conv2d_5", 128, 256), ("conv2d_6", 256, 256), ("conv2d_7", 256, 512),
    ("audio_embedding_layer", 512, 512),
]
_BNS = [("batch_normalization_1", 1), ("batch_normalization_2", 64),
        ("batch_normalization_3", 64), ("batch_normalization_4", 128),
        ("batch_normalization_5", 128), ("batch_normalization_6", 256),
        ("batch_normalization_7", 256), ("batch_normalization_8", 512)]


def published_layout(n_mels: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with exactly the keys and shapes of the published files.

    A fresh dict each call (tests edit it), sharing cached tensors (they are ~35 MB).
    """
    return dict(_published_layout(n_mels, seed))


@functools.lru_cache(maxsize=4)
def _published_layout(n_mels: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    real, imag = kapre_dft_kernels()
    state: dict[str, torch.Tensor] = {
        "speclayer.dft_real_kernels": real,  # (1025, 1, 2048)
        "speclayer.dft_imag_kernels": imag,
        "speclayer.mel_basis": torch.from_numpy(kapre_mel_filterbank(n_mels)),  # (n_mels, 1025)
    }
    for name, c in _BNS:
        state[f"{name}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        state[f"{name}.bias"] = 0.1 * torch.randn(c, generator=g)
        state[f"{name}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        state[f"{name}.running_var"] = 0.5 + torch.rand(c, generator=g)
        state[f"{name}.num_batches_tracked"] = torch.tensor(1000)
    for name, c_in, c_out in _CONVS:
        std = (2.0 / (9 * c_in)) ** 0.5  # He init, as the Keras model was
        state[f"{name}.weight"] = std * torch.randn(c_out, c_in, 3, 3, generator=g)
        state[f"{name}.bias"] = 0.01 * torch.randn(c_out, generator=g)
    return state


@pytest.fixture(scope="module")
def served_weights(tmp_path_factory):
    """mel128 and mel256 weight files on a local server: {repr: (url, sha256, state)}."""
    srv = WeightsServer().start()
    root = tmp_path_factory.mktemp("published")
    out = {}
    for repr_, n_mels in (("mel128", 128), ("mel256", 256)):
        state = published_layout(n_mels, seed=n_mels)
        path = root / WEIGHTS[(repr_, "music")].filename
        torch.save(state, path)
        body = path.read_bytes()
        url = srv.add(f"models/{path.name}", body)
        out[repr_] = (url, hashlib.sha256(body).hexdigest(), state)
    yield srv, out
    srv.stop()


def music(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    x = x * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t) ** 2) + 0.02 * rng.standard_normal(t.size)
    return x.astype(np.float32)


# ---------------------------------------------------------------- architecture


@pytest.mark.parametrize("input_repr", ["mel128", "mel256"])
def test_state_dict_matches_published_layout(input_repr):
    n_mels = 128 if input_repr == "mel128" else 256
    published = published_layout(n_mels)
    ours = OpenL3AudioNet(input_repr).state_dict()
    dft = {"speclayer.dft_real_kernels", "speclayer.dft_imag_kernels"}
    assert set(ours) == set(published) - dft
    for key, value in ours.items():
        assert tuple(value.shape) == tuple(published[key].shape), key
    assert sum(p.numel() for p in OpenL3AudioNet(input_repr).parameters()) == 4_687_042


def test_front_end_shape_and_range():
    fe = MelFrontEnd(256)
    spec = fe(torch.from_numpy(music(1.0))[None])
    assert spec.shape == (1, 1, 256, 199)  # 48000 samples, same-padded, hop 242
    assert spec.max().item() == pytest.approx(0.0)
    assert spec.min().item() >= -80.0
    # digital silence: every bin at the amin floor, so 0 dB after the max is removed
    silent = fe(torch.zeros(2, SR))
    assert torch.isfinite(silent).all() and silent.abs().max().item() == 0.0


def test_front_end_equals_kapre_conv_dft():
    """torch.stft front end == torchopenl3's conv1d-with-DFT-kernels front end."""
    x = torch.from_numpy(music(1.0, seed=3))[None]
    left, right = MelFrontEnd.same_padding(x.shape[-1])
    assert (left, right) == (982, 982)
    xp = torch.nn.functional.pad(x, (left, right)).unsqueeze(1)
    real, imag = kapre_dft_kernels()
    power = torch.conv1d(xp, real, stride=242) ** 2 + torch.conv1d(xp, imag, stride=242) ** 2
    mel = torch.sqrt(torch.from_numpy(kapre_mel_filterbank(128)) @ power)
    db = 10 * torch.log10(mel.clamp(min=1e-10))
    db = (db - db.amax(dim=(1, 2), keepdim=True)).clamp(min=-80)
    ours = MelFrontEnd(128)(x)[:, 0]
    # compare where the band has energy; float32 conv DFT is noisier than an FFT
    assert torch.allclose(ours[db > -60], db[db > -60], atol=0.05)


def test_mel_filterbank_matches_librosa_slaney_htk():
    librosa = pytest.importorskip("librosa")
    for n_mels in (128, 256):
        ref = librosa.filters.mel(sr=SR, n_fft=2048, n_mels=n_mels, fmin=0.0, fmax=SR / 2,
                                  htk=True, norm="slaney")
        np.testing.assert_allclose(kapre_mel_filterbank(n_mels), ref, rtol=1e-5, atol=1e-9)


def test_published_weights_are_pinned():
    for (repr_, content), w in WEIGHTS.items():
        assert re.fullmatch(r"[0-9a-f]{40}", w.git_blob_sha1)
        assert w.url.startswith("https://github.com/torchopenl3/torchopenl3-models/raw/")
        assert re.search(r"/raw/[0-9a-f]{40}/", w.url), "URL must be pinned to a commit"
        assert w.url.endswith(f"torchopenl3_{repr_}_{content}_512.pth.tar")


# ---------------------------------------------------------------- loading


def test_backbone_downloads_loads_and_embeds(served_weights, tmp_path):
    srv, files = served_weights
    url, sha, state = files["mel128"]
    before = len(srv.requests)
    bb = OpenL3Backbone(tmp_path, input_repr="mel128", weights_url=url, weights_sha256=sha,
                        progress=False, batch_size=2)
    assert len(srv.requests) == before + 1
    assert (bb.name, bb.sample_rate, bb.patch_seconds, bb.dim) == ("openl3", 48000, 1.0, 512)
    assert bb.model_id == f"openl3-mel128-music:{sha[:8]}"
    assert bb.weights_path == tmp_path / "openl3" / "torchopenl3_mel128_music_512.pth.tar"
    assert not bb.model.training
    # the file's own mel filterbank and weights are what the model uses
    assert torch.equal(bb.model.speclayer.mel_basis, state["speclayer.mel_basis"])
    assert torch.equal(bb.model.conv2d_3.weight, state["conv2d_3.weight"])

    audio = music(2.5)
    feats = bb.features(audio, hop_seconds=1.0)
    assert feats.shape == (bb.n_patches(audio.size, 1.0), 512) == (2, 512)
    assert feats.dtype == np.float32 and np.isfinite(feats).all()
    assert feats.std() > 0

    # a second backbone is served from the cache and is deterministic
    bb2 = OpenL3Backbone(tmp_path, input_repr="mel128", weights_url=url, weights_sha256=sha,
                         progress=False, batch_size=3)
    assert len(srv.requests) == before + 1
    np.testing.assert_array_equal(bb2.features(audio, hop_seconds=1.0), feats)

    # one window == the same window inside a longer call (batching changes nothing)
    one = bb.features(audio[SR:2 * SR], hop_seconds=1.0)
    np.testing.assert_allclose(one[0], feats[1], rtol=1e-4, atol=1e-5)

    # shorter than a patch: zero-padded to one patch
    short = bb.features(audio[: SR // 3], hop_seconds=0.5)
    assert short.shape == (1, 512) and np.isfinite(short).all()


def test_backbone_mel256(served_weights, tmp_path):
    _, files = served_weights
    url, sha, _ = files["mel256"]
    bb = OpenL3Backbone(tmp_path, weights_url=url, weights_sha256=sha, progress=False)
    assert bb.model_id == f"openl3-mel256-music:{sha[:8]}"
    feats = bb.features(music(1.2), hop_seconds=0.5)
    assert feats.shape == (1, 512) and np.isfinite(feats).all()


def test_mirror_must_serve_the_pinned_bytes(served_weights, tmp_path):
    """The published pin (git blob id) still applies to a mirror: random bytes fail."""
    srv, _ = served_weights
    with pytest.raises(WeightsUnavailableError, match="git blob sha1"):
        OpenL3Backbone(tmp_path, input_repr="mel128", weights_mirror=srv.url("models"),
                       progress=False)
    assert list((tmp_path / "openl3").iterdir()) == []


def test_offline_gives_a_clear_error(tmp_path):
    dead = dead_url("").rstrip("/")
    with pytest.raises(WeightsUnavailableError) as err:
        OpenL3Backbone(tmp_path, weights_mirror=dead, progress=False, timeout_s=5)
    msg = str(err.value)
    assert "torchopenl3_mel256_music_512.pth.tar" in msg
    assert str(tmp_path / "openl3" / "torchopenl3_mel256_music_512.pth.tar") in msg
    assert WEIGHTS[("mel256", "music")].git_blob_sha1 in msg


def test_layout_errors_are_model_errors():
    model = OpenL3AudioNet("mel128")
    state = published_layout(128)
    del state["conv2d_5.bias"]
    with pytest.raises(ModelError, match="conv2d_5.bias"):
        load_published_state_dict(model, state)

    state = published_layout(128)
    del state["speclayer.dft_imag_kernels"]
    with pytest.raises(ModelError, match="only one"):
        load_published_state_dict(model, state)

    with pytest.raises(ModelError, match="mel_basis"):
        load_published_state_dict(model, published_layout(256))


def test_not_a_state_dict(tmp_path):
    srv = WeightsServer().start()
    try:
        body = b"<html>captive portal</html>"
        url = srv.add("x.pth.tar", body)
        with pytest.raises(ModelError):
            OpenL3Backbone(tmp_path, input_repr="mel128", weights_url=url,
                           weights_sha256=hashlib.sha256(body).hexdigest(), progress=False)
    finally:
        srv.stop()


def test_unsupported_configuration(tmp_path):
    with pytest.raises(ValueError):
        OpenL3Backbone(tmp_path, input_repr="linear")
    with pytest.raises(ValueError):
        OpenL3AudioNet("mel64")
    assert not (tmp_path / "openl3").exists()


def test_nonstandard_dft_kernels_in_a_file_are_honoured():
    """A file whose DFT kernels are not the plain DFT gets Kapre's conv front end."""
    x = torch.from_numpy(music(1.0, seed=5))[None]
    plain = OpenL3AudioNet("mel128")
    load_published_state_dict(plain, published_layout(128))
    assert plain.speclayer.dft_kernels is None

    state = published_layout(128)
    real, imag = kapre_dft_kernels()
    state["speclayer.dft_real_kernels"] = real * 1.5  # 1.5x amplitude = +1.76 dB everywhere
    state["speclayer.dft_imag_kernels"] = imag * 1.5
    odd = OpenL3AudioNet("mel128")
    load_published_state_dict(odd, state)
    assert odd.speclayer.dft_kernels is not None
    # a constant gain vanishes after the max is subtracted: same log-mel as the stft path
    a, b = plain.speclayer(x), odd.speclayer(x)
    assert torch.allclose(a[a > -60], b[a > -60], atol=0.05)
    assert "dft_kernels" not in odd.state_dict()
