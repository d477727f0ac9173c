"""A small real catalogue, built once per session, and the web app over the real engine.

Real ffmpeg, real milvus-lite, real fingerprints, the real index builder; only the
backbone is the weight-free log-mel one so building takes seconds.  Everything is
written under pytest's tmp dir (never into the repository).
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.service import SynestheteService
from engine.settings import Settings
from tests import audiogen

SR = 16000
TRACK_SECONDS = 24.0
#: (name, artist, genre); ids are 22 characters like real Spotify ids, so links are /track/ links
TRACKS = [
    ("Neon Harbor", "The Glass Owls", "Electronic"),
    ("Paper Lanterns", "Mira Solace", "Pop"),
    ("Copper Rain", "Dust & Diesel", "Rock"),
    ("Velvet Static", "Lo Orbit", "Indie"),
    ("Midnight Ferry", "The Glass Owls", "Electronic"),
    ("Saltwater Hymn", "June Marrow", "Folk"),
    ("Gravity Waltz", "Cello Noir", "Classical"),
    ("Blue Transit", "Kite Theory", "Jazz"),
    ("Ember Parade", "Mira Solace", "Pop"),
    ("Hollow Engines", "Dust & Diesel", "Rock"),
]


def track_id(i: int) -> str:
    return f"SynTrack{i:02d}".ljust(22, "x")


@pytest.fixture(scope="session")
def web_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The catalogue audio + CSV, and a few query recordings of catalogue track 3."""
    root = tmp_path_factory.mktemp("webcorpus")
    audio = root / "audio"
    audio.mkdir()
    rows = ["genre,artist_name,track_name,track_id,popularity,duration_ms"]
    for i, (name, artist, genre) in enumerate(TRACKS):
        rows.append(f'{genre},"{artist}",{name},{track_id(i)},{50 + i},{int(TRACK_SECONDS * 1000)}')
        audiogen.encode(audiogen.synthetic_track(100 + i, TRACK_SECONDS, sr=SR), audio / f"{track_id(i)}.ogg", sr=SR)
    csv = root / "tracks.csv"
    csv.write_text("\n".join(rows) + "\n")
    song = audiogen.synthetic_track(100 + 3, TRACK_SECONDS, sr=SR)
    excerpt = audiogen.phone_degrade(song[int(6 * SR): int(16 * SR)], sr=SR, snr_db=20.0, seed=1)
    q = root / "queries"
    q.mkdir()
    return {
        "root": root, "csv": csv, "audio": audio, "song": song, "excerpt": excerpt,
        "query_ogg": audiogen.encode(excerpt, q / "voice.ogg", sr=SR, codec_args=["-c:a", "libopus", "-b:a", "24k"]),
        "query_webm": audiogen.encode(excerpt, q / "browser.webm", sr=SR, codec_args=["-c:a", "libopus"]),
        "query_wav": audiogen.encode(excerpt, q / "mic.wav", sr=SR, codec_args=["-c:a", "pcm_s16le"]),
        "expected_id": track_id(3),
    }


@pytest.fixture(scope="session")
def web_settings(web_corpus: dict, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    from index_builder.build import BuildOptions, run_build

    data = tmp_path_factory.mktemp("webdata")
    settings = Settings(data_dir=data, model_cache_dir=data / "models", backbone="logmel", workers=2,
                        web_record_seconds=6.0, web_live_interval_s=1.0)
    report = run_build(settings, BuildOptions(csv=web_corpus["csv"], audio=web_corpus["audio"], workers=1,
                                              use_tags=False, batch_size=4))
    assert report.indexed == len(TRACKS), report
    return settings


@pytest.fixture(scope="session")
def web_service(web_settings: Settings):
    service = SynestheteService(web_settings)
    assert service.about()["indexed_tracks"] == len(TRACKS)
    yield service
    service.close()


@pytest.fixture()
def service(web_service: SynestheteService) -> SynestheteService:
    # the async slot semaphore belongs to one event loop; each test has its own loop
    web_service._async_slots = None
    return web_service


def silence_with_blip(seconds: float = 0.5) -> np.ndarray:
    return audiogen.tone(440.0, seconds, sr=SR)
