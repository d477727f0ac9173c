"""``synesthete-web``: open the engine and serve the page + API on localhost.

    synesthete-web [--host 127.0.0.1] [--port 8080] [--env-file .env] [--log-level INFO]

Exit codes: 0 clean stop, 1 the engine could not open (no index yet, index in
use by another process), 2 configuration wrong.
"""

from __future__ import annotations

import argparse
import logging
import sys

from engine.settings import Settings
from engine.startup import EXIT_INTERNAL, EXIT_OK, add_common_args, open_service, run_console, setup_logging

log = logging.getLogger("web")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="synesthete-web",
                                description="Serve the Synesthete web page and JSON API (see docs/web.md).")
    p.add_argument("--host", default=None, help="address to bind (default SYNESTHETE_WEB_HOST = 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default SYNESTHETE_WEB_PORT = 8080)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    add_common_args(p)
    return p


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    return serve(settings)


def serve(settings: Settings) -> int:
    """Open the engine and serve the page + API until stopped; the exit code.

    While it runs, ``<data_dir>/engine.json`` tells local clients (the CLI) where it is
    (engine.client.advertise), so they ask it instead of failing on the held index.
    """
    from aiohttp import web

    from engine.client import advertise

    from .app import create_app

    service = open_service("synesthete-web", settings)  # its errors: run_console's one rule
    host, port = settings.web_host, settings.web_port
    try:
        if host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("listening on %s: reachable from other machines; browsers only allow the microphone "
                        "over https (put a TLS reverse proxy in front)", host)
        print(f"synesthete-web: open http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}/",
              flush=True)
        with advertise(settings, host, port) as local_token:
            web.run_app(create_app(service, settings, local_token=local_token), host=host, port=port, print=None,
                        access_log_format='%a "%r" %s %b %Tfs')
    except OSError as exc:
        print(f"synesthete-web: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        service.close()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_console("synesthete-web", build_parser(), _serve, argv,
                       overrides=lambda a: {"web_host": a.host, "web_port": a.port},
                       logging_setup=lambda a, s: setup_logging(getattr(logging, a.log_level.upper(), logging.INFO)))


if __name__ == "__main__":
    sys.exit(main())
