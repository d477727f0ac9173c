"""The aiohttp application: the page, the JSON API and the live-listening WebSocket.

Thin by design: every answer comes from ``engine.service`` (the only door);
this module only moves bytes in, JSON out, and turns the engine's typed errors
into HTTP status codes with the engine's one friendly sentence:

    413 too_large        415 not_audio        422 corrupt / empty / too_short / timeout
    400 bad_request      404 not_found        429 rate_limited (Retry-After)
    503 busy / query_timeout / index unavailable (Retry-After)
    500 only for a bug of ours, never for bad input.

Error bodies are always ``{"error": {"kind": ..., "message": ...}}``.

``/metrics`` serves Prometheus metrics (web/metrics.py); ``service`` is anything
that keeps the front-end contract :class:`engine.api.SynestheteAPI`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.api import SynestheteAPI
from engine.errors import (
    AudioError,
    BusyError,
    QueryTimeoutError,
    StoreError,
    SynestheteError,
    TooLargeAudioError,
    TrackNotFoundError,
)
from engine.settings import Settings

from . import live
from .answers import public_answer, public_track
from .metrics import METRICS, WebMetrics, metrics_middleware
from .ratelimit import RateLimiter, client_ip, make_limiters

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

#: engine error kind -> HTTP status
STATUS_BY_KIND: dict[str, int] = {
    "too_large": 413,
    "not_audio": 415,
    "corrupt": 422,
    "empty": 422,
    "too_short": 422,
    "timeout": 422,
    "audio": 422,
    "not_found": 404,
    "busy": 503,
    "query_timeout": 503,
    "bad_request": 400,
    "bad_filter": 400,
    "no_match": 404,
    "rate_limited": 429,
    "not_a_track_link": 422,
}
RETRY_AFTER_S = {"busy": 2, "query_timeout": 5}
MAX_K = 25

SERVICE = web.AppKey("service", SynestheteAPI)
SETTINGS = web.AppKey("settings", Settings)
LIMITS = web.AppKey("limits", dict[str, RateLimiter])
LIVE = web.AppKey("live", dict)
LOCAL_TOKEN = web.AppKey("local_token", str)

CSP = ("default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
       "frame-src https://open.spotify.com; connect-src 'self'; object-src 'none'; base-uri 'none'")


class BadRequest(SynestheteError):
    kind = "bad_request"
    user_message = "That request is missing something I need."


class RateLimited(SynestheteError):
    kind = "rate_limited"
    user_message = "You're going a bit fast; please wait a few seconds and try again."

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited for {retry_after:.1f}s")
        self.retry_after = retry_after


def status_for(exc: SynestheteError) -> int:
    if exc.kind in STATUS_BY_KIND:
        return STATUS_BY_KIND[exc.kind]
    if isinstance(exc, AudioError):
        return 422
    if isinstance(exc, TrackNotFoundError):
        return 404
    if isinstance(exc, (StoreError, BusyError, QueryTimeoutError)):
        return 503
    return 500


def error_body(exc: BaseException, retry_after: int | None = None) -> dict[str, Any]:
    if isinstance(exc, SynestheteError):
        return {"kind": exc.kind, "message": with_retry_words(exc.user_message, retry_after)}
    return {"kind": "internal", "message": SynestheteError.user_message}


#: the time a sentence promises ("please try again in a minute", "please wait a few seconds and try again")
_WHEN = re.compile(r"please (?:wait [^;.]*? and )?try again(?: (?:in a moment|in a minute|later|shortly))?"
                   r"(?=[.;]|$)")


def retry_words(seconds: int) -> str:
    """``Retry-After`` seconds as a person says them: "in a few seconds", "in about 30 seconds", "in a minute"."""
    if seconds <= 5:
        return "in a few seconds"
    if seconds < 50:
        return f"in about {seconds} seconds"
    if seconds <= 90:
        return "in a minute"
    return f"in about {round(seconds / 60)} minutes"


def with_retry_words(message: str, retry_after: int | None) -> str:
    """The sentence with its promised wait made from the ``Retry-After`` it is sent with (issue 30).

    Why: the 429 said "wait a few seconds" beside ``Retry-After: 30`` and the 503 "in a minute"
    beside ``Retry-After: 10``.  A sentence that promises no time is left as it is.
    """
    if retry_after is None:
        return message
    return _WHEN.sub(f"please try again {retry_words(retry_after)}", message, count=1)


def retry_after_for(exc: BaseException, status: int) -> int | None:
    """The ``Retry-After`` seconds of an error response, or None (one place for header and sentence)."""
    if isinstance(exc, RateLimited):
        return max(1, math.ceil(exc.retry_after))
    if isinstance(exc, SynestheteError) and status == 503:
        return RETRY_AFTER_S.get(exc.kind, 10)
    return None


def error_response(exc: BaseException) -> web.Response:
    status = status_for(exc) if isinstance(exc, SynestheteError) else 500
    retry = retry_after_for(exc, status)
    headers = {"Retry-After": str(retry)} if retry is not None else {}
    return web.json_response({"error": error_body(exc, retry)}, status=status, headers=headers)


# ---- middlewares --------------------------------------------------------------------------


@web.middleware
async def errors_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    try:
        return await handler(request)
    except SynestheteError as exc:
        if status_for(exc) >= 500:
            log.warning("%s %s -> %s: %s", request.method, request.path, exc.kind, exc)
        else:
            log.info("%s %s -> %s: %s", request.method, request.path, exc.kind, exc)
        return error_response(exc)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400:
            raise
        kind = {413: "too_large", 404: "not_found", 405: "bad_request"}.get(exc.status, "bad_request")
        message = {413: TooLargeAudioError.user_message,
                   404: "There is nothing at that address.",
                   405: "That method isn't allowed here."}.get(exc.status, BadRequest.user_message)
        return web.json_response({"error": {"kind": kind, "message": message}}, status=exc.status)
    except Exception:  # a bug of ours: log it whole, say one sentence
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(RuntimeError("internal"))


@web.middleware
async def headers_middleware(request: web.Request, handler):
    resp = await handler(request)
    if resp.prepared:  # a WebSocket: its headers are already sent
        return resp
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path == "/" or request.path.endswith(".html"):
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("Permissions-Policy", "microphone=(self)")
    return resp


# ---- helpers ------------------------------------------------------------------------------


def trusted_front_end(request: web.Request) -> bool:
    """The request carries ``SYNESTHETE_ENGINE_TOKEN`` (a bot of this deployment) or this engine's
    local token (a CLI of the same user, which read it from the owner-only engine.json)."""
    sent = request.headers.get("Authorization", "").encode("utf-8", "replace")  # any bytes a client sends
    tokens = (request.app[SETTINGS].engine_token, request.app[LOCAL_TOKEN])
    return any(t and hmac.compare_digest(sent, f"Bearer {t}".encode()) for t in tokens)


async def _limit(request: web.Request, limit: str) -> None:
    """Count this request against the client's ``limit`` (web/ratelimit.py); 429 when over it.

    Trusted front ends are not counted: a bot speaks for thousands of people and keeps
    its own per-user cooldowns.
    """
    settings = request.app[SETTINGS]
    if trusted_front_end(request):
        return
    wait = await request.app[LIMITS][limit].take(client_ip(request, settings.web_trust_forwarded))
    if wait > 0:
        request.app[METRICS].rate_limited.labels(limit).inc()
        raise RateLimited(wait)


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name}={raw!r}", user_message=f"'{name}' must be a whole number.") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name}={value}", user_message=f"'{name}' must be between {lo} and {hi}.")
    return value


async def _read_capped(stream: Any, cap: int) -> bytes:
    buf = bytearray()
    while True:
        chunk = await stream.read_chunk(64 * 1024) if hasattr(stream, "read_chunk") else await stream.readany()
        if not chunk:
            break
        buf.extend(chunk)
        if len(buf) > cap:
            raise TooLargeAudioError(f"request body passed {cap} bytes")
    return bytes(buf)


async def read_audio(request: web.Request) -> bytes:
    """The uploaded audio: the multipart field ``file`` or the whole raw body, size-capped."""
    settings = request.app[SETTINGS]
    cap_request = settings.resolved_web_max_request_bytes
    cap_file = settings.max_upload_bytes
    if request.content_length is not None and request.content_length > cap_request:
        raise TooLargeAudioError(f"Content-Length {request.content_length} > {cap_request}")
    if request.content_type.startswith("multipart/"):
        try:
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if getattr(part, "name", None) == "file":
                    return await _read_capped(part, cap_file)
                await _read_capped(part, cap_request)  # skip other fields, still capped
        except (ValueError, AssertionError) as exc:  # malformed multipart
            raise BadRequest(f"bad multipart body: {exc}",
                             user_message="That upload was malformed; send the audio in a field named 'file'.") from exc
        raise BadRequest("multipart without a 'file' field",
                         user_message="Send the audio in a form field named 'file'.")
    return await _read_capped(request.content, min(cap_request, cap_file))


# ---- handlers -----------------------------------------------------------------------------


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


#: /healthz answers within this (s), whatever the store does: the store's ping gets less
HEALTHZ_DEADLINE_S = 2.5


async def healthz(request: web.Request) -> web.Response:
    """200 when the engine can answer (indexed tracks *and* the store answering), else 503 with the reason.

    Off the event loop, and bounded: a hung Milvus makes this 503 within
    :data:`HEALTHZ_DEADLINE_S`, never a probe timeout (Docker's HEALTHCHECK, compose's
    ``depends_on`` and an orchestrator read it).
    """
    service = request.app[SERVICE]
    try:
        state = await asyncio.wait_for(asyncio.to_thread(service.health), timeout=HEALTHZ_DEADLINE_S)
    except TimeoutError:
        log.warning("health check: no answer within %.1f s", HEALTHZ_DEADLINE_S)
        return web.json_response({"ok": False, "store": f"no answer within {HEALTHZ_DEADLINE_S:g} s"}, status=503)
    except Exception as exc:  # noqa: BLE001 - health says "not ok", never crashes
        log.warning("health check failed: %s", exc)
        return web.json_response({"ok": False, "error": error_body(exc)}, status=503)
    return web.json_response(state, status=200 if state.get("ok") else 503)


async def api_config(request: web.Request) -> web.Response:
    """What the page needs to know: limits, and whether listening live is offered."""
    s = request.app[SETTINGS]
    return web.json_response({
        "record_seconds": s.web_record_seconds,
        "live_interval_s": s.web_live_interval_s,
        "max_upload_bytes": s.max_upload_bytes,
        "min_signal_seconds": s.min_signal_seconds,
        "top_k": s.top_k,
    })


async def api_about(request: web.Request) -> web.Response:
    """The engine's ``about`` (catalogue size, model, index): what ``synesthete about`` prints."""
    await _limit(request, "search")
    about = dict(await asyncio.to_thread(request.app[SERVICE].about))
    if about.get("milvus") not in (None, "milvus-lite"):
        about["milvus"] = "milvus server"  # its address names internal hosts: not a visitor's business
    return web.json_response(about)


def _filters(request: web.Request):
    """``genre`` (comma-separated), ``bpm`` (100-130), ``instrumental`` (1), ``popularity`` (20-80)."""
    from engine.filters import make_filter

    q = request.query
    return make_filter(q.get("genre", ""), q.get("bpm"), _flag(request, "instrumental"), q.get("popularity"))


def _flag(request: web.Request, name: str) -> bool:
    """A boolean query parameter: ``?raw=1`` / ``true`` / ``yes`` / ``on`` (else false)."""
    return request.query.get(name, "").strip().lower() in ("1", "true", "yes", "on")


async def recommend(request: web.Request) -> web.Response:
    await _limit(request, "audio")
    k = _int_param(request, "k", request.app[SETTINGS].top_k, 1, MAX_K)
    diverse = not _flag(request, "raw")
    filters = _filters(request)  # a bad filter is refused before the upload is read
    data = await read_audio(request)
    with request.app[METRICS].audio_query("upload"):
        rec = await request.app[SERVICE].arecommend(data, k, diverse, filters)
    return web.json_response(public_answer(rec))


async def similar(request: web.Request) -> web.Response:
    await _limit(request, "search")
    raw = request.query.get("track_id", "").strip()
    if not raw:
        raise BadRequest("missing track_id", user_message="Tell me which track: add ?track_id=…")
    k = _int_param(request, "k", request.app[SETTINGS].top_k, 1, MAX_K)
    offset = _int_param(request, "offset", 0, 0, 100)
    svc = request.app[SERVICE]
    # raw may be a pasted Spotify track link: the engine reads it (engine.links, issue 31)
    if _flag(request, "same_artist"):
        rec = await svc.amore_by_artist(raw, k, offset)
    else:
        rec = await svc.asimilar_to(raw, k, offset, not _flag(request, "raw"), _filters(request))
    return web.json_response(public_answer(rec))


async def radio(request: web.Request) -> web.Response:
    """``GET /api/radio?track_id=ID|link[&n=25][&format=json|links|m3u|csv][&genre=…]``: a radio playlist."""
    await _limit(request, "search")
    raw = request.query.get("track_id", "").strip()
    if not raw:
        raise BadRequest("missing track_id", user_message="Tell me which track: add ?track_id=…")
    n, fmt = _radio_params(request)
    return _radio_response(await request.app[SERVICE].aradio(raw, n, _filters(request)), fmt)


async def radio_from_audio(request: web.Request) -> web.Response:
    """``POST /api/radio`` with a recording (as ``/api/recommend`` takes it): a radio from the song it is,
    else the one it might be, else its nearest track (``radio_start`` of the engine's service module); ``heard``
    says which."""
    from engine.service import radio_start

    await _limit(request, "audio")
    n, fmt = _radio_params(request)
    filters = _filters(request)
    data = await read_audio(request)
    svc = request.app[SERVICE]
    with request.app[METRICS].audio_query("upload"):
        heard = await svc.arecommend(data, 1, True, filters)
    start = radio_start(heard)
    rec = await svc.aradio(start.track_id, n, filters)
    if fmt != "json":
        return _radio_response(rec, fmt)
    body = public_answer(rec)
    heard_d = public_answer(heard)
    body["heard"] = {k: heard_d[k] for k in ("identified", "might_be")}
    return web.json_response(body)


def _radio_params(request: web.Request) -> tuple[int, str]:
    """``n`` (1..RADIO_MAX, default RADIO_DEFAULT) and ``format`` of a radio request; BadRequest otherwise."""
    from engine.playlist import FORMATS
    from engine.radio import RADIO_DEFAULT, RADIO_MAX

    n = _int_param(request, "n", RADIO_DEFAULT, 1, RADIO_MAX)
    fmt = request.query.get("format", "json")
    if fmt not in FORMATS:
        raise BadRequest(f"format={fmt!r}", user_message=f"'format' must be one of {', '.join(FORMATS)}.")
    return n, fmt


def _radio_response(rec: Any, fmt: str) -> web.Response:
    """A radio as JSON (like /api/similar), one link per line, an extended M3U or a CSV attachment."""
    from engine.playlist import csv_text, links_text, m3u_text

    tracks = [r.track for r in rec.results]
    if fmt == "json":
        return web.json_response(public_answer(rec))
    body, ctype, ext = {"links": (links_text(tracks), "text/plain", "txt"),
                        "m3u": (m3u_text(tracks, f"Radio: {rec.seed.title}"), "audio/x-mpegurl", "m3u"),
                        "csv": (csv_text(tracks), "text/csv", "csv")}[fmt]
    return web.Response(text=body, content_type=ctype, charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="radio.{ext}"'} if fmt != "links" else {})


async def search(request: web.Request) -> web.Response:
    await _limit(request, "search")
    if "q" not in request.query:
        raise BadRequest("missing q", user_message="Type part of a track name: add ?q=…")
    q = request.query["q"].strip()[:200]
    limit = _int_param(request, "limit", 10, 1, 25)
    hits = await request.app[SERVICE].asearch_tracks(q, limit) if q else []
    return web.json_response({"query": q, "results": [
        {**public_track(h.track.to_dict()), "title": h.track.title, "score": round(float(h.score), 4)}
        for h in hits]})


async def listen(request: web.Request) -> web.StreamResponse:
    """Listen live over a WebSocket (see web/live.py for the protocol)."""
    settings = request.app[SETTINGS]
    state = request.app[LIVE]
    if state["open"] >= max(1, settings.web_live_max_sessions):
        raise BusyError("all live sessions are taken")
    await _limit(request, "audio")
    ws = web.WebSocketResponse(max_msg_size=live.MAX_FRAME_BYTES, heartbeat=20.0)
    if not ws.can_prepare(request).ok:
        raise BadRequest("not a websocket request", user_message="This address is for the page's live listening.")
    await ws.prepare(request)
    metrics = request.app[METRICS]
    state["open"] += 1
    try:
        with metrics.live_sessions.track_inprogress():
            session = live.LiveSession(request.app[SERVICE], settings, metrics=metrics)
            reason = await live.run_websocket(ws, session, on_error=_ws_error)
        log.info("live session from %s ended: %s after %.1fs, %d guesses", client_ip(request), reason,
                 session.elapsed, session.guesses)
    finally:
        state["open"] -= 1
    return ws


def _ws_error(exc: Exception) -> dict[str, Any]:
    if not isinstance(exc, SynestheteError):
        log.error("live session failed", exc_info=exc)
    return {"type": "error", **error_body(exc)}


# ---- the factory --------------------------------------------------------------------------


def create_app(service: SynestheteAPI, settings: Settings | None = None, *,
               rate_limit_storage: str | None = None, local_token: str = "") -> web.Application:
    """The web application over an open service (:class:`engine.service.SynestheteService`).

    The caller owns the service (opens and closes it); the app never touches the
    environment: everything comes from ``settings`` (default: the service's).
    ``rate_limit_storage``: a limits storage URI shared by several engine
    processes (``async+redis://host:6379``); default ``SYNESTHETE_WEB_RATE_LIMIT_STORAGE``,
    and when that is empty this process's memory.
    Each app has its own metrics registry, so two apps in one process never clash.
    """
    settings = settings or service.settings
    metrics = WebMetrics()
    app = web.Application(client_max_size=settings.resolved_web_max_request_bytes,
                          middlewares=[metrics_middleware, headers_middleware, errors_middleware])
    app[SERVICE] = service
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[LIMITS] = make_limiters(settings.web_rate_per_minute, settings.web_rate_burst,
                                settings.web_search_rate_per_minute, settings.web_search_rate_burst,
                                rate_limit_storage or settings.web_rate_limit_storage or None)
    app[LIVE] = {"open": 0}
    app[LOCAL_TOKEN] = local_token  # engine.client.advertise: trusted like SYNESTHETE_ENGINE_TOKEN
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics.handler())
    app.router.add_get("/api/config", api_config)
    app.router.add_get("/api/about", api_about)
    app.router.add_post("/api/recommend", recommend)
    app.router.add_get("/api/similar", similar)
    app.router.add_get("/api/radio", radio)
    app.router.add_post("/api/radio", radio_from_audio)
    app.router.add_get("/api/search", search)
    app.router.add_get("/api/listen", listen)
    app.router.add_static("/static", STATIC_DIR, append_version=False)
    return app
