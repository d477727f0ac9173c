"""What every heavy ``synesthete-index`` command does first: settings, logging, torch threads."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from engine.settings import Settings


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from env/.env, ``--data-dir`` applied; logging on; torch threads as configured."""
    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env(env_file=getattr(args, "env_file", ".env"))
    if getattr(args, "data_dir", None):
        settings = settings.replace(data_dir=Path(args.data_dir))
    if settings.torch_threads > 0:
        torch.set_num_threads(settings.torch_threads)
    return settings
