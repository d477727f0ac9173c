"""Shared fixtures: generated audio on disk and a settings object in a temp data dir."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.settings import Settings
from tests import audiogen


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    """Settings isolated in a temp data dir; the model cache is shared per session for speed."""
    cache = Path(__file__).resolve().parent.parent / ".pytest_cache" / "models"
    return Settings(data_dir=tmp_path / "data", model_cache_dir=cache, workers=2)


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audio")


@pytest.fixture(scope="session")
def song_mp3(audio_dir: Path) -> Path:
    return audiogen.encode(audiogen.synthetic_track(7, 20.0), audio_dir / "song.mp3")
