"""The pure-Python TF checkpoint reader, on the real musicnn checkpoint and on broken copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.errors import ModelError
from engine.features.musicnn import find_checkpoint
from engine.features.tf_checkpoint import crc32c, list_variables, read_checkpoint


@pytest.fixture(scope="module")
def msd_dir() -> Path:
    d = find_checkpoint("MSD")
    if d is None:
        pytest.skip("musicnn package not installed (pip install --no-deps musicnn==0.1.0)")
    return d


@pytest.fixture()
def ckpt_copy(msd_dir: Path, tmp_path: Path) -> Path:
    """The MSD checkpoint copied under an ordinary prefix ``model.ckpt``."""
    shutil.copy(msd_dir / ".index", tmp_path / "model.ckpt.index")
    shutil.copy(msd_dir / ".data-00000-of-00001", tmp_path / "model.ckpt.data-00000-of-00001")
    return tmp_path / "model.ckpt"


def test_crc32c_known_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    rng = np.random.default_rng(1)
    big = rng.integers(0, 256, 50_001, dtype=np.uint8).tobytes()  # vectorised path
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    state = 0xFFFFFFFF
    for b in big:
        state = table[(state ^ b) & 0xFF] ^ (state >> 8)
    assert crc32c(big) == state ^ 0xFFFFFFFF


def test_index_lists_all_entries(msd_dir: Path) -> None:
    entries = list_variables(msd_dir)
    assert len(entries) == 150  # 64 model variables + 84 Adam slots + beta1/beta2_power
    e = entries["conv2d/kernel"]
    assert e.shape == (7, 38, 1, 204) and e.dtype == 1 and e.size == 7 * 38 * 204 * 4


def test_reads_model_variables(msd_dir: Path) -> None:
    w = read_checkpoint(msd_dir)
    assert len(w) == 64
    assert sum(v.size for v in w.values()) == 792_079
    expected = {
        "batch_normalization/gamma": (1,),
        "conv2d/kernel": (7, 38, 1, 204),
        "conv2d_1/kernel": (7, 67, 1, 204),
        "conv2d_2/kernel": (128, 1, 1, 51),
        "conv2d_3/kernel": (64, 1, 1, 51),
        "conv2d_4/kernel": (32, 1, 1, 51),
        "conv2d_5/kernel": (7, 561, 1, 64),
        "conv2d_7/kernel": (7, 64, 1, 64),
        "batch_normalization_9/moving_variance": (1506,),
        "dense/kernel": (1506, 200),
        "dense_1/kernel": (200, 50),
    }
    for name, shape in expected.items():
        assert w[name].shape == shape, name
        assert w[name].dtype == np.float32
        assert np.isfinite(w[name]).all()
    assert (w["batch_normalization_10/moving_variance"] > 0).all()
    assert not any("Adam" in k for k in w)


def test_optimizer_slots_on_request(msd_dir: Path) -> None:
    w = read_checkpoint(msd_dir, skip_optimizer_slots=False)
    assert len(w) == 150
    assert w["beta1_power"].shape == ()
    assert w["dense/kernel/Adam"].shape == (1506, 200)


def test_ordinary_prefix(ckpt_copy: Path, msd_dir: Path) -> None:
    a = read_checkpoint(ckpt_copy)
    b = read_checkpoint(msd_dir)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_missing_files(ckpt_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        read_checkpoint(tmp_path / "nothing")
    ckpt_copy.with_name("model.ckpt.data-00000-of-00001").unlink()
    with pytest.raises(ModelError, match="not found"):
        read_checkpoint(ckpt_copy)


def test_truncated_data(ckpt_copy: Path) -> None:
    data = ckpt_copy.with_name("model.ckpt.data-00000-of-00001")
    blob = data.read_bytes()
    data.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ModelError, match="outside|truncated"):
        read_checkpoint(ckpt_copy)


def test_flipped_byte_in_data_fails_crc(ckpt_copy: Path) -> None:
    data = ckpt_copy.with_name("model.ckpt.data-00000-of-00001")
    blob = bytearray(data.read_bytes())
    entry = list_variables(ckpt_copy)["dense/kernel"]
    blob[entry.offset + entry.size // 2] ^= 0x40
    data.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="crc32c"):
        read_checkpoint(ckpt_copy)
    # without verification the same file reads (sizes still fine)
    assert len(read_checkpoint(ckpt_copy, verify_crc=False)) == 64


@pytest.mark.parametrize("cut", ["truncate", "flip", "garbage", "empty"])
def test_corrupt_index(ckpt_copy: Path, cut: str) -> None:
    index = ckpt_copy.with_name("model.ckpt.index")
    blob = bytearray(index.read_bytes())
    if cut == "truncate":
        blob = blob[: len(blob) - 100]
    elif cut == "flip":
        blob[200] ^= 0xFF
    elif cut == "garbage":
        blob = bytearray(b"\x00" * 10 + b"not a checkpoint" * 10)
    else:
        blob = bytearray()
    index.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="corrupt"):
        read_checkpoint(ckpt_copy)
