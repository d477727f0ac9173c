"""``synesthete-index``: build the catalogue index, train/evaluate the head, or make a demo.

    synesthete-index build --csv tracks.csv --audio DIR [--not-spotify] [--rebuild] [--workers N]
    synesthete-index build --audio DIR                  (a folder of audio, no CSV)
    synesthete-index demo [--tracks N]                  (free game soundtracks from Debian)
    synesthete-index train ... / eval ...               (see their --help)
    synesthete-index calibrate [--force]                (refit identification's confidence; builds do it)

Thin: parses, prints, maps typed errors to one sentence and an exit code
(0 ok, even with some bad files; 2 a user error; 1 an internal error).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.settings import Settings
from engine.startup import (EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USER_ERROR, add_common_args, command_path,
                            run_console)

#: subcommands implemented by other modules: name -> (module, help)
_DELEGATED = {
    "train": ("index_builder.train", "fine-tune the embedding head on the catalogue's audio"),
    "eval": ("index_builder.evaluate", "measure identification and similarity quality"),
    "calibrate": ("index_builder.calibrate", "refit when identification says \"sounds like\" (the build does it)"),
}


def _add_build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", type=Path, help="catalogue CSV in the Kaggle layout (genre, artist_name, track_name, "
                                            "track_id, popularity, ...)")
    p.add_argument("--audio", type=Path, help="folder of audio files (<track_id>.mp3, 'Artist - Title.mp3', ...)")
    p.add_argument("--not-spotify", action="store_true",
                   help="the CSV's track_ids are not Spotify ids: link to a Spotify search instead")
    p.add_argument("--rebuild", action="store_true", help="embed every track again, even unchanged ones")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    p.add_argument("--report", type=Path, help="also write the JSON report here")
    p.add_argument("--no-tags", action="store_true", help="don't read tags to match files (faster)")
    p.add_argument("--batch-size", type=int, default=16, help=argparse.SUPPRESS)
    p.add_argument("--embedder", default=None, help=argparse.SUPPRESS)  # module:function, for tests/benchmarks


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable]]:
    p = argparse.ArgumentParser(prog="synesthete-index", description="Build and maintain the Synesthete index.")
    p.add_argument("--data-dir", type=Path, help="data directory (default: SYNESTHETE_DATA_DIR)")
    p.add_argument("--uri", help="Milvus URI (default: milvus-lite file in the data directory)")
    add_common_args(p)
    sub = p.add_subparsers(dest="cmd", required=True)
    handlers: dict[str, Callable] = {}

    b = sub.add_parser("build", help="index a catalogue (incremental; resumable after a crash)")
    _add_build_args(b)
    d = sub.add_parser("demo", help="a demo catalogue from free game soundtracks packaged in Debian")
    d.add_argument("--tracks", type=int, default=36, help="number of tracks (default 36)")
    d.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")

    for name, (module, help_) in _DELEGATED.items():
        sp = sub.add_parser(name, help=help_, add_help=True)
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            sp.set_defaults(_missing=f"`{name}` is not available: cannot import {module} ({exc}).")
            sp.add_argument("rest", nargs=argparse.REMAINDER)
            continue
        add = getattr(mod, "add_arguments", None)
        if add is not None:
            add(sp)
        else:
            sp.add_argument("rest", nargs=argparse.REMAINDER)
        handlers[name] = getattr(mod, "main", None)
    return p, handlers


def _cmd_build(args: argparse.Namespace, settings: Settings) -> int:
    from .build import BuildOptions, run_build
    from .worker import DEFAULT_EMBEDDER

    if args.csv is None and args.audio is None:
        print("error: give a catalogue CSV (--csv) and/or an audio folder (--audio)", file=sys.stderr)
        return EXIT_USER_ERROR
    opts = BuildOptions(csv=args.csv, audio=args.audio, not_spotify=args.not_spotify, rebuild=args.rebuild,
                        workers=args.workers, report_path=args.report, batch_size=args.batch_size,
                        embedder=args.embedder or DEFAULT_EMBEDDER, progress=sys.stderr.isatty(),
                        use_tags=not args.no_tags)
    print(f"building the index in {settings.data_dir} ...", file=sys.stderr)
    report = run_build(settings, opts)
    if report.recreated:
        print(f"note: {report.recreate_reason}", file=sys.stderr)
    print(report.summary())
    print(f"full report: {Path(settings.data_dir) / 'build_report.json'}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from .demo import run_demo

    print(f"making the demo catalogue in {settings.data_dir} (first run: ~300 MB of Debian packages, "
          "a few minutes of indexing) ...", file=sys.stderr)
    res = run_demo(settings, n_tracks=args.tracks, workers=args.workers, progress=sys.stderr.isatty())
    print(res.report.summary())
    print(f"\ncatalogue: {res.csv} ({len(res.tracks)} tracks)")
    print(f"voice note: {res.voice_note} (10 s of \"{res.voice_note_track.name}\" by "
          f"{res.voice_note_track.artist}, recorded like a phone next to a speaker)")
    cmd = command_path("synesthete") + (f" --data-dir {settings.data_dir}" if args.data_dir else "")
    print("\ntry next:")
    print(f"  {cmd} query {res.voice_note}")
    print(f"  {cmd} similar \"{res.tracks[0].name}\"")
    print(f"  {cmd} search \"{res.voice_note_track.name[:5]}\"")
    return EXIT_OK


def _run(args: argparse.Namespace, settings: Settings, handlers: dict[str, Callable]) -> int:
    if getattr(args, "_missing", None):
        print(f"error: {args._missing}", file=sys.stderr)
        return EXIT_INTERNAL
    try:
        if args.cmd == "build":
            return _cmd_build(args, settings)
        if args.cmd == "demo":
            return _cmd_demo(args, settings)
    except KeyboardInterrupt:
        print("interrupted; what was finished is kept, run the same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    fn = handlers.get(args.cmd)
    if fn is None:
        print(f"error: {_DELEGATED[args.cmd][0]} has no main(args)", file=sys.stderr)
        return EXIT_INTERNAL
    return int(fn(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = build_parser()
    return run_console("synesthete-index", parser, lambda a, s: _run(a, s, handlers), argv,
                       overrides=lambda a: {"data_dir": a.data_dir.expanduser() if a.data_dir else None,
                                            "milvus_uri": a.uri})


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
