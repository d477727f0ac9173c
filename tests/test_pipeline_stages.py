"""bench/pipeline_stages.py: the five decodes it compares, on a real file through ffmpeg and librosa."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from engine.audio import decode, limits_from_settings
from engine.settings import Settings
from tests import audiogen

ROOT = Path(__file__).resolve().parent.parent


def _module():
    spec = importlib.util.spec_from_file_location("pipeline_stages", ROOT / "bench" / "pipeline_stages.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_patches_are_evenly_spread_and_never_overlap() -> None:
    ps = _module()
    assert ps._patch_starts(10 * 16000, 24).tolist() == [0, 48000, 96000]  # 3 whole patches fit
    starts = ps._patch_starts(600 * 16000, 24)
    assert len(starts) == 24 and starts[0] == 0 and np.all(np.diff(starts) >= 3 * 16000)


def test_the_five_decodes_add_one_stage_each(tmp_path: Path) -> None:
    """The last variant is exactly the product's decode; the level stage is its gain without the limiter."""
    ps = _module()
    src = audiogen.encode(audiogen.synthetic_track(7, 12.0) * 0.1, tmp_path / "quiet.mp3")
    limits = limits_from_settings(Settings(data_dir=tmp_path), for_catalogue=True)
    v = ps._variants(src, limits)
    assert list(v) == list(ps.VARIANTS)
    np.testing.assert_array_equal(v["product decode"], decode(src, 16000, limits).samples)
    rms = {k: float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) for k, x in v.items()}
    assert rms["+ level (no limiter)"] > 2 * rms["ffmpeg + mono/rumble"]  # a quiet file is raised to the target
    assert abs(len(v["librosa"]) - len(v["ffmpeg"])) < 0.05 * 16000
