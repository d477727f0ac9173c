"""The weights downloader against a real local HTTP server (no internet needed)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from engine.errors import WeightsUnavailableError
from engine.features import download
from engine.features.download import fetch_weights, file_digests, mirrored_url
from tests.weights_server import WeightsServer, dead_url

BODY = os.urandom(300_000)
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def server():
    srv = WeightsServer().start()
    yield srv
    srv.stop()


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_download_then_cache_hit_makes_no_request(server, tmp_path):
    url = server.add("w/model.bin", BODY)
    dest = tmp_path / "cache" / "model.bin"

    assert fetch_weights(url, dest, SHA, progress=False) == dest
    assert dest.read_bytes() == BODY
    assert server.requests == ["/w/model.bin"]

    assert fetch_weights(url, dest, SHA, progress=False) == dest
    assert server.requests == ["/w/model.bin"], "a verified cached file must not be re-fetched"
    assert _leftovers(dest.parent) == ["model.bin"]


def test_stale_cached_file_is_replaced(server, tmp_path):
    url = server.add("model.bin", BODY)
    dest = tmp_path / "model.bin"
    dest.write_bytes(b"an older, different file")
    fetch_weights(url, dest, SHA, progress=False)
    assert dest.read_bytes() == BODY
    assert len(server.requests) == 1


def test_checksum_mismatch_raises_and_leaves_nothing(server, tmp_path):
    url = server.add("model.bin", BODY)
    dest = tmp_path / "d" / "model.bin"
    with pytest.raises(WeightsUnavailableError) as err:
        fetch_weights(url, dest, "0" * 64, progress=False)
    msg = str(err.value)
    assert "checksum" in msg and url in msg and str(dest) in msg and "0" * 64 in msg
    assert _leftovers(dest.parent) == []


def test_git_blob_pin(server, tmp_path):
    """The git object id pin: what a git host publishes for a committed file."""
    blob = hashlib.sha1(b"blob %d\0" % len(BODY) + BODY).hexdigest()
    url = server.add("model.bin", BODY)
    dest = tmp_path / "model.bin"
    fetch_weights(url, dest, None, git_blob_sha1=blob, progress=False)
    assert file_digests(dest).git_blob_sha1 == blob
    assert file_digests(dest).sha256 == SHA

    other = tmp_path / "other.bin"
    with pytest.raises(WeightsUnavailableError, match="git blob sha1"):
        fetch_weights(url, other, None, git_blob_sha1="f" * 40, progress=False)
    assert not other.exists()


def test_a_pin_is_required(tmp_path):
    with pytest.raises(ValueError):
        fetch_weights("http://127.0.0.1:1/x", tmp_path / "x", None)


def test_http_error_is_clear(server, tmp_path):
    url = server.url("missing.bin")
    dest = tmp_path / "missing.bin"
    with pytest.raises(WeightsUnavailableError) as err:
        fetch_weights(url, dest, SHA, progress=False)
    msg = str(err.value)
    assert "HTTP 404" in msg and url in msg and str(dest) in msg and "by hand" in msg
    assert _leftovers(tmp_path) == []


def test_unreachable_url_is_clear(tmp_path):
    url = dead_url("model.bin")
    dest = tmp_path / "model.bin"
    with pytest.raises(WeightsUnavailableError) as err:
        fetch_weights(url, dest, SHA, timeout_s=5, progress=False)
    msg = str(err.value)
    assert "could not reach" in msg and url in msg and str(dest) in msg and SHA in msg
    assert err.value.kind == "weights_unavailable"
    assert _leftovers(tmp_path) == []


def test_truncated_download_leaves_no_partial_file(server, tmp_path):
    url = server.add("model.bin", BODY, mode="truncate")
    dest = tmp_path / "model.bin"
    with pytest.raises(WeightsUnavailableError, match="cut off"):
        fetch_weights(url, dest, SHA, progress=False)
    assert _leftovers(tmp_path) == []


def test_stalled_download_times_out_and_leaves_no_partial_file(server, tmp_path):
    url = server.add("model.bin", BODY, mode="stall", stall_s=3.0)
    dest = tmp_path / "model.bin"
    with pytest.raises(WeightsUnavailableError):
        fetch_weights(url, dest, SHA, timeout_s=0.5, progress=False)
    assert _leftovers(tmp_path) == []


def test_interrupt_mid_download_leaves_no_partial_file(server, tmp_path, monkeypatch):
    """Ctrl-C while streaming: the exception propagates, the temp file goes."""

    class Exploding:
        def update(self, n: int) -> None:
            raise KeyboardInterrupt

        def close(self) -> None:
            pass

    monkeypatch.setattr(download, "_progress_bar", lambda *a, **k: Exploding())
    url = server.add("model.bin", BODY)
    dest = tmp_path / "model.bin"
    with pytest.raises(KeyboardInterrupt):
        fetch_weights(url, dest, SHA, progress=True)
    assert _leftovers(tmp_path) == []


def test_progress_bar_on_stderr(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(download, "_PROGRESS_MIN_BYTES", 0)
    url = server.add("model.bin", BODY)
    fetch_weights(url, tmp_path / "model.bin", SHA, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "model.bin" in captured.err


def test_mirror_and_file_urls(server, tmp_path):
    server.add("mirror/model.bin", BODY)
    dest = tmp_path / "a" / "model.bin"
    fetch_weights("https://example.invalid/some/dir/model.bin", dest, SHA, progress=False,
                  mirror=server.url("mirror/"))
    assert server.requests == ["/mirror/model.bin"]
    assert mirrored_url("https://h/x/y.bin", None) == "https://h/x/y.bin"
    assert mirrored_url("https://h/x/y.bin", "file:///srv/w/") == "file:///srv/w/y.bin"

    # file:// works too (a USB stick, an NFS share)
    dest2 = tmp_path / "b" / "model.bin"
    fetch_weights(dest.resolve().as_uri(), dest2, SHA, progress=False)
    assert dest2.read_bytes() == BODY
