"""Decoding through the real ffmpeg: every container people send, every bad-input class."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from engine import audio
from engine.audio import DecodeLimits, decode
from engine.errors import (
    CorruptAudioError,
    DecodeTimeoutError,
    EmptyAudioError,
    NotAudioError,
    TooLargeAudioError,
    TooShortAudioError,
)
from tests import audiogen

FORMATS = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
    "ogg": ["-c:a", "libopus", "-b:a", "24k"],  # a Discord voice message
    "m4a": ["-c:a", "aac"],
    "wav": [],
    "flac": [],
    "webm": ["-c:a", "libopus"],
    "mp4": ["-c:a", "aac"],
}


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    return audiogen.synthetic_track(3, 12.0)


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_decodes_every_container_to_mono_float32(tmp_path: Path, music: np.ndarray, ext: str) -> None:
    path = audiogen.encode(music, tmp_path / f"clip.{ext}", codec_args=FORMATS[ext])
    for source in (path, path.read_bytes()):
        out = decode(source, 16000)
        assert out.samples.dtype == np.float32 and out.samples.ndim == 1
        assert out.sample_rate == 16000
        assert abs(out.duration_s - 12.0) < 0.15
        assert not out.truncated
        # loudness-normalised: active RMS near the target
        rms_db = 20 * np.log10(np.sqrt(np.mean(out.samples**2)))
        assert -24 < rms_db < -16


def test_extension_is_not_trusted(tmp_path: Path, music: np.ndarray) -> None:
    ogg = audiogen.encode(music, tmp_path / "voice.ogg", codec_args=FORMATS["ogg"])
    disguised = tmp_path / "voice.mp3"
    shutil.copy(ogg, disguised)
    assert "opus" in decode(disguised, 16000).source_format
    text = tmp_path / "notes.mp3"
    text.write_text("these are not the droids you are looking for\n" * 20)
    with pytest.raises(NotAudioError):
        decode(text, 16000)


def test_stereo_and_other_rates_are_downmixed(tmp_path: Path) -> None:
    left = audiogen.tone(440, 5.0, 48000)
    right = audiogen.tone(660, 5.0, 48000)
    inter = np.stack([left, right], axis=1).reshape(-1)
    path = tmp_path / "stereo.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", "48000", "-ac", "2", "-i", "pipe:", str(path)],
                   input=inter.astype("<f4").tobytes(), check=True)
    out = decode(path, 16000)
    spectrum = np.abs(np.fft.rfft(out.samples))
    freqs = np.fft.rfftfreq(len(out.samples), 1 / 16000)
    peaks = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert abs(peaks[0] - 440) < 2 and abs(peaks[1] - 660) < 2


def _encode_stereo(left: np.ndarray, right: np.ndarray, path: Path, codec_args: list[str] | None = None) -> Path:
    inter = np.stack([left, right], axis=1).reshape(-1)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(audiogen.SR), "-ac", "2", "-i", "pipe:",
                    *(codec_args or []), str(path)], input=inter.astype("<f4").tobytes(), check=True)
    return path


@pytest.mark.parametrize("codec", [[], FORMATS["mp3"], FORMATS["m4a"], ["-c:a", "aac", "-b:a", "64k"]])
def test_silence_with_a_dc_offset_is_silence(tmp_path: Path, codec: list[str]) -> None:
    """A constant level, or -75 dBFS hiss riding on +0.25 or -0.1, is no signal: refused as silent."""
    n = audiogen.SR * 8
    hiss = np.random.default_rng(0).standard_normal(n).astype(np.float32) * 10 ** (-75 / 20)
    ext = {"libmp3lame": "mp3", "aac": "m4a"}.get(codec[1] if codec else "", "wav")
    for i, x in enumerate((np.full(n, 0.25, np.float32), 0.25 + hiss, hiss - 0.1)):
        path = audiogen.encode(x, tmp_path / f"dc{i}.{ext}", codec_args=codec)
        with pytest.raises(TooShortAudioError):
            decode(path, 16000)


@pytest.mark.parametrize("ext", ["wav", "m4a"])
def test_music_with_a_dc_offset_is_kept_without_the_offset(tmp_path: Path, music: np.ndarray, ext: str) -> None:
    out = decode(audiogen.encode(music * 0.5 + 0.3, tmp_path / f"dc_music.{ext}", codec_args=FORMATS[ext]), 16000)
    assert abs(float(out.samples.mean())) < 1e-3
    assert abs(out.duration_s - 12.0) < 0.15 and out.active_seconds > 10.0


@pytest.mark.parametrize("ext", ["wav", "m4a"])
def test_stereo_whose_channels_cancel_uses_one_channel(tmp_path: Path, music: np.ndarray, ext: str) -> None:
    """A mono source stored with one channel inverted: the mix is silence, each channel is music."""
    path = _encode_stereo(music, -music, tmp_path / f"cancel.{ext}", FORMATS[ext])
    out = decode(path, 16000)
    assert abs(out.duration_s - 12.0) < 0.15 and out.active_seconds > 10.0
    reference = decode(audiogen.encode(music, tmp_path / "mono.wav"), 16000).samples
    n = min(len(reference), len(out.samples))
    assert abs(np.corrcoef(reference[:n], out.samples[:n])[0, 1]) > 0.95


def test_to_mono_mixes_ordinary_stereo_and_recovers_an_inverted_channel() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 1000)).astype(np.float32)
    assert np.allclose(audio.to_mono(np.stack([a, b])), (a + b) / 2)  # uncorrelated: mid and side alike
    assert np.allclose(audio.to_mono(np.stack([0.5 * a, -0.45 * a])), 0.475 * a)  # anti-phase: the side
    assert np.allclose(audio.to_mono(np.stack([a, 0 * a])), a / 2)  # one silent channel: still a mix
    # issue 30: a real-like mix (a centre-panned source + a little width) with its right channel inverted
    centre, width = rng.standard_normal((2, 4000)).astype(np.float32)
    left, right = centre + 0.3 * width, centre - 0.3 * width
    assert np.allclose(audio.to_mono(np.stack([left, right])), centre, atol=1e-5)
    assert np.allclose(audio.to_mono(np.stack([left, -right])), centre, atol=1e-5)  # the mix it was
    assert np.allclose(audio.to_mono(np.stack([-left, right])), -centre, atol=1e-5)  # polarity: no matter
    three = np.stack([0.5 * a, -0.45 * a, 0 * a])  # more channels: the louder of cancelling ones
    assert np.allclose(audio.to_mono(three), 0.5 * a)


def test_a_mix_with_one_channel_inverted_is_identified_like_the_original(tmp_path: Path, music: np.ndarray) -> None:
    """Regression (issue 30): ffmpeg's pan=stereo|c0=c0|c1=-1*c1 on a mix; its mono mix lands ~6.5 dB down."""
    from engine.fingerprint.landmarks import extract_landmarks

    rng = np.random.default_rng(7)
    side = np.convolve(rng.standard_normal(len(music)), np.ones(8) / 8, "same").astype(np.float32) * 0.2
    mix = _encode_stereo(music + side, music - side, tmp_path / "mix.wav", FORMATS["wav"])
    flipped = tmp_path / "flipped.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(mix), "-af", "pan=stereo|c0=c0|c1=-1*c1", str(flipped)],
                   check=True)
    ref, got = decode(mix, 16000).samples, decode(flipped, 16000).samples
    n = min(len(ref), len(got))
    assert np.corrcoef(ref[:n], got[:n])[0, 1] > 0.99
    h_ref, _ = extract_landmarks(ref, 16000)
    h_got, _ = extract_landmarks(got, 16000)
    assert len(set(h_ref.tolist()) & set(h_got.tolist())) > 0.8 * len(set(h_ref.tolist()))


def test_empty(tmp_path: Path) -> None:
    with pytest.raises(EmptyAudioError):
        decode(b"", 16000)
    p = tmp_path / "zero.ogg"
    p.write_bytes(b"")
    with pytest.raises(EmptyAudioError):
        decode(p, 16000)


@pytest.mark.parametrize("payload,what", [
    (b"\x89PNG\r\n\x1a\n" + bytes(200), "PNG"),
    (b"%PDF-1.7\n" + b"x" * 300, "PDF"),
    (b"<html><body>hi</body></html>" * 10, "text"),
    (b'{"json": true}' * 20, "text"),
    (b"PK\x03\x04" + bytes(300), "ZIP"),
])
def test_not_audio_by_content(payload: bytes, what: str) -> None:
    with pytest.raises(NotAudioError) as info:
        decode(payload, 16000)
    assert info.value.user_message.startswith("That file doesn't look like audio")


def test_random_bytes_are_not_audio() -> None:
    noise = np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    with pytest.raises((NotAudioError, CorruptAudioError)):
        decode(noise, 16000)


def test_video_without_audio_is_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "video.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=3:size=64x64:rate=5",
                    "-c:v", "mpeg4", str(path)], check=True)
    with pytest.raises(NotAudioError):
        decode(path, 16000)


def test_truncated_m4a_is_corrupt(tmp_path: Path, music: np.ndarray) -> None:
    path = audiogen.encode(music, tmp_path / "clip.m4a", codec_args=FORMATS["m4a"])
    data = path.read_bytes()
    with pytest.raises(CorruptAudioError) as info:
        decode(data[: len(data) // 3], 16000)
    assert "damaged" in info.value.user_message


def test_truncated_mp3_keeps_what_decodes(tmp_path: Path, music: np.ndarray) -> None:
    data = audiogen.encode(music, tmp_path / "clip.mp3").read_bytes()
    out = decode(data[: len(data) // 2], 16000)
    assert 4.0 < out.duration_s < 8.0


def test_silent_and_too_short(tmp_path: Path) -> None:
    silent = audiogen.encode(np.zeros(44100 * 8, np.float32), tmp_path / "silent.wav")
    with pytest.raises(TooShortAudioError):
        decode(silent, 16000)
    short = audiogen.encode(audiogen.tone(440, 1.0), tmp_path / "short.ogg", codec_args=FORMATS["ogg"])
    with pytest.raises(TooShortAudioError):
        decode(short, 16000)
    # 1 s of sound inside 10 s of silence is still too little signal
    x = np.zeros(44100 * 10, np.float32)
    x[44100:88200] = audiogen.tone(440, 1.0)
    with pytest.raises(TooShortAudioError):
        decode(audiogen.encode(x, tmp_path / "blip.wav"), 16000)


def test_quiet_recording_is_normalised_not_refused(tmp_path: Path, music: np.ndarray) -> None:
    quiet = audiogen.encode(music * 0.003, tmp_path / "quiet.wav")
    out = decode(quiet, 16000)
    assert 20 * np.log10(np.sqrt(np.mean(out.samples**2))) > -24


def test_too_large(tmp_path: Path, music: np.ndarray) -> None:
    path = audiogen.encode(music, tmp_path / "clip.wav")
    limits = DecodeLimits(max_bytes=10_000)
    with pytest.raises(TooLargeAudioError):
        decode(path, 16000, limits)
    with pytest.raises(TooLargeAudioError):
        decode(path.read_bytes(), 16000, limits)


def test_too_long_is_cut_at_max_seconds(tmp_path: Path) -> None:
    long = audiogen.encode(audiogen.synthetic_track(5, 40.0, sr=16000), tmp_path / "long.ogg", sr=16000,
                           codec_args=FORMATS["ogg"])
    out = decode(long, 16000, DecodeLimits(max_seconds=15.0))
    assert abs(out.duration_s - 15.0) < 0.1
    assert out.truncated


def test_a_decode_past_its_deadline_stops_with_a_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline is checked between packets: a decode that runs past it stops (simulated with
    a clock that jumps 10 s at every packet of a real 40-s file) and says why."""
    long = audiogen.encode(audiogen.synthetic_track(5, 40.0, sr=16000), tmp_path / "long.ogg", sr=16000,
                           codec_args=FORMATS["ogg"])
    assert decode(long, 16000, DecodeLimits(timeout_s=5.0)).duration_s > 39  # a real clock: in time
    ticks = iter(range(0, 10_000, 10))
    monkeypatch.setattr(audio, "_clock", lambda: float(next(ticks)))
    with pytest.raises(DecodeTimeoutError) as info:
        decode(long, 16000, DecodeLimits(timeout_s=25.0))
    assert "deadline" in str(info.value)


def test_a_stream_whose_rate_changes_midway_is_decoded_whole(tmp_path: Path) -> None:
    """Two mp3 files at 44.1 and 22.05 kHz joined byte by byte (as a careless concatenation makes
    them): the resampler is re-made at the change instead of refusing the rest."""
    a = audiogen.encode(audiogen.synthetic_track(6, 6.0), tmp_path / "a.mp3")
    b = audiogen.encode(audiogen.synthetic_track(7, 6.0, sr=22050), tmp_path / "b.mp3", sr=22050)
    out = decode(a.read_bytes() + b.read_bytes(), 16000)
    assert 11.0 < out.duration_s < 12.5


def test_a_format_change_after_frames_that_needed_no_resampling_is_caught(tmp_path: Path) -> None:
    """Stereo mp3 at 16 kHz decodes to exactly the output format (PyAV then passes frames through
    unchecked); a mono 22.05-kHz part joined after it must still be resampled, not reshaped."""
    a = audiogen.encode(audiogen.synthetic_track(8, 6.0, sr=16000), tmp_path / "a.mp3", sr=16000,
                        codec_args=["-ac", "2"])
    b = audiogen.encode(audiogen.synthetic_track(9, 6.0, sr=22050), tmp_path / "b.mp3", sr=22050)
    out = decode(a.read_bytes() + b.read_bytes(), 16000)
    assert 11.0 < out.duration_s < 12.5


def test_a_damaged_stream_keeps_its_good_part_and_a_hopeless_one_is_corrupt(tmp_path: Path, music: np.ndarray) -> None:
    """Bytes overwritten in the middle of an mp3: the undecodable packets are skipped, as the ffmpeg
    command line skips them; a file that is an mp3 header and then noise is damaged, not 'not audio'."""
    data = bytearray(audiogen.encode(music, tmp_path / "clip.mp3").read_bytes())
    mid = len(data) // 2
    data[mid:mid + 4000] = np.random.default_rng(2).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    out = decode(bytes(data), 16000)
    assert out.duration_s > 8.0
    noise = np.random.default_rng(3).integers(0, 256, 60_000, dtype=np.uint8).tobytes()
    with pytest.raises((CorruptAudioError, TooShortAudioError)):
        decode(bytes(data[:10]) + noise, 16000)


def test_every_error_has_one_friendly_sentence() -> None:
    for cls in (NotAudioError, CorruptAudioError, EmptyAudioError, TooShortAudioError, TooLargeAudioError,
                DecodeTimeoutError):
        msg = cls("detail").user_message
        assert msg.endswith(".") and msg.count(". ") == 0 and "detail" not in msg


def test_resample_roundtrip() -> None:
    x = audiogen.tone(440, 2.0, 16000)
    y = audio.resample(x, 16000, 8000)
    assert len(y) == 16000


def test_playlists_and_scripts_cannot_make_ffmpeg_read_other_files(tmp_path: Path, music: np.ndarray) -> None:
    """An 'mp3' that is an ID3 tag + an ffconcat script naming a local file is refused."""
    secret = audiogen.encode(music, tmp_path / "secret.wav")
    script = f"ffconcat version 1.0\nfile '{secret}'\n".encode()
    id3 = b"ID3\x04\x00\x00\x00\x00\x00\x00"  # empty ID3v2 header: ffmpeg skips it and probes on
    with pytest.raises((NotAudioError, CorruptAudioError)):
        decode(id3 + script, 16000)
    m3u = tmp_path / "list.m3u8"
    m3u.write_text(f"#EXTM3U\n#EXTINF:10,\n{secret}\n")
    with pytest.raises((NotAudioError, CorruptAudioError)):
        decode(m3u, 16000)


@pytest.mark.parametrize("ext", ["wav", "mp3"])
def test_quiet_music_with_a_dc_offset_is_kept(tmp_path: Path, music: np.ndarray, ext: str) -> None:
    """Only AAC turns an offset into junk; elsewhere a quiet recording with an offset is still music."""
    quiet = music / np.sqrt(np.mean(music ** 2)) * 10 ** (-50 / 20)
    out = decode(audiogen.encode(quiet + 0.1, tmp_path / f"q.{ext}", codec_args=FORMATS[ext]), 16000)
    assert out.active_seconds > 10.0


def test_stereo_with_one_channel_stuck_at_a_level_keeps_the_music(tmp_path: Path, music: np.ndarray) -> None:
    level = music / np.sqrt(np.mean(music ** 2)) * 10 ** (-30 / 20)
    out = decode(_encode_stereo(level, np.full_like(level, 0.5), tmp_path / "stuck.wav"), 16000)
    assert out.active_seconds > 10.0


def test_absurdly_loud_float_samples_are_normalised_not_zeroed(tmp_path: Path, music: np.ndarray) -> None:
    path = tmp_path / "loud.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(audiogen.SR), "-ac", "1", "-i", "pipe:",
                    "-c:a", "pcm_f32le", str(path)], input=(music * 1e19).astype("<f4").tobytes(), check=True)
    out = decode(path, 16000)
    assert -24 < 20 * np.log10(np.sqrt(np.mean(out.samples.astype(np.float64) ** 2))) < -16


def test_a_directory_is_not_audio(tmp_path: Path) -> None:
    with pytest.raises(NotAudioError):
        decode(tmp_path, 16000)
