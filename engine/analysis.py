"""Tempo and key of a piece of audio, estimated by Essentia (MTG, Universitat Pompeu Fabra).

Why Essentia: it is the well-kept reference implementation of both estimators used
here, so the project writes no beat tracker or key profile of its own:
- tempo: ``PercivalBpmEstimator`` (Percival & Tzanetakis 2014, "Streamlined tempo
  estimation based on autocorrelation and cross-correlation with pulses");
- key: ``KeyExtractor`` with its default profile (HPCP chroma correlated with key
  profiles; Gómez 2006).
Both only serve the *reasons* shown with an answer (``engine.reasons``), never the
ranking, so an estimate that fails is simply left out ("never a reason the data
cannot back").
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

_quiet_once = threading.Lock()
_quieted = False
#: below this key strength (0..1) the key is a guess (white noise reached 0.77 here): not shown
MIN_KEY_STRENGTH = 0.8
#: shorter audio gives no tempo or key (the estimators need a few bars)
MIN_SECONDS = 6.0


@dataclass(frozen=True)
class RhythmKey:
    bpm: float | None  # beats per minute, None when not estimated
    key: str | None  # e.g. "A minor", None when not estimated or not clear


def _essentia():
    """Import Essentia with its INFO/WARNING console output switched off (once per process)."""
    global _quieted
    import essentia

    with _quiet_once:
        if not _quieted:  # before essentia.standard, whose import logs at INFO
            essentia.log.infoActive = False
            essentia.log.warningActive = False
            _quieted = True
    import essentia.standard as es

    return es


def rhythm_and_key(samples: np.ndarray, sample_rate: int) -> RhythmKey:
    """Tempo (BPM) and key of mono float32 audio; ``RhythmKey(None, None)`` when unsure or on error.

    Cost: about 0.1-0.2 CPU-s per 30 s of audio at 16 kHz.
    """
    x = np.ascontiguousarray(samples, dtype=np.float32)
    if len(x) < MIN_SECONDS * sample_rate or not np.any(x):
        return RhythmKey(None, None)
    try:
        es = _essentia()
        bpm = float(es.PercivalBpmEstimator(sampleRate=sample_rate)(x))
        key, scale, strength = es.KeyExtractor(sampleRate=sample_rate)(x)
    except Exception:  # noqa: BLE001 - an estimate is optional; the answer must not fail for it
        log.debug("tempo/key estimation failed", exc_info=True)
        return RhythmKey(None, None)
    return RhythmKey(round(bpm, 1) if 30.0 <= bpm <= 300.0 else None,
                     f"{key} {scale}" if strength >= MIN_KEY_STRENGTH else None)
