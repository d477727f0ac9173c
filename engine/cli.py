"""`synesthete`: query the engine from a terminal.

    synesthete query note.ogg [--json]      identify + five similar tracks
    synesthete similar "track name" [--json]
    synesthete search "text"                 catalogue tracks by name
    synesthete about

A thin caller of :mod:`engine.service`: it parses arguments, prints, and maps the
engine's typed errors to one sentence and an exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import SynestheteError
from .settings import Settings

EXIT_USER_ERROR = 2
EXIT_INTERNAL = 1


def _print_recommendation(rec, out=None) -> None:
    out = out or sys.stdout  # looked up at call time (tests and pagers swap it)
    if rec.seed is not None:
        print(f"Because you picked: {rec.seed.title}", file=out)
    if rec.identified is not None:
        ident = rec.identified
        print(f"Sounds like: {ident.track.title}  ({ident.confidence:.0%} sure, at {ident.offset_s:.0f} s; "
              f"{ident.track.link})", file=out)
    elif rec.seed is None:
        print("Not a song I know, but here is what sounds alike:", file=out)
    print(file=out)
    if not rec.results:
        print("  (no similar tracks in the catalogue yet)", file=out)
    for i, r in enumerate(rec.results, 1):
        genres = ", ".join(r.track.genres) or "-"
        print(f"{i}. {r.track.title}  [{genres}]  {r.match_text}",
              file=out)
        if r.reason:
            print(f"   {r.reason}", file=out)
        print(f"   {r.track.link}", file=out)
    if rec.timings_ms:
        t = " ".join(f"{k} {v:.0f} ms" for k, v in rec.timings_ms.items())
        print(f"\n({t})", file=out)


def _filters(args):
    from .filters import make_filter

    return make_filter(args.genre, args.bpm, args.instrumental, args.popularity)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="synesthete", description="A music recommender that listens.")
    p.add_argument("--data-dir", type=Path, help="data directory (default: SYNESTHETE_DATA_DIR)")
    p.add_argument("--uri", help="Milvus URI (default: milvus-lite file in the data directory)")
    p.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("query", help="identify a recording and recommend five similar tracks")
    q.add_argument("file", type=Path, help="any common audio file (mp3, ogg/opus voice note, m4a, wav, ...)")
    s = sub.add_parser("similar", help="tracks similar to a catalogue track, found by name")
    s.add_argument("name", help="track name (and/or artist); the best match is used")
    s.add_argument("--id", action="store_true", help="NAME is a track_id")
    s.add_argument("--same-artist", action="store_true", help="more by this track's own artist, most similar first")
    f = sub.add_parser("search", help="find catalogue tracks by name")
    f.add_argument("text")
    f.add_argument("-n", "--limit", type=int, default=10)
    sub.add_parser("about", help="catalogue size, model and index build date")
    for sp in (q, s):
        sp.add_argument("--raw", action="store_true",
                        help="the raw similarity ranking (no cap of one answer per artist)")
        sp.add_argument("--genre", default="", help="only these genres (comma-separated)")
        sp.add_argument("--bpm", default=None, help="tempo range, e.g. 100-130, 120- or -90")
        sp.add_argument("--instrumental", action="store_true", help="only tracks without vocals")
        sp.add_argument("--popularity", default=None, help="Spotify popularity range, e.g. 20-80")
    for sp in (q, s, f, sub.choices["about"]):
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.add_argument("-k", type=int, default=None, help="how many tracks to recommend (default 5)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    settings = Settings.from_env()
    if args.data_dir:
        settings = settings.replace(data_dir=args.data_dir)
    if args.uri:
        settings = settings.replace(milvus_uri=args.uri)

    from .service import SynestheteService

    try:
        with SynestheteService(settings) as svc:
            if args.cmd == "query":
                if not args.file.exists():
                    print(f"error: no such file: {args.file}", file=sys.stderr)
                    return EXIT_USER_ERROR
                rec = svc.recommend(args.file, k=args.k, diverse=not args.raw, filters=_filters(args))
                print(json.dumps(rec.to_dict(), indent=2, ensure_ascii=False)) if args.json else _print_recommendation(rec)
            elif args.cmd == "similar":
                if args.id:
                    track_id = args.name
                else:
                    hits = svc.search_tracks(args.name, limit=5)
                    if not hits:
                        print(f"No track in the catalogue matches {args.name!r}.", file=sys.stderr)
                        return EXIT_USER_ERROR
                    track_id = hits[0].track.track_id
                rec = (svc.more_by_artist(track_id, k=args.k) if args.same_artist
                       else svc.similar_to(track_id, k=args.k, diverse=not args.raw, filters=_filters(args)))
                print(json.dumps(rec.to_dict(), indent=2, ensure_ascii=False)) if args.json else _print_recommendation(rec)
            elif args.cmd == "search":
                hits = svc.search_tracks(args.text, limit=args.limit)
                if args.json:
                    print(json.dumps([{**h.track.to_dict(), "score": round(h.score, 3)} for h in hits],
                                     indent=2, ensure_ascii=False))
                else:
                    for h in hits:
                        print(f"{h.track.title}  [{', '.join(h.track.genres) or '-'}]  id={h.track.track_id}")
                    if not hits:
                        print("No match.")
            elif args.cmd == "about":
                info = svc.about()
                if args.json:
                    print(json.dumps(info, indent=2))
                else:
                    for key, value in info.items():
                        if isinstance(value, dict):
                            value = "; ".join(f"{k} {v}" for k, v in value.items() if v is not None)
                        print(f"{key:>15}: {value}")
    except SynestheteError as exc:
        logging.getLogger("synesthete").info("query failed: %r", exc)
        if args.verbose:
            print(f"detail: {exc}", file=sys.stderr)
        print(exc.user_message, file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
