"""Feature backbones: frozen pretrained networks (or a plain front end) under one interface.

``make_backbone(settings)`` is the only place that maps a setting to a class, so
adding a backbone is one line here plus its module.  Imports are lazy: a query
process loads only the network it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Backbone

if TYPE_CHECKING:
    from ..settings import Settings

BACKBONES = ("musicnn", "openl3", "logmel")


def make_backbone(settings: Settings, name: str | None = None) -> Backbone:
    name = (name or settings.backbone).lower()
    cache = settings.resolved_model_cache_dir
    threads = settings.torch_threads
    if name in ("musicnn", "musicnn-msd"):
        from .musicnn import MusicnnBackbone

        companions = ("MTT",) if settings.similarity_models == "msd+mtt" else ()
        return MusicnnBackbone(cache_dir=cache, dataset="MSD", threads=threads, companions=companions)
    if name == "musicnn-mtt":
        from .musicnn import MusicnnBackbone

        return MusicnnBackbone(cache_dir=cache, dataset="MTT", threads=threads)
    if name.startswith("openl3"):
        from .openl3 import OpenL3Backbone

        repr_ = "mel128" if name.endswith("mel128") else "mel256"
        return OpenL3Backbone(cache_dir=cache, input_repr=repr_, threads=threads)
    if name == "logmel":
        from .logmel import LogMelBackbone

        return LogMelBackbone()
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


__all__ = ["BACKBONES", "Backbone", "make_backbone"]
