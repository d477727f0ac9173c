"""Start-up steps shared by the long-running front ends (``synesthete-bot``, ``synesthete-web``).

Both read the settings the same way and, when the engine cannot open, must tell the
operator the same thing: one sentence, the detail, and what to do next.  Keeping it
here means the bot and the web page cannot drift apart in what a missing index or a
bad setting prints.  These helpers print (they run in a CLI) and return ``None`` on
failure, so a caller turns that into its exit status.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .errors import ModelError, StoreError, SynestheteError
from .settings import Settings

if TYPE_CHECKING:
    from .service import SynestheteService

BUILD_HINT = ("Build the catalogue first: synesthete-index build --csv tracks.csv --audio DIR "
              "(or synesthete-index demo), then start again.")
MODEL_HINT = "Check SYNESTHETE_BACKBONE and the model cache (see README)."


def load_settings(prog: str, env_file: str | None) -> Settings | None:
    """Settings from the environment and ``env_file``; prints the problem and returns None if invalid."""
    try:
        return Settings.from_env(env_file=env_file)
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return None


def open_service(prog: str, settings: Settings) -> SynestheteService | None:
    """The engine over an existing index; prints what to do and returns None if it cannot open."""
    from .service import SynestheteService

    try:
        return SynestheteService(settings)
    except SynestheteError as exc:
        hint = BUILD_HINT if isinstance(exc, StoreError) else MODEL_HINT if isinstance(exc, ModelError) else ""
        print(f"{prog}: {exc.user_message}\n  detail: {exc}\n  {hint}".rstrip(), file=sys.stderr)
        return None
