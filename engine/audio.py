"""Any audio in, mono float32 out: sniffing, limits and decoding with the FFmpeg libraries.

Why FFmpeg: it reads every container people send (Discord voice messages are Ogg/Opus,
phones send m4a/aac, browsers webm).  Why in this process, through PyAV, rather than the
``ffmpeg`` program: starting that program costs ~57 ms, most of a 10-s note's decode.  What
the subprocess gave, a hang that can be killed, is kept as a deadline checked after every
packet plus FFmpeg's I/O interrupt; bytes are bounded (``max_bytes``) before FFmpeg sees them,
and only audio demuxers and local files are allowed (:data:`AUDIO_DEMUXERS`).  Bytes are
written to a temp file rather than streamed because MP4/M4A files often keep their index
(``moov``) at the end, which a stream cannot seek to.

The file extension is never trusted: the content is sniffed (magic bytes for the
obvious non-audio types, then FFmpeg's own demuxer probing for the real answer).
"""
from __future__ import annotations

import logging
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import av  # PyAV: the FFmpeg libraries in this process
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
#: Below this (Hz) a recording holds no music, only DC offset and rumble (handling noise,
#: wind, a cheap recorder's or a broken USB microphone's constant level); removed before
#: every level and silence decision, else a constant +0.25 reads as -12 dBFS of "signal".
HIGHPASS_HZ = 20.0
#: Level and silence decisions count only what is above this (Hz): where music and every
#: microphone live.  Below it a lossy codec fed a DC offset leaves low-frequency junk
#: (ffmpeg's AAC: -29 dBFS at 20-100 Hz from a constant +0.25) that is not signal.
ACTIVITY_HIGHPASS_HZ = 100.0
#: With a DC offset in the source, frames less than this far (dB) above the offset's own
#: level are silence: codecs turn an offset into broadband junk 28-44 dB below it (ffmpeg
#: AAC 64-128 kb/s, measured above ACTIVITY_HIGHPASS_HZ; mp3 leaves none).
DC_ARTEFACT_DB = 25.0
#: Codecs measured to leave such junk (ffmpeg names); mp3, Opus, FLAC and PCM leave none.
DC_JUNK_CODECS = frozenset({"aac"})
#: A mono mix this far (dB) below its louder channel means the channels cancel (a mono
#: source stored as stereo with one channel inverted): the louder channel is used instead
#: (more than two channels; two channels: :data:`POLARITY_MARGIN_DB`).
CANCELLING_MIX_DB = 20.0
#: Stereo whose side (L - R)/2 is this much (dB) louder than its mid (L + R)/2 has one channel's
#: polarity inverted: the side *is* the intended mono mix.  Measured on 144 real stereo tracks of
#: the dev corpora (first 60 s): mid over side 6.5 dB median, never below -1.5 dB; with the right
#: channel inverted, 85% of them have the side >= 2 dB louder (and are recovered exactly); at
#: 0 dB 2% of untouched tracks would switch, at 2 dB none (bench: docs/identification.md).
POLARITY_MARGIN_DB = 2.0

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
    #: container/codec as FFmpeg names them, e.g. "ogg/opus"
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


#: Leading bytes of audio containers: a file that starts like one and still cannot be opened
#: is a damaged or cut-off recording ("moov atom not found"), not some other kind of file.
_AUDIO_MAGIC: tuple[bytes, ...] = (
    b"OggS", b"RIFF", b"fLaC", b"ID3", b"\x1aE\xdf\xa3", b"FORM", b"caff", b"wvpk", b"MAC ",
    b"#!AMR", b".snd", b"0&\xb2u\x8ef\xcf\x11", b"RF64", b"TTA1", b"MPCK",
)
#: A damaged stream stops being decoded after this many undecodable packets in a row
#: (the ffmpeg command line skips such packets too; a file that is nothing but them is corrupt).
MAX_BAD_PACKETS = 50


@dataclass(frozen=True)
class RawDecode:
    """What the FFmpeg libraries made of a file, before any of our own processing."""

    #: (n, 2) float32, interleaved stereo at the requested rate (mono is duplicated)
    frames: np.ndarray
    #: container/codec as FFmpeg names them, e.g. "ogg/opus"
    source_format: str
    #: seconds of the source according to its container, when it says
    source_duration_s: float | None
    #: why decoding stopped before the end (a damaged tail), else None
    error: str | None


def _looks_like_audio_container(head: bytes) -> bool:
    if head.startswith(_AUDIO_MAGIC) or head[4:8] == b"ftyp":
        return True
    # an MPEG audio frame sync (mp3/mp2/aac ADTS): 11 set bits
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0


def _open_failure(exc: Exception, path: Path) -> Exception:
    """Map a failure to open ``path`` to the typed error a user understands."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        head = b""
    if _looks_like_audio_container(head):
        return CorruptAudioError(f"{path}: container recognised but unreadable: {exc}")
    return NotAudioError(f"{path}: no audio demuxer recognises it: {exc}")


def decode_stereo(path: Path, sample_rate: int, max_seconds: float, timeout_s: float) -> RawDecode:
    """Decode the first audio stream of ``path`` with the FFmpeg libraries, in this process.

    Why PyAV rather than the ``ffmpeg`` program: starting that process costs ~57 ms, most of a
    10-s voice note's decode (docs/performance.md); the libraries and the demuxer whitelist are
    the same.  Only local files are read (``protocol_whitelist=file``), only audio demuxers
    (:data:`AUDIO_DEMUXERS`).  The deadline is checked after every packet, and FFmpeg's own
    I/O interrupt (PyAV's ``timeout``) covers a read that blocks.  Resampling is FFmpeg's
    swresample, as the command line's ``-ar`` used.

    Raises :class:`NotAudioError`, :class:`CorruptAudioError` or :class:`DecodeTimeoutError`.
    """
    deadline = _clock() + timeout_s
    try:
        container = av.open(str(path), options={"protocol_whitelist": "file", "format_whitelist": AUDIO_DEMUXERS},
                            timeout=timeout_s)
    except av.error.ExitError as exc:  # FFmpeg's I/O interrupt: the read outlived ``timeout_s``
        raise DecodeTimeoutError(f"opening {path} did not finish within {timeout_s}s: {exc}") from exc
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise _open_failure(exc, path) from exc
    with container:
        if not container.streams.audio:
            kinds = [s.type for s in container.streams]
            raise NotAudioError(f"{path}: no audio stream (streams: {kinds or 'none'})")
        stream = container.streams.audio[0]
        if stream.codec_context is None:  # a codec this FFmpeg cannot decode
            raise CorruptAudioError(f"{path}: no decoder for its audio stream ({container.format.name})")
        fmt = f"{container.format.name}/{stream.codec_context.codec.canonical_name}"
        duration = container.duration / av.time_base if container.duration else None
        chunks, error = _decode_packets(container, stream, sample_rate, int(round(max_seconds * sample_rate)),
                                        deadline, path)
    frames = np.concatenate(chunks, axis=1).T if chunks else np.zeros((0, 2), np.float32)
    return RawDecode(np.ascontiguousarray(frames[: int(round(max_seconds * sample_rate))]), fmt, duration, error)


def _clock() -> float:
    """The decode deadline's clock (monotonic seconds); one name, so a test can make time jump."""
    return time.monotonic()


class _Stereo:
    """FFmpeg's swresample to planar float stereo at one rate, re-made when the input format changes.

    Why re-made: a chained Ogg or joined mp3s change rate or layout mid-stream, which one
    resampler refuses (PyAV's ValueError); the ``ffmpeg`` program reconfigures and goes on.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.chunks: list[np.ndarray] = []
        self.n = 0
        self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=sample_rate)
        #: the input format the resampler was set up for (PyAV passes frames already in the
        #: output format straight through and then checks nothing, so the change is caught here)
        self._input: tuple[str, str, int] | None = None

    def _keep(self, frames) -> None:
        for out in frames:
            self.chunks.append(out.to_ndarray().reshape(2, -1))
            self.n += self.chunks[-1].shape[1]

    def add(self, frame) -> None:
        fmt = (frame.format.name, frame.layout.name, int(frame.sample_rate))
        if self._input is not None and fmt != self._input:  # flush the old setup, start a new one
            self.flush()
            self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=self.sample_rate)
        self._input = fmt
        self._keep(self._resampler.resample(frame))

    def flush(self) -> None:
        self._keep(self._resampler.resample(None))


def _decode_packets(container, stream, sample_rate: int, limit: int, deadline: float,
                    path: Path) -> tuple[list[np.ndarray], str | None]:
    """Packets -> resampled (2, n) float32 chunks, up to ``limit`` samples; (chunks, why it stopped early).

    Raises :class:`DecodeTimeoutError` past ``deadline`` (checked after every packet, and when
    FFmpeg's I/O interrupt stops a read); any other FFmpeg error ends the decode early.
    """
    out = _Stereo(sample_rate)
    bad = 0
    try:
        for packet in container.demux(stream):
            if _clock() > deadline:
                raise DecodeTimeoutError(f"decoding {path} did not finish within the deadline; stopped")
            try:
                decoded = packet.decode()
                bad = 0
            except av.error.InvalidDataError as exc:
                bad += 1
                if bad >= MAX_BAD_PACKETS:
                    raise
                log.debug("skipping an undecodable packet of %s: %s", path, exc)
                continue
            for frame in decoded:
                out.add(frame)
            if out.n >= limit:
                return out.chunks, None
        out.flush()
    except av.error.ExitError as exc:
        raise DecodeTimeoutError(f"decoding {path} was interrupted at the deadline: {exc}") from exc
    except av.error.FFmpegError as exc:
        return out.chunks, str(exc)
    return out.chunks, None


def highpass(x: np.ndarray, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    """2nd-order Butterworth high-pass (scipy ``sosfilt``, causal) along the last axis, float32."""
    from scipy.signal import butter, sosfilt

    if x.shape[-1] == 0:
        return x.astype(np.float32)
    sos = butter(2, cutoff_hz, btype="highpass", fs=sample_rate, output="sos")
    return sosfilt(sos, x, axis=-1).astype(np.float32)


def remove_rumble(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Remove DC offset and sub-``HIGHPASS_HZ`` rumble from float32 mono ``samples`` (same shape).

    The mean is subtracted first (a large offset would otherwise ring through the filter's
    start), then a 2nd-order Butterworth high-pass (scipy ``sosfilt``, causal, ~15 ms per
    minute of audio at 16 kHz).  Music keeps everything above ~30 Hz unchanged.  Run once,
    on the mono signal (:func:`to_mono` decides from the channels' variance, which ignores DC).
    """
    if samples.size == 0:
        return samples
    return highpass(samples - np.float32(samples.mean(dtype=np.float64)), sample_rate, HIGHPASS_HZ)


def to_mono(channels: np.ndarray) -> np.ndarray:
    """Mono float32 (contiguous) of ``(n_channels, n_samples)`` audio; any layout, any DC.

    Usually the mean of the channels.  When that mix is more than ``CANCELLING_MIX_DB``
    below the louder channel, the channels cancel (one is the other inverted, or nearly):
    the mix would be silence while each channel holds full-level music, so the louder
    channel is returned.  Ordinary stereo music loses at most a few dB in the mix.  The
    decision uses the channels' variance (DC does not count) on every 8th sample.
    """
    if channels.shape[0] == 1:
        return np.ascontiguousarray(channels[0], dtype=np.float32)
    if channels.shape[0] == 2:
        return _stereo_to_mono(channels)
    sub = channels[:, ::8].astype(np.float64)
    power = sub.var(axis=1)
    loudest = int(np.argmax(power))
    mix_power = float(sub.mean(axis=0).var())
    if power[loudest] > 0 and mix_power < power[loudest] * 10 ** (-CANCELLING_MIX_DB / 10):
        log.info("channels cancel in the mono mix (%.0f dB below channel %d): using that channel",
                 10 * np.log10(power[loudest] / max(mix_power, 1e-30)), loudest)
        return np.ascontiguousarray(channels[loudest], dtype=np.float32)
    mix = channels[0].astype(np.float32)  # row by row: a strided mean over axis 0 is ~10x slower
    for row in channels[1:]:
        mix += row
    mix *= np.float32(1.0 / channels.shape[0])
    return mix


def _stereo_to_mono(channels: np.ndarray) -> np.ndarray:
    """The mid (L + R)/2, or the side (L - R)/2 when one channel's polarity is inverted.

    Why: a mix with its right channel inverted (a wiring or export mistake, issue 30) has
    as its "mid" the original's side signal, ~6.5 dB down and not the music's landmarks;
    its side is exactly the original mid.  A fully anti-phase pair (a mono source stored
    with one channel inverted) is the extreme case: the side is that source.  The test is
    the powers of mid and side on every 8th sample (variances: DC does not count), with
    :data:`POLARITY_MARGIN_DB` so ordinary wide stereo never switches.
    """
    left, right = channels[0].astype(np.float32), channels[1].astype(np.float32)
    sub_l, sub_r = left[::8].astype(np.float64), right[::8].astype(np.float64)
    mid_power, side_power = float(((sub_l + sub_r) / 2).var()), float(((sub_l - sub_r) / 2).var())
    if side_power > 0 and side_power >= mid_power * 10 ** (POLARITY_MARGIN_DB / 10):
        log.info("one channel's polarity is inverted (the side is %.1f dB above the mid): using the side",
                 10 * np.log10(side_power / max(mid_power, 1e-30)))
        out = left - right
    else:
        out = left + right
    out *= np.float32(0.5)
    return out


def frame_rms_db(samples: np.ndarray, sample_rate: int, frame_s: float = 0.05) -> np.ndarray:
    """RMS level in dBFS of consecutive non-overlapping frames."""
    n = max(1, int(sample_rate * frame_s))
    usable = len(samples) // n * n
    if usable == 0:
        return np.full(1, -120.0, dtype=np.float32)
    frames = samples[:usable].reshape(-1, n).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1) + 1e-20)
    return (20 * np.log10(rms)).astype(np.float32)


def silence_floor_db(dc_offset: float, codec: str) -> float:
    """Absolute level (dBFS) under which a frame is silence, given the source's DC offset.

    ``dc_offset``: the mean of the decoded mono signal (linear, +-1 full scale); ``codec``:
    the source's audio codec as ffmpeg names it.  ``SILENCE_DBFS``, except for a codec that
    turns a constant level into junk no high-pass removes (``DC_JUNK_CODECS``: AAC): then
    ``DC_ARTEFACT_DB`` under the offset's level.  Lossless, mp3 and Opus leave no junk, so
    quiet music recorded with an offset is never refused for it.
    """
    if codec not in DC_JUNK_CODECS:
        return SILENCE_DBFS
    dc_db = 20 * np.log10(abs(dc_offset) + 1e-12)
    return max(SILENCE_DBFS, float(dc_db) - DC_ARTEFACT_DB)


def loudness_gain_db(samples: np.ndarray, sample_rate: int,
                     floor_db: float = SILENCE_DBFS) -> tuple[float, float]:
    """``(gain in dB to TARGET_RMS_DBFS, active seconds)`` of :func:`normalise_loudness`, before any limiting.

    Separate so ``bench/pipeline_stages.py`` can apply the same gain without the limiter.
    """
    levels = frame_rms_db(samples, sample_rate)
    band = frame_rms_db(highpass(samples, sample_rate, ACTIVITY_HIGHPASS_HZ), sample_rate)
    loud = float(np.percentile(band, 95))
    active = band > max(floor_db, loud - RELATIVE_SILENCE_DB)
    if not active.any():
        return 0.0, 0.0
    power = np.mean(10 ** (levels[active].astype(np.float64) / 10.0))  # float32 overflows past 380 dB
    current_db = 10 * np.log10(power + 1e-20)
    return float(min(TARGET_RMS_DBFS - current_db, MAX_GAIN_DB)), float(active.sum()) * 0.05


def normalise_loudness(samples: np.ndarray, sample_rate: int,
                       floor_db: float = SILENCE_DBFS) -> tuple[np.ndarray, float]:
    """Scale so the active part sits at TARGET_RMS_DBFS; returns (audio, active seconds).

    ``samples``: float32 mono, DC already removed.  A 50-ms frame is active when its level
    above ``ACTIVITY_HIGHPASS_HZ`` is over ``floor_db`` (dBFS; see :func:`silence_floor_db`)
    and within ``RELATIVE_SILENCE_DB`` of the recording's loud part.  Why not EBU R128
    (ffmpeg's loudnorm): it needs two passes and costs more than the decode; for a model
    input an active-RMS target is what matters.  Peaks are soft limited to +-1 so a quiet
    recording with a loud click stays usable.
    """
    gain_db, active_seconds = loudness_gain_db(samples, sample_rate, floor_db)
    if active_seconds == 0.0:
        return samples, 0.0
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
                st = path.stat()
            except FileNotFoundError as exc:
                raise CorruptAudioError(f"no such file: {path}") from exc
            if stat.S_ISDIR(st.st_mode):
                raise NotAudioError(f"{path} is a directory")
            size = st.st_size
            if size == 0:
                raise EmptyAudioError(f"{path} is empty")
            if size > limits.max_bytes:
                raise TooLargeAudioError(f"{path}: {size} bytes > limit {limits.max_bytes}")
            try:
                with open(path, "rb") as fh:
                    what = sniff_not_audio(fh.read(4096))
            except OSError as exc:  # unreadable (permissions, a device): the user's file, not our bug
                raise CorruptAudioError(f"cannot read {path}: {exc}") from exc
            if what:
                raise NotAudioError(f"{path} is a {what}")

        raw = decode_stereo(path, sample_rate, limits.max_seconds, limits.timeout_s)
        samples, dc_offset = channels_to_mono(raw.frames, sample_rate)
        fmt, source_duration = raw.source_format, raw.source_duration_s
        if raw.error is not None:
            if samples.size < limits.min_signal_seconds * sample_rate:
                raise CorruptAudioError(f"{path} ({fmt}): {raw.error}")
            log.warning("partial decode of %s (%s), keeping %.1fs: %s", path, fmt,
                        samples.size / sample_rate, raw.error)
        if samples.size == 0:
            raise EmptyAudioError(f"no samples decoded from {path} ({fmt})")
        samples, active_s = normalise_loudness(samples, sample_rate,
                                               silence_floor_db(dc_offset, fmt.rsplit("/", 1)[-1]))
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


def from_samples(samples: np.ndarray, sample_rate: int, source_format: str) -> DecodedAudio:
    """Mono samples already in memory, prepared the way :func:`decode` prepares a file's.

    DC and rumble removed, loudness set (default silence floor: there is no codec);
    for self-queries and benchmarks that make recordings instead of decoding them.
    ``active_seconds`` tells the caller whether it holds enough signal.
    """
    x = remove_rumble(np.asarray(samples, np.float32), sample_rate)
    x, active = normalise_loudness(x, sample_rate)
    return DecodedAudio(x.astype(np.float32, copy=False), sample_rate, source_format, len(x) / sample_rate,
                        active, False)


def channels_to_mono(frames: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """(n, 2) float32 stereo from :func:`decode_stereo` -> (clean mono, the DC offset it had).

    Clean: finite, no cancelling channels (:func:`to_mono`), no DC or rumble
    (:func:`remove_rumble`, on the one mono signal: filtering once is what keeps a
    15-minute catalogue track cheap).  The offset (linear) sets the silence floor.
    """
    if frames.shape[0] == 0:
        return np.zeros(0, np.float32), 0.0
    if not np.all(np.isfinite(frames)):
        frames = np.nan_to_num(frames, nan=0.0, posinf=0.0, neginf=0.0)
    mono = to_mono(frames.T)
    dc = abs(float(mono.mean(dtype=np.float64)))
    return remove_rumble(mono, sample_rate), dc


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
