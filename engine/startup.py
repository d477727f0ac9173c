"""One start-up for the four console scripts (``synesthete``, ``synesthete-index``,
``synesthete-bot``, ``synesthete-web``).

Why one: each reads the same settings (``--env-file`` under the real environment), must
refuse a bad setting with one line naming it (never a traceback), and must end with the
same exit codes: 0 done, 2 the user's input or configuration is wrong (exit code
``EXIT_USER_ERROR``), 1 something failed on our side (``EXIT_INTERNAL``), 130 interrupted.
An engine error reaches the terminal as its one friendly sentence, the detail with
``--verbose`` and in the log.  :func:`run_console` wraps a script's body in all of that;
:func:`open_service` is the engine's start-up for the long-running front ends.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import SynestheteError
from .settings import Settings

if TYPE_CHECKING:
    from .service import SynestheteService

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

#: Error kinds that are our side's failure (exit 1); every other engine error is about the
#: user's input, configuration or index (exit 2), which they can fix.
INTERNAL_KINDS = frozenset({"internal", "model", "weights_unavailable", "store", "store_unavailable", "busy",
                            "query_timeout", "timeout", "engine_unavailable"})

BUILD_HINT = ("build it first: synesthete-index build --csv tracks.csv --audio DIR "
              "(or synesthete-index demo), then start again.")
REBUILD_HINT = "Rebuild it: synesthete-index build --csv tracks.csv --audio DIR --rebuild (or synesthete-index demo)."
MODEL_HINT = "Check SYNESTHETE_BACKBONE and the model cache (see README)."

#: Third-party loggers that talk at INFO during normal use; shown only with DEBUG.
NOISY_LOGGERS = ("faiss", "faiss.loader", "milvus_lite", "pymilvus", "urllib3", "numba", "h5py", "filelock")

log = logging.getLogger("synesthete")


def command_path(name: str) -> str:
    """How a person can type console script ``name`` from the current directory.

    The bare name when it is on ``PATH`` and resolves to this installation's script; else the
    script's path (relative to the working directory when under it, e.g.
    ``.venv/bin/synesthete``).  Why: the demo's "try next" said ``synesthete query ...``,
    which a fresh clone's shell does not find (the venv is not activated).
    """
    import shutil
    import sysconfig

    script = Path(sysconfig.get_path("scripts")) / name
    found = shutil.which(name)
    if found is not None and Path(found).resolve() == script.resolve():
        return name
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def holder_of(data_dir: Path) -> str:
    """Who holds the index in ``data_dir``, as words: the engine its engine.json names, a build, or unknown.

    For the "held by another process" line (issue 30): naming the holder tells the person
    what to stop, or that they can ask the running engine instead.
    """
    import json

    try:
        info = json.loads((Path(data_dir) / "engine.json").read_text())
        os.kill(int(info["pid"]), 0)
        return f"an engine serving {info['url']} (pid {int(info['pid'])})"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        pid = int((Path(data_dir) / "build.lock").read_text().split()[0])
        os.kill(pid, 0)
        return f"an index build (pid {pid})"
    except (OSError, ValueError, IndexError):
        return "another process (an engine, the bot or a build)"


#: the console scripts that ask a running engine (SYNESTHETE_ENGINE_URL) instead of opening the index
ASKS_AN_ENGINE = ("synesthete", "synesthete-bot")


def hint_for(exc: SynestheteError, settings: Settings | None, prog: str = "") -> str:
    """The line after an error's sentence that says what to do (one place for every console script)."""
    kind = exc.kind
    if kind == "empty_index":
        return BUILD_HINT
    if kind == "model_mismatch":
        return REBUILD_HINT
    if kind in ("model", "weights_unavailable"):
        return MODEL_HINT
    if kind == "store_locked":
        who = holder_of(settings.data_dir) if settings is not None else "another process"
        if prog in ASKS_AN_ENGINE:
            return (f"held by {who}: stop it, or let this command ask the running engine "
                    "(SYNESTHETE_ENGINE_URL=http://host:port).")
        return f"held by {who}: stop it first."
    return ""


def closed_pipe() -> int:
    """The reader of our output went away (``synesthete search x | head``): stop quietly, exit 0.

    Not a failure on our side (exit 1 said so): the person got all they read.  Python's
    advice for SIGPIPE: point stdout at devnull so the interpreter's final flush cannot raise
    again ("Exception ignored ... BrokenPipeError").  Exit 0 as ``head`` leaves the pipeline's
    status to the last command, like most Unix filters that ignore SIGPIPE.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a replaced stdout (tests) has no file descriptor
        pass
    return EXIT_OK


def exit_code(exc: SynestheteError) -> int:
    """``EXIT_INTERNAL`` for our side's failures, ``EXIT_USER_ERROR`` for everything a user can fix."""
    return EXIT_INTERNAL if exc.kind in INTERNAL_KINDS else EXIT_USER_ERROR


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--env-file`` and ``-v/--verbose``: the options every console script has."""
    parser.add_argument("--env-file", default=None,
                        help="settings file read under the real environment (default: .env when present)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and show error details")


def setup_logging(level: int) -> None:
    """Our log lines on stderr at ``level``; third-party chatter only at DEBUG."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    quiet_noisy_loggers(level)


def quiet_noisy_loggers(level: int) -> None:
    """Keep ``NOISY_LOGGERS`` at WARNING unless ``level`` is DEBUG (for a front end's own log setup).

    gRPC's C core (under pymilvus) prints on its own, e.g. "GOAWAY ... too_many_pings" when
    milvus-lite answers the client's keep-alive pings; it reads ``GRPC_VERBOSITY`` once, when
    grpc is first imported, which is why this runs before the engine is opened.  Its real
    failures still reach us as exceptions (engine.store maps them).  An operator's own
    ``GRPC_VERBOSITY`` wins.
    """
    os.environ.setdefault("GRPC_VERBOSITY", "DEBUG" if level <= logging.DEBUG else "NONE")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)
    # pymilvus logs every failed RPC at ERROR with a traceback (60 in one 4-minute outage, issue 30);
    # engine.store maps each failure to one typed error and its breaker logs one line per state change
    logging.getLogger("pymilvus").setLevel(logging.DEBUG if level <= logging.DEBUG else logging.CRITICAL)


def run_console(prog: str, parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace, Settings], int | None],
                argv: Sequence[str] | None = None, *,
                overrides: Callable[[argparse.Namespace], dict] | None = None,
                logging_setup: Callable[[argparse.Namespace, Settings], None] | None = None) -> int:
    """Parse ``argv``, load and validate settings, run ``body(args, settings)``; returns the exit code.

    ``overrides(args)`` gives settings fields set by flags (e.g. ``--data-dir``), validated
    like the environment's.  ``logging_setup`` replaces :func:`setup_logging` (the bot uses
    discord.py's).  A bad setting, an engine error, Ctrl-C or an unexpected exception each
    end in one line on stderr and their exit code; the traceback goes to the log.
    """
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    env_file = getattr(args, "env_file", None)
    if env_file is not None and not Path(env_file).exists():  # /dev/null: no settings file at all
        print(f"{prog}: --env-file {env_file}: no such file", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        settings = Settings.from_env(env_file=env_file or ".env")
        if overrides is not None and (changes := {k: v for k, v in overrides(args).items() if v is not None}):
            settings = settings.replace(**changes)
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    if logging_setup is not None:
        logging_setup(args, settings)
    else:
        setup_logging(logging.INFO if verbose else logging.WARNING)
    try:
        code = int(body(args, settings) or EXIT_OK)
        try:
            sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        except BrokenPipeError:
            closed_pipe()  # the body's own code stands: a reader going away changes nothing of it
        return code
    except BrokenPipeError:  # writing to stdout after its reader went away (``| head``)
        return closed_pipe()
    except SynestheteError as exc:
        log.debug("%s failed", prog, exc_info=True)
        print(f"{prog}: {exc.user_message}", file=sys.stderr)
        if hint := hint_for(exc, settings, prog):
            print(f"  {hint}", file=sys.stderr)
        if verbose:
            print(f"  detail: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # a path or port of the user's (no such directory, permission, port in use)
        log.log(logging.ERROR if verbose else logging.DEBUG, "%s failed", prog, exc_info=True)
        where = f" {exc.filename}" if exc.filename else ""
        print(f"{prog}:{where} {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:  # the last line of defence: one line; the traceback with -v (or at DEBUG)
        log.log(logging.ERROR if verbose else logging.DEBUG, "%s: unexpected error", prog, exc_info=True)
        print(f"{prog}: internal error ({type(exc).__name__}: {exc}); run again with -v for the details",
              file=sys.stderr)
        return EXIT_INTERNAL


def open_service(prog: str, settings: Settings) -> SynestheteService:
    """The engine over an existing index, for the long-running front ends (bot, web).

    Raises the engine's typed error (never built: ``EmptyIndexError``; held by another
    process: ``StoreLockedError``; ...): :func:`run_console` turns it into its sentence, the
    hint of :func:`hint_for` and its exit code, the one rule of every console script
    (it used to print here and exit 1 whatever the cause).  ``prog`` names the script in the log.
    """
    from .service import SynestheteService

    log.debug("%s: opening the engine on %s", prog, settings.data_dir)
    return SynestheteService(settings)
