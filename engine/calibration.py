"""The identification calibration on disk: one JSON file beside the index, checked when read.

``<data_dir>/identify_calibration.json`` is written by ``index_builder.calibrate`` at the
end of a build (atomically, :mod:`engine.fileio`) and read by every query process.
What it holds is an :class:`engine.identify.Calibration` (a logistic model of the
evidence) plus where it came from.  A calibration is only used when it fits the index it
is read with; otherwise identification falls back to the conservative uncalibrated rule
(:func:`engine.identify.safe_rule`), and :func:`load_calibration` says why in one sentence
that ``about`` shows:

* no file: the catalogue was too small to calibrate, or the index predates calibration;
* a file that is not valid JSON or lacks a field (half-written by hand, truncated copy);
* another landmark version, or another embedding model, than the index's;
* a catalogue that has grown past twice the size it was calibrated at (the chance level
  of a wrong match grows with the catalogue; rebuild or ``synesthete-index calibrate``).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .fileio import atomic_write_text
from .identify import FEATURES, Calibration

log = logging.getLogger(__name__)

#: Bumped when the file's layout or the meaning of :data:`engine.identify.FEATURES` changes.
CALIBRATION_VERSION = 3
#: A calibration stops applying once the catalogue has grown past this factor of its size.
MAX_GROWTH = 2.0


@dataclass(frozen=True)
class CalibrationStatus:
    """What was loaded (None: the safe rule answers) and one sentence for ``about`` and the log."""

    calibration: Calibration | None
    message: str

    def about(self) -> dict[str, Any]:
        c = self.calibration
        out: dict[str, Any] = {"calibrated": c is not None, "status": self.message}
        if c is not None:
            out.update({k: c.info[k] for k in ("tracks", "queries", "fitted_at") if k in c.info})
            measured = c.info.get("measured")
            if isinstance(measured, dict):
                out["held_out"] = held_out_text(measured)
        return out


_KIND = re.compile(r"^([a-z]+?)(\d+(?:\.\d+)?)$")
_KIND_WORDS = {"phone": "phone-like", "clean": "clean"}


def kind_text(kind: str) -> str:
    """A self-query kind as a person reads it: ``"phone3"`` -> ``"phone-like 3 s"``; unknown shapes unchanged."""
    m = _KIND.match(kind)
    return f"{_KIND_WORDS.get(m.group(1), m.group(1))} {m.group(2)} s" if m else kind


def held_out_text(measured: dict[str, Any]) -> list[str]:
    """The calibration's held-out figures (on tracks held out of the fit) as one sentence per recording kind.

    ``measured``: :func:`index_builder.calibrate.held_out`'s dict, ``{kind: {"n", "says_right",
    "says_wrong", "says_unknown", ...}}`` (shares 0..1).  Why words: ``about`` showed
    ``phone3 right 0.62 wrong 0.0 unknown 0.0278``, which nobody outside this code can read.
    Each part says what share of held-out recordings of that kind got the right song named,
    a wrong catalogue song named, and, for a song the catalogue lacks, another song named.
    """
    def pct(x: Any) -> str:
        return f"{100 * float(x):.1f}%" if _number(x) else "?"

    def order(kind: str) -> tuple[str, float]:  # "phone3" before "phone10"
        m = _KIND.match(kind)
        return (m.group(1), float(m.group(2))) if m else (kind, 0.0)

    parts = []
    for kind, m in sorted(measured.items(), key=lambda kv: order(kv[0])):
        if not isinstance(m, dict):
            continue
        parts.append(f"{kind_text(kind)}: right song named {pct(m.get('says_right'))}, "
                     f"wrong song {pct(m.get('says_wrong'))}, a song it lacks named as another "
                     f"{pct(m.get('says_unknown'))}" + (f" (n={m['n']})" if isinstance(m.get("n"), int) else ""))
    return parts


def calibration_to_dict(c: Calibration) -> dict[str, Any]:
    return {"version": CALIBRATION_VERSION, "features": list(c.features), "weights": list(c.weights),
            "bias": c.bias, "mean": list(c.mean), "scale": list(c.scale), "iso_x": list(c.iso_x),
            "iso_y": list(c.iso_y), "info": c.info}


def save_calibration(path: Path, c: Calibration) -> None:
    """Write atomically: a reader sees the old calibration or the new one, never half of it."""
    atomic_write_text(path, json.dumps(calibration_to_dict(c), indent=1, sort_keys=True) + "\n")


def _number(x: Any) -> bool:
    """A finite JSON number (not a bool, which Python counts as an int)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def calibration_from_dict(d: dict[str, Any]) -> Calibration:
    """Raises ValueError (with what is wrong) for anything but a whole, finite calibration."""
    if not isinstance(d, dict) or d.get("version") != CALIBRATION_VERSION:
        raise ValueError(f"calibration version {d.get('version') if isinstance(d, dict) else None!r}, "
                         f"this engine reads {CALIBRATION_VERSION}")
    if tuple(d.get("features", ())) != FEATURES:
        raise ValueError("calibration features differ from this engine's")
    n = len(FEATURES)
    vecs = {}
    for key in ("weights", "mean", "scale"):
        v = d.get(key)
        if not isinstance(v, list) or len(v) != n or not all(_number(x) for x in v):
            raise ValueError(f"calibration field {key!r} is not {n} finite numbers")
        vecs[key] = tuple(float(x) for x in v)
    if any(s <= 0 for s in vecs["scale"]):
        raise ValueError("calibration scale must be positive")
    bias = d.get("bias")
    if not _number(bias):
        raise ValueError("calibration bias is not a finite number")
    iso_x, iso_y = d.get("iso_x", []), d.get("iso_y", [])
    if not (isinstance(iso_x, list) and isinstance(iso_y, list) and len(iso_x) == len(iso_y)
            and all(_number(v) for v in iso_x + iso_y)
            and all(a <= b for a, b in zip(iso_x, iso_x[1:])) and all(a <= b for a, b in zip(iso_y, iso_y[1:]))
            and all(0.0 <= v <= 1.0 for v in iso_y)):
        raise ValueError("calibration map (iso_x, iso_y) is not two increasing lists of the same length")
    info = d.get("info") if isinstance(d.get("info"), dict) else {}
    return Calibration(vecs["weights"], float(bias), vecs["mean"], vecs["scale"], FEATURES, info,
                       tuple(float(v) for v in iso_x), tuple(float(v) for v in iso_y))


def load_calibration(path: Path, *, landmark_version: int, model_id: str | None, n_tracks: int,
                     lookup: str | None = None) -> CalibrationStatus:
    """The calibration at ``path`` if it fits this index (``n_tracks`` fingerprinted), else why not.

    Never raises for a bad file: identification goes on with the safe rule, and the
    reason is logged (WARNING for a damaged or mismatched file, INFO for none).
    """
    safe = "uncalibrated: the safe rule answers (landmark margin >= 0.5 only)"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"{safe}; no calibration (a catalogue too small to calibrate, or an index built before calibration)"
        log.info("identification %s", msg)
        return CalibrationStatus(None, msg)
    except OSError as exc:
        return _refused(f"{safe}; the calibration file cannot be read ({exc.strerror or exc})")
    except UnicodeDecodeError:
        return _refused(f"{safe}; the calibration file is damaged (not text): run `synesthete-index calibrate`")
    try:
        c = calibration_from_dict(json.loads(text))
    except (ValueError, TypeError) as exc:
        return _refused(f"{safe}; the calibration file is damaged ({exc}): run `synesthete-index calibrate`")
    return _fits(c, safe, landmark_version=landmark_version, model_id=model_id, n_tracks=n_tracks, lookup=lookup)


def _fits(c: Calibration, safe: str, *, landmark_version: int, model_id: str | None, n_tracks: int,
          lookup: str | None) -> CalibrationStatus:
    """The loaded calibration if it belongs to this index, else the safe rule and why."""
    info = c.info
    if lookup is not None and info.get("lookup") not in (None, lookup):
        return _refused(f"{safe}; the calibration was fitted on another landmark lookup ({info.get('lookup')}; "
                        f"this index uses {lookup}): run `synesthete-index calibrate`")
    if info.get("landmark_version") != landmark_version:
        return _refused(f"{safe}; the calibration is for landmark version {info.get('landmark_version')}, "
                        f"the index uses {landmark_version}: run `synesthete-index calibrate`")
    if model_id is not None and info.get("model_id") not in (None, model_id):
        return _refused(f"{safe}; the calibration was fitted with another model: run `synesthete-index calibrate`")
    fitted = info.get("tracks")
    if not isinstance(fitted, int) or isinstance(fitted, bool) or fitted <= 0:
        return _refused(f"{safe}; the calibration file is damaged (no track count): run `synesthete-index calibrate`")
    if n_tracks > MAX_GROWTH * fitted:
        return _refused(f"{safe}; the catalogue has {n_tracks} fingerprinted tracks, the calibration was fitted "
                        f"at {fitted}: run `synesthete-index calibrate`")
    return CalibrationStatus(c, f"calibrated on {info.get('queries', '?')} degraded self-queries of {fitted} tracks")


def _refused(msg: str) -> CalibrationStatus:
    log.warning("identification %s", msg)
    return CalibrationStatus(None, msg)


__all__ = ["CALIBRATION_VERSION", "CalibrationStatus", "calibration_from_dict", "calibration_to_dict",
           "load_calibration", "save_calibration"]
