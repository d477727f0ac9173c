"""``synesthete-bot``: load settings, open the engine, run the bot.

    synesthete-bot                       run the bot (DISCORD_TOKEN in the environment or .env)
    synesthete-bot export-feedback FILE  write the 👍/👎 feedback as CSV or JSON (by extension)

Exit codes: 0 clean stop, 1 the engine or Discord refused, 2 configuration missing or wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from engine.settings import Settings
from engine.startup import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USER_ERROR,
    add_common_args,
    open_service,
    quiet_noisy_loggers,
    run_console,
)

from .utils import redact

log = logging.getLogger("bot")

NO_TOKEN_HELP = """\
synesthete-bot: DISCORD_TOKEN is not set, so the bot cannot log in.

What to do:
  1. Create an application and a bot user at https://discord.com/developers/applications
     (Bot -> Reset Token, copy it).
  2. Put the token in .env next to where you run the bot:   DISCORD_TOKEN=...
     (or export DISCORD_TOKEN in the environment). Never commit it.
  3. Invite the bot with the URL in docs/bot.md, then run `synesthete-bot` again.

Everything else (watch mode, limits, metrics port) is optional: see .env.example and docs/bot.md.
"""


def _setup_logging(settings: Settings, level: str) -> None:
    import discord

    numeric = getattr(logging, level.upper(), logging.INFO)
    discord.utils.setup_logging(level=numeric, root=True)
    quiet_noisy_loggers(numeric)
    redact.install(settings.discord_token)


def _export(settings: Settings, args: argparse.Namespace) -> int:
    from .feedback import FeedbackStore

    path = settings.resolved_feedback_db_path
    if not path.exists():
        print(f"synesthete-bot: no feedback database at {path} yet (it is created when the bot first answers).",
              file=sys.stderr)
        return EXIT_USER_ERROR
    store = FeedbackStore(path)
    try:
        n = store.export(args.out, args.format, include_unvoted=args.all)
    finally:
        store.close()
    print(f"wrote {n} rows to {args.out}")
    return EXIT_OK


async def _serve(bot, service, settings: Settings, *, with_web: bool) -> None:
    """Run the bot, and the web app on the same event loop and engine when asked."""
    from contextlib import nullcontext

    from engine.client import advertise

    # with the page (and the index held here), this process is the engine other terminals ask
    serving = advertise(settings, settings.web_host, settings.web_port) if with_web and not settings.engine_url \
        else nullcontext("")
    runner = None
    with serving as local_token:
        try:
            if with_web:
                from aiohttp import web

                from web.app import create_app

                runner = web.AppRunner(create_app(service, settings, local_token=local_token))
                await runner.setup()
                await web.TCPSite(runner, settings.web_host, settings.web_port).start()
                print(f"synesthete-bot: web page on http://{settings.web_host}:{settings.web_port}/", flush=True)
            async with bot:
                await bot.start(settings.discord_token)
        finally:
            if runner is not None:
                await runner.cleanup()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synesthete-bot", description="The Synesthete Discord bot.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    add_common_args(parser)
    sub = parser.add_subparsers(dest="cmd")
    run_p = sub.add_parser("run", help="run the bot (the default)")
    for p_ in (parser, run_p):
        p_.add_argument("--with-web", action="store_true",
                        help="also serve the web page/API in this process (milvus-lite allows one process per "
                             "index, so the bot and the web page share one engine)")
    exp = sub.add_parser("export-feedback", help="write the stored answers and votes as CSV or JSON")
    exp.add_argument("out", help="output file (.csv or .json)")
    exp.add_argument("--format", choices=("csv", "json"), default=None)
    exp.add_argument("--all", action="store_true", help="include answers nobody voted on")
    return parser


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.cmd == "export-feedback":
        return _export(settings, args)
    if not settings.discord_token.strip():
        print(NO_TOKEN_HELP, file=sys.stderr, end="")
        return EXIT_USER_ERROR

    import discord

    from .client import create_bot, shard_config

    try:
        shard_config(settings)  # before the engine is opened: a bad combination is a configuration error
    except ValueError as exc:
        print(f"synesthete-bot: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    if settings.engine_url:  # a client of a running engine process (engine.client)
        from engine.client import EngineClient

        service = EngineClient(settings)
        log.info("asking the engine at %s", settings.engine_url)
    else:
        service = open_service("synesthete-bot", settings)  # its errors: run_console's one rule
    try:
        bot = create_bot(settings, service)
        try:
            asyncio.run(_serve(bot, service, settings, with_web=getattr(args, "with_web", False)))
        except KeyboardInterrupt:
            print("synesthete-bot: stopped", file=sys.stderr)
    except discord.LoginFailure:
        print("synesthete-bot: Discord refused DISCORD_TOKEN (wrong or reset). Copy a fresh token from the "
              "Developer Portal (Bot -> Reset Token) into .env.", file=sys.stderr)
        return EXIT_INTERNAL
    except discord.PrivilegedIntentsRequired:
        print("synesthete-bot: SYNESTHETE_BOT_WATCH_MODE is all/allowlist, which needs the Message Content intent: "
              "enable it in the Developer Portal (Bot -> Privileged Gateway Intents), or use "
              "SYNESTHETE_BOT_WATCH_MODE=mention.", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        service.close()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_console("synesthete-bot", build_parser(), _run, argv,
                       logging_setup=lambda a, s: _setup_logging(s, a.log_level))


if __name__ == "__main__":
    sys.exit(main())
