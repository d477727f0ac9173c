"""What of an engine answer goes out over HTTP.

``Track.to_dict`` carries ``audio_path``, the catalogue file's location on the
server: useful to the CLI, none of a web visitor's business.  Every answer the
web adapter sends passes through here.
"""

from __future__ import annotations

from typing import Any

PRIVATE_FIELDS = ("audio_path",)


def public_track(d: dict[str, Any] | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {k: v for k, v in d.items() if k not in PRIVATE_FIELDS}


def public_answer(rec: Any) -> dict[str, Any]:
    """``Recommendation.to_dict()`` without server-side details."""
    d = rec.to_dict()
    d["identified"] = public_track(d.get("identified"))
    d["might_be"] = public_track(d.get("might_be"))
    d["seed"] = public_track(d.get("seed"))
    d["results"] = [public_track(t) for t in d.get("results", [])]
    return d
