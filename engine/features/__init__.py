"""Feature backbones: frozen pretrained networks (or a plain front end) under one interface.

``make_backbone(settings)`` is the only place that maps a setting to a class, so
adding a backbone is one line here plus its module.  Imports are lazy: a query
process loads only the network it uses.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .base import Backbone

if TYPE_CHECKING:
    from ..settings import Settings

BACKBONES = ("musicnn", "openl3", "logmel")

log = logging.getLogger(__name__)


def similarity_companions(settings: Settings) -> tuple[str, ...]:
    """The musicnn models run beside MSD for the similarity descriptors: ``("MTT",)`` or none.

    ``SYNESTHETE_SIMILARITY_MODELS=msd+mtt`` (the default, issue 29) without MTT weights
    (neither in the ``musicnn`` wheel nor converted in the model cache) falls back to MSD
    alone, the plain vector, with one WARNING naming what is missing, instead of failing
    every build and query.  The model id then says MSD only, so an index built either way
    is never mixed with the other.
    """
    if settings.similarity_models != "msd+mtt":
        return ()
    from .musicnn import find_checkpoint

    cached = settings.resolved_model_cache_dir / "musicnn-mtt.pt"
    if find_checkpoint("MTT") is None and not cached.is_file():
        log.warning("SYNESTHETE_SIMILARITY_MODELS=msd+mtt, but the musicnn MTT weights are missing (no MTT "
                    "checkpoint in the musicnn wheel, no %s): similarity uses MSD alone", cached)
        return ()
    return ("MTT",)


def make_backbone(settings: Settings, name: str | None = None) -> Backbone:
    name = (name or settings.backbone).lower()
    cache = settings.resolved_model_cache_dir
    threads = settings.torch_threads
    if name in ("musicnn", "musicnn-msd"):
        from .musicnn import MusicnnBackbone

        return MusicnnBackbone(cache_dir=cache, dataset="MSD", threads=threads,
                               companions=similarity_companions(settings))
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
