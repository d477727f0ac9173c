"""`synesthete`: query the engine from a terminal.

    synesthete query note.ogg [--json]      identify + five similar tracks
    synesthete similar "track name" [--json]
    synesthete radio "track name or Spotify link" [-n 25] [--links]
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

from .settings import Settings
from .startup import EXIT_OK, EXIT_USER_ERROR, add_common_args, run_console


def _print_recommendation(rec, out=None) -> None:
    out = out or sys.stdout  # looked up at call time (tests and pagers swap it)
    if rec.seed is not None:
        print(f"Because you picked: {rec.seed.title}", file=out)
    if rec.identified is not None:
        ident = rec.identified
        print(f"Sounds like: {ident.track.title}  ({ident.confidence:.0%} sure, at {ident.offset_s:.0f} s; "
              f"{ident.track.link})", file=out)
        print(f"  {ident.level_text}", file=out)
    elif rec.might_be is not None:
        print(f"Might be: {rec.might_be.title}  (not sure; {rec.might_be.link})", file=out)
        print("Here is what sounds alike:", file=out)
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
    add_common_args(p)
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
    sv = sub.add_parser("serve", help="own the index and serve the web page + JSON API, for the bot and other "
                                      "terminals (the same as synesthete-web)")
    sv.add_argument("--host", default=None, help="address to bind (default SYNESTHETE_WEB_HOST)")
    sv.add_argument("--port", type=int, default=None, help="port (default SYNESTHETE_WEB_PORT)")
    r = sub.add_parser("radio", help="a playlist that drifts from a song (a name, an id, a Spotify link or a recording)")
    r.add_argument("name", help="track name (and/or artist), a Spotify track link, or an audio file")
    r.add_argument("--id", action="store_true", help="NAME is a track_id")
    r.add_argument("-n", type=int, default=None, help="how many tracks (default 25, at most 50)")
    r.add_argument("--links", action="store_true",
                   help="only the tracks' links, one per line (paste them into a Spotify playlist)")
    r.add_argument("--m3u", action="store_true", help="an extended M3U playlist of the tracks' links")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    for sp in (q, s):
        sp.add_argument("--raw", action="store_true",
                        help="the raw similarity ranking (no cap of one answer per artist)")
    for sp in (q, s, r):
        sp.add_argument("--genre", default="", help="only these genres (comma-separated)")
        sp.add_argument("--bpm", default=None, help="tempo range, e.g. 100-130, 120- or -90")
        sp.add_argument("--instrumental", action="store_true", help="only tracks without vocals")
        sp.add_argument("--popularity", default=None, help="Spotify popularity range, e.g. 20-80")
    for sp in (q, s, f, sub.choices["about"]):
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.add_argument("-k", type=int, default=None, help="how many tracks to recommend (default 5)")
    return p


def open_engine(settings: Settings):
    """The engine this command talks to: a running one's API, or the index opened here.

    ``SYNESTHETE_ENGINE_URL`` set: that engine.  Otherwise the index is opened in this
    process; when another process holds it (milvus-lite allows one) and that process is an
    engine serving this data directory, the command asks it instead, and says so.
    """
    from .client import EngineClient, find_running_engine
    from .service import SynestheteService

    from .errors import EngineUnavailableError

    if settings.engine_url:
        return EngineClient(settings)
    found = find_running_engine(settings)
    if found is not None:
        client = EngineClient(settings, found.url, token=found.token)
        try:
            client.about()  # a live pid is not proof: pids are reused, a container's engine is pid 1
        except EngineUnavailableError:
            logging.getLogger(__name__).info("engine.json names %s, which does not answer: opening the index here",
                                             found.url)
        else:
            print(f"synesthete: the index is held by a running engine; asking it at {found.url}", file=sys.stderr)
            return client
    return SynestheteService(settings)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from web.main import serve

    return serve(settings)


def _local_search(args: argparse.Namespace, settings: Settings) -> bool:
    """``search`` straight from the catalogue's SQLite file, without opening the engine; False if it cannot.

    Why: a name search is milliseconds of SQLite, but opening the engine imports torch and
    starts milvus-lite (~2 s on 2 cores).  SQLite lets readers share the file with a running
    engine or a build, so this needs no engine; a remote engine (``SYNESTHETE_ENGINE_URL``) or
    a missing catalogue goes the engine's way (its answer, or its "build it first").
    """
    if settings.engine_url or not Path(settings.catalogue_db_path).exists():
        return False
    from .catalogue import CatalogueDB

    db = CatalogueDB(settings.catalogue_db_path, read_only=True)
    try:
        _print_hits(db.search(args.text, limit=args.limit), args.json)
    finally:
        db.close()
    return True


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.cmd == "serve":
        return _serve(args, settings)
    if args.cmd == "search" and _local_search(args, settings):
        return EXIT_OK
    if args.cmd == "about":
        from .about_snapshot import read_snapshot

        info = read_snapshot(settings)
        if info is not None:
            _print_about(info, args.json)
            return EXIT_OK
    with open_engine(settings) as svc:
        if args.cmd == "query":
            if not args.file.exists():
                print(f"error: no such file: {args.file}", file=sys.stderr)
                return EXIT_USER_ERROR
            rec = svc.recommend(args.file, k=args.k, diverse=not args.raw, filters=_filters(args))
        elif args.cmd == "radio" and Path(args.name).is_file() and not args.id:
            heard, radio = svc.radio_from_recording(Path(args.name), args.n, filters=_filters(args))
            print(f"Heard: {heard.identified.track.title}" if heard.identified else
                  f"Might be {heard.might_be.title}: starting there" if heard.might_be else
                  "Not a song I know: starting from the nearest one", file=sys.stderr)
            return _print_radio(radio, args)
        elif args.cmd in ("similar", "radio"):
            track_id = _seed_id(args, svc)
            if track_id is None:
                return EXIT_USER_ERROR
            if args.cmd == "radio":
                return _print_radio(svc.radio(track_id, args.n, filters=_filters(args)), args)
            rec = (svc.more_by_artist(track_id, k=args.k) if args.same_artist
                   else svc.similar_to(track_id, k=args.k, diverse=not args.raw, filters=_filters(args)))
        elif args.cmd == "search":
            _print_hits(svc.search_tracks(args.text, limit=args.limit), args.json)
            return EXIT_OK
        else:
            _print_about(svc.about(), args.json)
            return EXIT_OK
        print(json.dumps(rec.to_dict(), indent=2, ensure_ascii=False)) if args.json else _print_recommendation(rec)
    return EXIT_OK


def _seed_id(args: argparse.Namespace, svc) -> str | None:
    """The track ``similar``/``radio`` start from: an id, a link (passed as pasted: the engine
    applies the link rules), or the best name match (said when several matched); None, said on
    stderr, when no name matches."""
    if args.id or _track_link(args.name) is not None:
        return args.name
    hits = svc.search_tracks(args.name, limit=5)
    if not hits:
        print(f"No track in the catalogue matches {args.name!r}.", file=sys.stderr)
        return None
    _say_which(hits, command=args.cmd)
    return hits[0].track.track_id


def _print_radio(rec, args: argparse.Namespace, out=None) -> int:
    """A radio: ``--links`` one link per line (Spotify's desktop app takes them pasted into a
    playlist), ``--json`` the answer, else numbered lines; the note (fewer than asked) on stderr."""
    out = out or sys.stdout
    if args.json:
        print(json.dumps(rec.to_dict(), indent=2, ensure_ascii=False), file=out)
    elif args.links or args.m3u:
        from .playlist import links_text, m3u_text

        tracks = [r.track for r in rec.results]
        out.write(m3u_text(tracks, f"Radio: {rec.seed.title}") if args.m3u else links_text(tracks))
    else:
        print(f"Radio from: {rec.seed.title}  ({len(rec.results)} tracks, each near the one before)\n", file=out)
        for i, r in enumerate(rec.results, 1):
            print(f"{i:2d}. {r.track.title}  [{', '.join(r.track.genres) or '-'}]  {r.similarity:.2f}", file=out)
            print(f"    {r.track.link}", file=out)
    if rec.note:
        print(rec.note, file=sys.stderr)
    return EXIT_OK


def _track_link(text: str, out=None) -> str | None:
    """The track id of a Spotify track link in ``text`` (saying when more links were given), else None.

    Raises ``NotATrackLinkError`` (one sentence, exit 2) for an album, playlist or short link.
    """
    from .links import track_id_from

    track_id, link = track_id_from(text)
    if link is None:
        return None
    if link.others:
        print(f"Answering the first of {link.others + 1} Spotify links.", file=out or sys.stderr)
    return track_id


def _say_which(hits, out=None, command: str = "similar") -> None:
    """On stderr, when a name matched several tracks: which one ``similar`` uses and what else matched.

    Why: it silently took the best match (issue 24), so a person asking for "Track 2" of one
    album could get another album's without knowing.  stderr keeps ``--json`` output clean.
    """
    if len(hits) < 2:
        return
    out = out or sys.stderr
    print(f"Using \"{hits[0].track.title}\" (id={hits[0].track.track_id}); {len(hits) - 1} more matched:", file=out)
    for h in hits[1:]:
        print(f"  {h.track.title}  id={h.track.track_id}", file=out)
    print(f"Pick one with: {command} --id ID", file=out)


def _print_hits(hits, as_json: bool) -> None:
    if as_json:
        print(json.dumps([{**h.track.to_dict(), "score": round(h.score, 3)} for h in hits], indent=2,
                         ensure_ascii=False))
        return
    for h in hits:
        # popularity shown: equal matches are ordered by it, which looked like no order without it
        print(f"{h.track.title}  [{', '.join(h.track.genres) or '-'}]  popularity {h.track.popularity}  "
              f"id={h.track.track_id}")
    if not hits:
        print("No match.")


def _print_about(info: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        if not isinstance(value, dict):
            print(f"{key:>15}: {value}")
            continue
        # one line per field: a nested dict on one line ran its keys together ("calibrated True; status ...")
        print(f"{key:>15}:")
        for k, v in value.items():
            if isinstance(v, list):  # e.g. the calibration's held-out figures, one line per recording kind
                print(f"{'':>17}{k.replace('_', ' ')}:")
                for item in v:
                    print(f"{'':>19}{item}")
            elif v is not None and v != "":
                print(f"{'':>17}{k.replace('_', ' ')}: {v}")


def main(argv: list[str] | None = None) -> int:
    return run_console("synesthete", build_parser(), _run, argv,
                       overrides=lambda a: {"data_dir": a.data_dir, "milvus_uri": a.uri,
                                            "web_host": getattr(a, "host", None), "web_port": getattr(a, "port", None)})


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
