"""``synesthete-index demo``: a working catalogue on a fresh Debian/Ubuntu box, no account anywhere.

Why game soundtracks from Debian: they are DFSG-free (redistributable, no
sign-up, no scraping), apt verifies them, and a few small packages hold dozens
of real, varied pieces of music.  The three chosen packages are the lightest
music holders (about 290 MB of downloads together); the files are indexed where
dpkg put them: ``<data_dir>/demo/audio/<track_id>.ogg`` are symlinks, so the
normal build matches them by track_id and nothing is copied.

Then a voice-message-like recording of one catalogue track is made
(``<data_dir>/demo/voice_note.ogg``) so ``synesthete query`` has something real
to listen to.  A rerun is fast: the CSV and links are rewritten identically and
the build is incremental.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import SynestheteError
from engine.fileio import atomic_write_bytes, atomic_write_text
from engine.settings import Settings

from .report import BuildReport

log = logging.getLogger(__name__)

AUDIO_EXT = (".ogg", ".opus", ".mp3", ".flac", ".wav")
#: shorter files are jingles and sound effects, not music
MIN_TRACK_S = 30.0
#: the demo indexes at most this much of each track (keeps the demo build short)
DEMO_MAX_TRACK_S = 300.0
VOICE_NOTE_S = 10.0
KAGGLE_COLUMNS = ["genre", "artist_name", "track_name", "track_id", "popularity", "duration_ms"]


class DemoUnavailableError(SynestheteError):
    kind = "demo_unavailable"
    user_message = "The demo catalogue needs apt (Debian/Ubuntu) to install free game soundtracks."


@dataclass(frozen=True)
class DemoPackage:
    package: str
    artist: str
    genre: str
    #: regex a path must match to be music (not sound effects / voices)
    music: str
    #: regex for alternate versions of another track in the same package
    exclude: str | None = None


#: the lightest Debian packages with real music (download sizes, Debian 12)
DEMO_PACKAGES: tuple[DemoPackage, ...] = (
    DemoPackage("colobot-common-sounds", "Colobot OST", "electronic", r"/music/"),  # 61 MB
    DemoPackage("warzone2100-music", "Warzone 2100 OST", "electronic", r"/music/",  # 86 MB
                exclude=r"/track3_enhanced\.opus$"),  # same piece as original_soundtrack/track3
    DemoPackage("hedgewars-data", "Hedgewars OST", "orchestral", r"/Data/Music/",  # 145 MB
                exclude=r"_sd\.ogg$"),  # "sudden death" variants of the themes
)


@dataclass(frozen=True)
class DemoTrack:
    track_id: str
    name: str
    artist: str
    genre: str
    path: Path
    duration_s: float
    package: str

    @property
    def popularity(self) -> int:
        """Stable 20..80, so the demo's name search has a popularity order to show."""
        return 20 + int(hashlib.blake2b(self.track_id.encode(), digest_size=2).hexdigest(), 16) % 61


@dataclass
class DemoResult:
    csv: Path
    audio_dir: Path
    voice_note: Path
    voice_note_track: DemoTrack
    tracks: list[DemoTrack]
    report: BuildReport


# ---- apt -------------------------------------------------------------------------


def _installed(pkg: str) -> bool:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True,
                             timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "install ok installed" in out


def ensure_packages(packages: Sequence[str], run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> list[str]:
    """Install the packages that are missing (waits for other apt/dpkg runs); returns what was installed."""
    missing = [p for p in packages if not _installed(p)]
    if not missing:
        return []
    if shutil.which("apt-get") is None:
        raise DemoUnavailableError(
            f"apt-get not found; cannot install {', '.join(missing)}",
            user_message=("The demo needs apt-get (Debian/Ubuntu) to install free game soundtracks "
                          f"({', '.join(missing)}); on another system build your own catalogue with "
                          "`synesthete-index build --audio DIR`."))
    sudo: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise DemoUnavailableError("not root and no sudo",
                                       user_message=f"Installing {', '.join(missing)} needs root or sudo.")
        sudo = ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    # progress, not a problem: the demo command already told the person about the download
    log.info("installing %s with apt-get (about 300 MB of downloads) ...", ", ".join(missing))
    for cmd in (sudo + ["apt-get", "update", "-qq", *lock],
                sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *lock, *missing]):
        res = run(cmd, env=env, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise DemoUnavailableError(
                f"{' '.join(cmd)} failed ({res.returncode}): {(res.stderr or '')[-500:]}",
                user_message=f"apt-get could not install {', '.join(missing)}; see the detail with -v.")
    return missing


def package_files(package: str) -> list[Path]:
    """Files a Debian package installed (``dpkg -L``)."""
    out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, timeout=60, check=False).stdout
    return [Path(line) for line in out.splitlines() if line.startswith("/")]


# ---- selection ---------------------------------------------------------------------


def candidate_files(pkg: DemoPackage, files: Iterable[Path]) -> list[Path]:
    """Music files of a package, sorted (the order everything else is derived from)."""
    music, exclude = re.compile(pkg.music), re.compile(pkg.exclude) if pkg.exclude else None
    out = []
    for f in files:
        s = f.as_posix()
        if f.suffix.lower() in AUDIO_EXT and music.search(s) and not (exclude and exclude.search(s)) and f.is_file():
            out.append(f)
    return sorted(out)


def probe_duration(path: Path) -> float | None:
    try:
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
                             capture_output=True, timeout=30, check=False).stdout
        return float(json.loads(out or b"{}")["format"]["duration"])
    except (OSError, subprocess.SubprocessError, KeyError, ValueError, TypeError):
        return None


def pretty_name(path: Path) -> str:
    """'arctic_breeze' -> 'Arctic Breeze', 'track17' -> 'Track 17'."""
    s = re.sub(r"[_\-.]+", " ", path.stem)
    s = re.sub(r"(?<=[a-z])(?=\d)", " ", s)
    return " ".join(w[:1].upper() + w[1:] for w in s.split()) or path.stem


def demo_track_id(package: str, path: Path) -> str:
    """Stable local id: the same package file gives the same id on every machine."""
    return "demo-" + hashlib.blake2b(f"{package}:{path.as_posix()}".encode(), digest_size=8).hexdigest()


def select_tracks(candidates: dict[DemoPackage, list[Path]], n_tracks: int,
                  duration: Callable[[Path], float | None] = probe_duration) -> list[DemoTrack]:
    """About ``n_tracks`` music tracks (>= 30 s), spread evenly over the packages and over
    each package's sorted file list; deterministic for the same files."""
    with ThreadPoolExecutor(max_workers=4) as ex:
        usable: dict[DemoPackage, list[tuple[Path, float]]] = {}
        for pkg, files in candidates.items():
            durs = list(ex.map(duration, files))
            usable[pkg] = [(f, d) for f, d in zip(files, durs) if d is not None and d >= MIN_TRACK_S]
    pkgs = [p for p in candidates if usable.get(p)]
    quota = {p: 0 for p in pkgs}
    left = max(0, n_tracks)
    while left > 0 and any(quota[p] < len(usable[p]) for p in pkgs):  # round-robin fill
        for p in pkgs:
            if left > 0 and quota[p] < len(usable[p]):
                quota[p] += 1
                left -= 1
    out: list[DemoTrack] = []
    for p in pkgs:
        files, q = usable[p], quota[p]
        picks = sorted({int(i * len(files) / q) for i in range(q)}) if q else []
        names: dict[str, int] = {}
        for i in picks:
            f, d = files[i]
            name = pretty_name(f)
            names[name] = names.get(name, 0) + 1
            if names[name] > 1:  # same file name in two folders (albums)
                name = f"{name} ({pretty_name(f.parent)})"
            out.append(DemoTrack(demo_track_id(p.package, f), name, p.artist, p.genre, f, d, p.package))
    return out


def write_csv(tracks: Sequence[DemoTrack], path: Path) -> bool:
    """Kaggle-layout CSV; returns whether the content changed.

    An unchanged file is not rewritten (its mtime stays, so a rerun stays incremental);
    a changed one is replaced atomically (:mod:`engine.fileio`).
    """
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(KAGGLE_COLUMNS)
    for t in tracks:
        w.writerow([t.genre, t.artist, t.name, t.track_id, t.popularity, int(round(t.duration_s * 1000))])
    new = buf.getvalue().encode("utf-8")
    changed = not path.exists() or path.read_bytes() != new
    if changed:
        atomic_write_bytes(path, new)
    return changed


def link_audio(tracks: Sequence[DemoTrack], audio_dir: Path) -> None:
    """``<track_id><ext>`` symlinks to the package files (the build matches on the id); stale links go."""
    audio_dir.mkdir(parents=True, exist_ok=True)
    want = {f"{t.track_id}{t.path.suffix.lower()}": t.path for t in tracks}
    for p in audio_dir.iterdir():
        if p.name not in want and p.is_symlink():
            p.unlink()
    for name, target in want.items():
        link = audio_dir / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)


# ---- the voice note ------------------------------------------------------------------


def _fallback_degrade(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Room reverb, 300-3400 Hz, noise at 10 dB SNR (used when index_builder.augment is absent)."""
    from scipy.signal import butter, fftconvolve, sosfilt

    n_ir = int(0.4 * sr)
    ir = rng.standard_normal(n_ir) * np.exp(-np.arange(n_ir) / (0.07 * sr))
    ir[0] = 3.0
    wet = fftconvolve(x, ir / np.sqrt(np.sum(ir**2)), mode="full")[: len(x)]
    nz = rng.standard_normal(len(wet))
    wet = wet + nz * np.sqrt(np.mean(wet**2) / 10 ** (10 / 10) / np.mean(nz**2))
    y = sosfilt(butter(4, [300, 3400], btype="band", fs=sr, output="sos"), wet)
    return (0.5 * y / (np.max(np.abs(y)) + 1e-9)).astype(np.float32)


def degrade_like_phone(x: np.ndarray, sr: int, seed: int = 7) -> np.ndarray:
    """A phone next to a speaker: reverb, phone band, noise at ~10 dB SNR (no codec here)."""
    rng = np.random.default_rng(seed)
    try:
        from .augment import DegradeParams, phone_degrade

        params = DegradeParams(shift_s=0.02, rt60_s=0.45, drr_db=4.0, noise_kind="babble", snr_db=10.0,
                               band_low_hz=300.0, band_high_hz=3400.0, band_order=4, tilt_db_per_oct=0.0,
                               gain_db=-6.0, drift_db=1.5, drift_period_s=5.0, opus_kbps=24,
                               opus_application="voip")
        return phone_degrade(x, sr, rng, opus=False, params=params)
    except (ImportError, TypeError) as exc:  # augment absent or its parameters changed
        log.info("index_builder.augment unusable (%s); using the demo's own degradation", exc)
        return _fallback_degrade(x, sr, rng)


def make_voice_note(track: DemoTrack, out: Path, settings: Settings, seconds: float = VOICE_NOTE_S) -> Path:
    """A ``seconds`` excerpt from a third into the track, degraded, as Ogg/Opus 24 kbit/s mono."""
    from engine.audio import decode, limits_from_settings

    sr = 16000
    audio = decode(track.path, sr, limits_from_settings(settings, for_catalogue=True)).samples
    start = int(min(max(0.0, len(audio) / sr / 3), max(0.0, len(audio) / sr - seconds)) * sr)
    x = degrade_like_phone(audio[start : start + int(seconds * sr)], sr)
    # encoded to stdout (a few tens of kB), then written atomically (engine.fileio)
    ogg = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "f32le", "-ar", str(sr), "-ac", "1",
                          "-i", "pipe:", "-c:a", "libopus", "-b:a", "24k", "-application", "voip", "-ac", "1",
                          "-f", "ogg", "pipe:1"], input=np.ascontiguousarray(x, "<f4").tobytes(), check=True,
                         capture_output=True, timeout=120).stdout
    atomic_write_bytes(out, ogg)
    return out


# ---- the whole demo -----------------------------------------------------------------------


def prepare_catalogue(demo_dir: Path, n_tracks: int, packages: Sequence[DemoPackage] = DEMO_PACKAGES,
                      files_for: Callable[[str], list[Path]] = package_files) -> tuple[list[DemoTrack], bool]:
    """Select tracks, write ``tracks.csv`` and the symlinks; returns (tracks, csv changed)."""
    candidates = {p: candidate_files(p, files_for(p.package)) for p in packages}
    tracks = select_tracks(candidates, n_tracks)
    if not tracks:
        raise DemoUnavailableError("no music files found in " + ", ".join(p.package for p in packages),
                                   user_message="The demo packages are installed but hold no music files.")
    changed = write_csv(tracks, demo_dir / "tracks.csv")
    link_audio(tracks, demo_dir / "audio")
    return tracks, changed


def run_demo(settings: Settings, n_tracks: int = 36, workers: int | None = None, progress: bool = False,
             packages: Sequence[DemoPackage] = DEMO_PACKAGES, install: bool = True,
             embedder: str | None = None) -> DemoResult:
    from .build import BuildOptions, run_build
    from .worker import DEFAULT_EMBEDDER

    demo_dir = Path(settings.data_dir) / "demo"
    if install:
        ensure_packages([p.package for p in packages])
    tracks, changed = prepare_catalogue(demo_dir, n_tracks, packages)
    log.info("demo catalogue: %d tracks from %d packages", len(tracks), len({t.package for t in tracks}))
    build_settings = settings.replace(max_track_seconds=min(settings.max_track_seconds, DEMO_MAX_TRACK_S))
    report = run_build(build_settings, BuildOptions(
        csv=demo_dir / "tracks.csv", audio=demo_dir / "audio", not_spotify=True, workers=workers,
        progress=progress, use_tags=False, embedder=embedder or DEFAULT_EMBEDDER))
    # the voice note: the longest of the first package's tracks (deterministic)
    chosen = max(tracks[: max(1, len(tracks) // max(1, len(packages)))], key=lambda t: (t.duration_s, t.track_id))
    note = demo_dir / "voice_note.ogg"
    marker = demo_dir / "voice_note.track"
    if changed or not note.exists() or not marker.exists() or marker.read_text().strip() != chosen.track_id:
        make_voice_note(chosen, note, settings)
        atomic_write_text(marker, chosen.track_id + "\n")
    return DemoResult(demo_dir / "tracks.csv", demo_dir / "audio", note, chosen, tracks, report)
