"""Fetch pretrained weights once, verify them, and cache them atomically.

Why this module exists: a backbone's ``model_id`` is part of every index
collection's identity, so the bytes behind it must be exactly the published ones.
A half-written file, a captive-portal HTML page or a silently re-uploaded release
would otherwise give a *different* model under the *same* id and quietly poison
the index.  So every download is

* streamed to a temporary file in the destination directory (same file system,
  so the final :func:`os.replace` is atomic and readers never see a partial file),
* checked against a pinned digest before it is moved into place,
* removed on *any* failure, including ``KeyboardInterrupt``

(all but the digest check is :func:`engine.fileio.atomic_open`, the project's one
atomic-write helper).

Two kinds of pin are accepted:

``sha256``
    the usual content hash;
``git_blob_sha1``
    the git object id of the file (``sha1(b"blob <size>\\0" + content)``), which is
    what a git host publishes for every committed file.  Some weights (e.g. the
    torchopenl3 ones) are only published as files in a git repository with no
    separate checksum; pinning the git blob id of a commit-pinned URL still gives an
    immutable, verifiable reference.

Every failure is a :class:`~engine.errors.WeightsUnavailableError` whose detail names
the URL, the expected path and how to place the file by hand (the machines that
build this project, for instance, cannot reach GitHub at all).
"""

from __future__ import annotations

import hashlib
import logging
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from engine.errors import WeightsUnavailableError
from engine.fileio import atomic_open

log = logging.getLogger(__name__)

__all__ = ["FileDigests", "fetch_weights", "file_digests", "mirrored_url"]

_CHUNK = 1 << 20  # 1 MiB
#: Below this size a progress bar is only noise.
_PROGRESS_MIN_BYTES = 4 << 20
_USER_AGENT = "synesthete-weights-fetcher/1"


@dataclass(frozen=True)
class FileDigests:
    """Digests of one file, computed in a single pass (weights files are tens of MB)."""

    sha256: str
    git_blob_sha1: str
    size: int


def file_digests(path: Path) -> FileDigests:
    """sha256 and git blob sha1 of ``path``, reading it once."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(f"blob {size}\0".encode("ascii"), usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha256.update(chunk)
            blob.update(chunk)
    return FileDigests(sha256.hexdigest(), blob.hexdigest(), size)


def mirrored_url(url: str, mirror: str | None) -> str:
    """``url`` re-rooted at ``mirror`` (keeping only the file name), or ``url`` itself.

    Why only the file name: a mirror is typically a flat directory (an internal HTTP
    server, an S3 bucket, a ``file://`` share) holding the same files; the pinned
    digests still guard that it really serves the same bytes.
    """
    if not mirror:
        return url
    name = Path(urllib.parse.urlparse(url).path).name
    return mirror.rstrip("/") + "/" + urllib.parse.quote(name)


def _mismatches(d: FileDigests, sha256: str | None, git_blob_sha1: str | None) -> list[str]:
    problems = []
    if sha256 and d.sha256 != sha256.lower():
        problems.append(f"sha256 {d.sha256} != expected {sha256.lower()}")
    if git_blob_sha1 and d.git_blob_sha1 != git_blob_sha1.lower():
        problems.append(f"git blob sha1 {d.git_blob_sha1} != expected {git_blob_sha1.lower()}")
    return problems


def _manual_hint(url: str, dest: Path, sha256: str | None, git_blob_sha1: str | None) -> str:
    pins = []
    if sha256:
        pins.append(f"sha256 {sha256.lower()}")
    if git_blob_sha1:
        pins.append(f"git blob sha1 {git_blob_sha1.lower()} (check with `git hash-object FILE`)")
    return (
        f"To install it by hand, download {url} on a machine with internet access and copy "
        f"it to {dest} (it must match {' and '.join(pins)}); or serve it from a mirror."
    )


def fetch_weights(
    url: str,
    dest: Path,
    sha256: str | None,
    *,
    git_blob_sha1: str | None = None,
    timeout_s: float = 60,
    progress: bool = True,
    mirror: str | None = None,
) -> Path:
    """Return ``dest``, downloading ``url`` into it first unless a verified copy is there.

    ``sha256`` and/or ``git_blob_sha1`` pin the content; at least one is required so
    an unverified file can never enter the cache.  ``mirror`` (a base URL, e.g. an
    internal server or ``file:///srv/weights``) replaces the host and directory of
    ``url``.  ``timeout_s`` bounds each network operation (connect and every read),
    so a stalled server fails instead of hanging a worker forever.

    Raises :class:`WeightsUnavailableError` when the file cannot be obtained or does
    not match its pin; nothing is left behind in ``dest``'s directory then.
    """
    if not sha256 and not git_blob_sha1:
        raise ValueError("fetch_weights needs a pinned sha256 or git_blob_sha1")
    dest = Path(dest)
    source = mirrored_url(url, mirror)

    if dest.is_file():
        problems = _mismatches(file_digests(dest), sha256, git_blob_sha1)
        if not problems:
            log.debug("weights cache hit: %s", dest)
            return dest
        log.warning("cached weights %s do not match their pin (%s); downloading again",
                    dest, "; ".join(problems))

    hint = _manual_hint(source, dest, sha256, git_blob_sha1)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsUnavailableError(f"cannot create {dest.parent}: {exc}. {hint}") from exc

    # Any failure, Ctrl-C included, leaves neither a partial nor an unverified file (engine.fileio).
    with atomic_open(dest) as out:
        _download(source, out, dest, timeout_s, progress, hint)
        out.flush()
        problems = _mismatches(file_digests(Path(out.name)), sha256, git_blob_sha1)
        if problems:
            raise WeightsUnavailableError(
                f"downloaded {source} but it does not match the pinned checksum "
                f"({'; '.join(problems)}); refusing to install it as {dest}. {hint}"
            )
    log.info("installed weights %s from %s", dest, source)
    return dest


def _download(url: str, out, dest: Path, timeout_s: float, progress: bool, hint: str) -> None:
    """Stream ``url`` into ``out``; turn every transport problem into one clear error."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    log.info("downloading %s -> %s", url, dest)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            got = 0
            bar = _progress_bar(total, dest.name, progress)
            try:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    got += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
            # http.client does not raise on a short body when read in chunks, so check.
            if total is not None and got != total:
                raise WeightsUnavailableError(
                    f"download of {url} was cut off after {got} of {total} bytes. {hint}"
                )
    except WeightsUnavailableError:
        raise
    except urllib.error.HTTPError as exc:
        raise WeightsUnavailableError(
            f"could not download {url}: HTTP {exc.code} {exc.reason}. {hint}"
        ) from exc
    except urllib.error.URLError as exc:
        raise WeightsUnavailableError(
            f"could not reach {url} (offline or blocked?): {exc.reason}. {hint}"
        ) from exc
    except (TimeoutError, ConnectionError, OSError, ValueError) as exc:
        # OSError covers socket timeouts mid-body and http.client errors (IncompleteRead
        # is an HTTPException, handled below); ValueError covers malformed URLs.
        raise WeightsUnavailableError(f"download of {url} failed: {exc!r}. {hint}") from exc
    except Exception as exc:  # http.client.HTTPException and friends
        raise WeightsUnavailableError(f"download of {url} failed: {exc!r}. {hint}") from exc


def _progress_bar(total: int | None, name: str, enabled: bool):
    """A tqdm bar on stderr for long downloads; ``None`` when it would only be noise."""
    if not enabled or (total is not None and total < _PROGRESS_MIN_BYTES):
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency, but a missing bar must not break a download
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                file=sys.stderr, leave=False, mininterval=0.5)
