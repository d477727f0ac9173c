"""Any audio in, mono float32 out: sniffing, limits and decoding with ffmpeg.

Why ffmpeg in a subprocess: it reads every container people send (Discord voice
messages are Ogg/Opus, phones send m4a/aac, browsers webm), and a subprocess can be
killed when a hostile or broken file makes it hang.  Bytes are written to a temp
file rather than piped because MP4/M4A files often keep their index (``moov``) at
the end, which a pipe cannot seek to.

The file extension is never trusted: the content is sniffed (magic bytes for the
obvious non-audio types, then ffmpeg's own demuxer probing for the real answer).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import ffmpeg  # ffmpeg-python: builds the command line
import numpy as np

from .errors import (
    CorruptAudioError,
    DecodeTimeoutError,
    EmptyAudioError,
    NotAudioError,
    TooLargeAudioError,
    TooShortAudioError,
)

log = logging.getLogger(__name__)

AudioSource = Union[bytes, bytearray, memoryview, str, os.PathLike]

#: Target loudness of the active (non-silent) part, dBFS RMS.  Models see the same
#: level whether the phone was close to the speaker or across the room.
TARGET_RMS_DBFS = -20.0
#: Frames quieter than this (dBFS RMS, 50 ms) always count as silence ...
SILENCE_DBFS = -70.0
#: ... and so do frames this far below the loud part of the same recording
#: (a quiet recording is still music; a hiss between two notes is not).
RELATIVE_SILENCE_DB = 40.0
#: Never amplify by more than this: a near-silent file must stay near-silent.
MAX_GAIN_DB = 50.0

# Signatures of common files that are certainly not audio.  ffprobe would also
# refuse most of them, but it happily "decodes" text as an ANSI-art video and
# images as one-frame videos; catching them here gives a precise error at once.
_NOT_AUDIO_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"%PDF", "PDF document"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x7fELF", "executable"),
    (b"MZ", "executable"),
    (b"\x1f\x8b", "gzip archive"),
    (b"BM", None),  # BMP only if the header is consistent; checked below
)


#: The only demuxers ffmpeg may use on a file we were sent.  Why: ffmpeg also reads
#: playlists and scripts (concat, HLS, ...) that make it open other files, pipes or URLs;
#: an upload that starts with an ID3 tag and then holds an ``ffconcat`` script would make
#: the server read its own files.  ``protocol_whitelist=file`` forbids network and pipes.
AUDIO_DEMUXERS = ",".join((
    "mp3", "ogg", "mov", "matroska", "webm", "wav", "w64", "flac", "aac", "asf", "aiff",
    "caf", "wv", "ape", "amr", "au", "tta", "mpc", "mpc8", "dsf", "loas", "latm", "ac3",
    "eac3", "dts", "truehd", "mp2", "opus", "spdif", "avi", "flv", "mpeg", "mpegts", "rm",
))


@dataclass(frozen=True)
class DecodedAudio:
    """Decoded, normalised mono audio."""

    samples: np.ndarray  # float32, mono
    sample_rate: int
    #: container/codec as ffprobe named them, e.g. "ogg/opus"
    source_format: str
    #: seconds of the source (before the ``max_seconds`` cut), when known
    source_duration_s: float | None
    #: seconds of non-silent signal
    active_seconds: float
    #: True when the file was longer than ``max_seconds`` and was cut
    truncated: bool

    @property
    def duration_s(self) -> float:
        return len(self.samples) / float(self.sample_rate)


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 25 * 1024 * 1024
    max_seconds: float = 60.0
    min_signal_seconds: float = 2.0
    timeout_s: float = 30.0


def sniff_not_audio(head: bytes) -> str | None:
    """Name of a certainly-non-audio type for these leading bytes, else None."""
    for magic, what in _NOT_AUDIO_MAGIC:
        if head.startswith(magic):
            if magic == b"BM":
                # BMP: "BM" + file size + reserved zeros; too short a magic on its own.
                if len(head) >= 10 and head[6:10] == b"\x00\x00\x00\x00":
                    return "BMP image"
                continue
            if magic == b"PK\x03\x04":
                return what
            return what
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"[", b"<") or stripped[:5].lower() == b"<!doc":
        try:
            stripped[:512].decode("utf-8")
            return "text document"
        except UnicodeDecodeError:
            return None
    # mostly printable ASCII with no NULs: a text file
    sample = head[:512]
    if sample and b"\x00" not in sample:
        printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in sample)
        if printable / len(sample) > 0.97 and not sample.startswith((b"ID3", b"OggS", b"RIFF", b"fLaC")):
            return "text document"
    return None


_INPUT_RE = re.compile(r"^Input #0, ([^,]+(?:,[^,]+)*?), from ", re.MULTILINE)
_DURATION_RE = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_AUDIO_STREAM_RE = re.compile(r"Stream #0:\d+[^:]*: Audio: ([A-Za-z0-9_]+)")


def _describe(stderr: str, path: Path) -> tuple[str, float | None]:
    """Container/codec and source duration, read from ffmpeg's own input report.

    Why not ffprobe: a second process launch costs ~50-100 ms per query, and the
    decoding ffmpeg prints the same facts on stderr at ``-v info``.
    """
    m_in = _INPUT_RE.search(stderr)
    m_audio = _AUDIO_STREAM_RE.search(stderr)
    fmt = f"{m_in.group(1) if m_in else '?'}/{m_audio.group(1) if m_audio else '?'}"
    duration = None
    m_dur = _DURATION_RE.search(stderr)
    if m_dur:
        h, m, sec = m_dur.groups()
        duration = int(h) * 3600 + int(m) * 60 + float(sec)
    return fmt, duration


def _classify_failure(stderr: str, path: Path) -> Exception:
    """Map ffmpeg's complaint to the typed error a user understands."""
    tail = stderr.strip()[-400:]
    if "matches no streams" in stderr or "does not contain any stream" in stderr:
        kinds = re.findall(r"Stream #0:\d+[^:]*: (\w+):", stderr)
        return NotAudioError(f"{path}: no audio stream (streams: {kinds or 'none'})")
    if "Invalid data found when processing input" in stderr and "Input #0" not in stderr:
        # A demuxer that recognised the container and then choked ("[mov,mp4,... @ 0x..]
        # moov atom not found") means a damaged or cut-off file; none at all: not audio.
        if re.search(r"^\[[\w,]+ @ 0x[0-9a-f]+\]", stderr, re.MULTILINE):
            return CorruptAudioError(f"{path}: container recognised but unreadable: {tail}")
        return NotAudioError(f"{path}: no demuxer recognises it: {tail}")
    return CorruptAudioError(f"{path}: {tail}")


def _run_ffmpeg(path: Path, sample_rate: int, max_seconds: float, timeout_s: float) -> tuple[bytes, str, int]:
    args = (
        ffmpeg.input(str(path), t=max_seconds, protocol_whitelist="file",
                     format_whitelist=AUDIO_DEMUXERS)
        .output("pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=sample_rate, map="0:a:0")
        .global_args("-nostdin", "-hide_banner", "-nostats", "-v", "info")
        .compile()
    )
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise DecodeTimeoutError(f"ffmpeg did not finish decoding {path} within {timeout_s}s; killed") from exc
    return out, err.decode("utf-8", "replace"), proc.returncode


def frame_rms_db(samples: np.ndarray, sample_rate: int, frame_s: float = 0.05) -> np.ndarray:
    """RMS level in dBFS of consecutive non-overlapping frames."""
    n = max(1, int(sample_rate * frame_s))
    usable = len(samples) // n * n
    if usable == 0:
        return np.full(1, -120.0, dtype=np.float32)
    frames = samples[:usable].reshape(-1, n).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1) + 1e-20)
    return (20 * np.log10(rms)).astype(np.float32)


def normalise_loudness(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """Scale so the active part sits at TARGET_RMS_DBFS; returns (audio, active seconds).

    Why not EBU R128 (ffmpeg's loudnorm): it needs two passes and costs more than the
    decode; for a model input an active-RMS target is what matters.  Peaks are soft
    limited to +-1 so a quiet recording with a loud click stays usable.
    """
    levels = frame_rms_db(samples, sample_rate)
    loud = float(np.percentile(levels, 95))
    active = levels > max(SILENCE_DBFS, loud - RELATIVE_SILENCE_DB)
    active_seconds = float(active.sum()) * 0.05
    if not active.any():
        return samples, 0.0
    power = np.mean(10 ** (levels[active] / 10.0))
    current_db = 10 * np.log10(power + 1e-20)
    gain_db = min(TARGET_RMS_DBFS - current_db, MAX_GAIN_DB)
    out = samples * np.float32(10 ** (gain_db / 20.0))
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 1.0:
        out = np.tanh(out).astype(np.float32)
    return out.astype(np.float32, copy=False), active_seconds


def decode(source: AudioSource, sample_rate: int, limits: DecodeLimits = DecodeLimits()) -> DecodedAudio:
    """Decode ``source`` (bytes or a path) to normalised mono float32 at ``sample_rate``.

    Raises one of the typed :class:`~engine.errors.AudioError` subclasses.
    """
    started = time.perf_counter()
    tmp: Path | None = None
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            if len(data) == 0:
                raise EmptyAudioError("zero bytes")
            if len(data) > limits.max_bytes:
                raise TooLargeAudioError(f"{len(data)} bytes > limit {limits.max_bytes}")
            what = sniff_not_audio(data[:4096])
            if what:
                raise NotAudioError(f"content is a {what}")
            fd, name = tempfile.mkstemp(prefix="synesthete-", suffix=".bin")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            path = tmp = Path(name)
        else:
            path = Path(source)
            try:
                size = path.stat().st_size
            except FileNotFoundError as exc:
                raise CorruptAudioError(f"no such file: {path}") from exc
            if size == 0:
                raise EmptyAudioError(f"{path} is empty")
            if size > limits.max_bytes:
                raise TooLargeAudioError(f"{path}: {size} bytes > limit {limits.max_bytes}")
            with open(path, "rb") as fh:
                what = sniff_not_audio(fh.read(4096))
            if what:
                raise NotAudioError(f"{path} is a {what}")

        raw, err, rc = _run_ffmpeg(path, sample_rate, limits.max_seconds, limits.timeout_s)
        samples = np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<f4").astype(np.float32)
        if rc != 0 and samples.size < limits.min_signal_seconds * sample_rate:
            raise _classify_failure(err, path)
        fmt, source_duration = _describe(err, path)
        if rc != 0:
            log.warning("partial decode of %s (%s), keeping %.1fs: %s", path, fmt,
                        samples.size / sample_rate, err.strip()[-200:])
        if samples.size == 0:
            raise EmptyAudioError(f"no samples decoded from {path} ({fmt})")
        if not np.all(np.isfinite(samples)):
            samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
        samples, active_s = normalise_loudness(samples, sample_rate)
        if active_s < limits.min_signal_seconds:
            raise TooShortAudioError(
                f"{active_s:.2f}s of signal in {samples.size / sample_rate:.2f}s decoded from {fmt}"
            )
        duration = samples.size / sample_rate
        truncated = source_duration is not None and source_duration > limits.max_seconds + 0.05
        log.debug("decoded %s: %s %.1fs in %.0f ms", path, fmt, duration,
                  (time.perf_counter() - started) * 1000)
        return DecodedAudio(samples, sample_rate, fmt, source_duration, active_s, truncated)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling (cheap and alias-free enough for features)."""
    if rate_in == rate_out:
        return samples
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate_in, rate_out)
    return resample_poly(samples, rate_out // g, rate_in // g).astype(np.float32)


def limits_from_settings(settings, *, for_catalogue: bool = False) -> DecodeLimits:
    """Query limits or (bigger) catalogue-track limits from the one settings object."""
    return DecodeLimits(
        max_bytes=settings.max_upload_bytes if not for_catalogue else max(settings.max_upload_bytes, 1 << 31),
        max_seconds=settings.max_track_seconds if for_catalogue else settings.max_query_seconds,
        min_signal_seconds=settings.min_signal_seconds,
        timeout_s=settings.decode_timeout_s * (10 if for_catalogue else 1),
    )
