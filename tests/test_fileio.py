"""engine.fileio: a write either fully replaces the destination or leaves it as it was."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from engine import fileio
from engine.fileio import atomic_open, atomic_write, atomic_write_bytes, atomic_write_text
from engine.fingerprint.index import FingerprintIndex
from tests.audiogen import synthetic_track


class Boom(Exception):
    pass


def _temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(fileio.TMP_SUFFIX))


def test_writer_raising_mid_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    dest.write_bytes(b"old content")

    def half_then_fail(fh) -> None:
        fh.write(b"new, but only half")
        raise Boom

    with pytest.raises(Boom):
        atomic_write(dest, half_then_fail)
    with pytest.raises(Boom), atomic_open(dest) as fh:
        fh.write(b"streamed half")
        fh.flush()
        raise Boom
    assert dest.read_bytes() == b"old content"
    assert _temp_files(tmp_path) == []


def test_interrupt_mid_write_also_cleans_up(tmp_path: Path) -> None:
    """Ctrl-C is a BaseException, not an Exception: it must not leave a temp file either."""
    dest = tmp_path / "d" / "x.npy"
    with pytest.raises(KeyboardInterrupt), atomic_open(dest) as fh:
        fh.write(b"partial")
        raise KeyboardInterrupt
    assert not dest.exists()
    assert _temp_files(dest.parent) == []


def test_successful_write_replaces_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "sub" / "meta.json"
    atomic_write_text(dest, "first")
    assert dest.read_text() == "first"
    old_inode = dest.stat().st_ino

    # the new content goes live through one os.replace of a temp file in the same directory,
    # and until then a reader still sees the old file
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src, dst) -> None:
        assert Path(src).parent == Path(dst).parent and Path(src).read_bytes() == "second é".encode()
        assert Path(dst).read_text() == "first"
        replaced.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", spy)
    atomic_write_text(dest, "second é")
    assert [d for _, d in replaced] == [str(dest)]
    assert dest.read_text(encoding="utf-8") == "second é"
    assert dest.stat().st_ino != old_inode  # a new file, not the old one rewritten in place
    assert _temp_files(dest.parent) == []


def test_atomic_open_lets_the_writer_check_what_it_wrote(tmp_path: Path) -> None:
    """``fh.name`` is the temp file: a checksum check can refuse it before it goes live."""
    dest = tmp_path / "weights.bin"
    atomic_write_bytes(dest, b"verified")
    with pytest.raises(ValueError), atomic_open(dest) as fh:
        fh.write(b"tampered")
        fh.flush()
        assert Path(fh.name).read_bytes() == b"tampered" and Path(fh.name).parent == tmp_path
        raise ValueError("checksum mismatch")
    assert dest.read_bytes() == b"verified"
    assert _temp_files(tmp_path) == []


def test_fingerprint_keys_file_survives_a_crash_mid_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash while the snapshot's keys file is written leaves the previous keys file whole.

    Before engine.fileio the keys were written in place with ``np.save(path)``: a crash
    there left a truncated keys file next to a valid rows file.
    """
    sr = 16000
    idx = FingerprintIndex(tmp_path / "fp.sqlite")
    for key in (1, 2):
        idx.add_track(key, synthetic_track(seed=key, seconds=12.0, sr=sr), sr)
    idx.write_snapshot()
    keys_before = idx.keys_path.read_bytes()
    rows_before = idx.snapshot_path.read_bytes()
    assert np.load(idx.keys_path).tolist() == [1, 2]

    idx.add_track(3, synthetic_track(seed=3, seconds=12.0, sr=sr), sr)
    real_save = np.save

    def crash_on_keys(fh, arr, *a, **kw) -> None:
        if Path(getattr(fh, "name", "")).name.startswith(idx.keys_path.name):
            fh.write(b"\x93NUMPY half a header")
            raise OSError(28, "No space left on device")
        real_save(fh, arr, *a, **kw)

    monkeypatch.setattr(np, "save", crash_on_keys)
    with pytest.raises(OSError):
        idx.write_snapshot()
    assert idx.keys_path.read_bytes() == keys_before
    assert idx.snapshot_path.read_bytes() == rows_before
    assert _temp_files(tmp_path) == []
    assert not idx.snapshot_is_current()  # the old snapshot is stale: queries use SQLite, never wrong keys

    monkeypatch.setattr(np, "save", real_save)
    idx.write_snapshot()
    assert np.load(idx.keys_path).tolist() == [1, 2, 3]
    assert idx.snapshot_is_current()
    idx.close()
