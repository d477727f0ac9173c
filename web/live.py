"""Listen live: a growing recording streamed over a WebSocket, a running guess every few seconds.

How it works, and why:

* The browser's ``MediaRecorder`` (Opus in WebM) emits a chunk every ~second;
  the chunks, appended, are one valid *growing* WebM stream (the first chunk
  carries the header, later ones carry clusters).  So the session simply keeps
  the bytes and, every ``web_live_interval_s`` seconds, decodes the whole
  accumulated buffer with the engine's normal ``recommend`` — the same decode →
  fingerprint → embed → search path as an upload, so a live answer and an
  upload answer of the same audio are the same answer.  Re-decoding from the
  start costs O(seconds heard) per guess, which for <= 15-20 s recordings is
  tens of milliseconds of ffmpeg: far simpler than a streaming decoder and
  immune to chunk boundaries falling mid-frame (ffmpeg keeps the whole frames
  of a cut-off tail).
* The work runs off the event loop through ``service.arecommend`` (bounded
  executor + timeout), and at most one guess per session runs at a time: a slow
  machine gets fewer guesses, never a queue of stale ones.
* Listening stops early once the fingerprint identifies the song with confidence
  >= ``web_live_stop_confidence`` (a phone app's "got it"; see ``STOP_METHODS``); otherwise at
  ``web_record_seconds`` or when the client says stop, with a final guess on
  everything heard.
* Too little signal so far (``too_short`` / ``empty``) is not an error while
  listening: it only means "keep going".  Other audio errors end the session
  with the error's one friendly sentence.

Protocol (JSON text frames from the server; see docs/api.md):

    client -> server   binary frames: the recorder's chunks, in order
                       {"type": "stop"}: recording ended, give the final answer
    server -> client   {"type": "listening", "seconds": s}
                       {"type": "guess", "seconds": s, "confident": bool, "answer": {...}}
                       {"type": "done", "reason": "identified|stopped|max_seconds", "seconds": s,
                        "confident": bool, "answer": {...} | null}
                       {"type": "error", "kind": k, "message": one sentence}
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from engine.api import SynestheteAPI
from engine.errors import (
    BusyError,
    CorruptAudioError,
    EmptyAudioError,
    TooLargeAudioError,
    TooShortAudioError,
)
from engine.service import Recommendation
from engine.settings import Settings

from .answers import public_answer
from .metrics import WebMetrics

log = logging.getLogger(__name__)

#: Largest single WebSocket frame accepted (a MediaRecorder chunk is a few KiB).
MAX_FRAME_BYTES = 1024 * 1024
#: A client that sends nothing for this long is gone.
IDLE_TIMEOUT_S = 15.0
#: Wall-clock grace after ``web_record_seconds`` before the server ends a session itself.
GRACE_S = 5.0


#: Identification methods trusted to stop listening early: those the landmarks take part in.
#: On the dev corpus every wrong early stop (4 of 238 voice messages, before the calibration of
#: issue 15) was an embedding-only vote at 0.85-0.92.  A live session asks again every interval,
#: so it has many chances of one chance answer; a wrong "got it" is worse than listening two
#: more seconds, so an embedding-only identification is shown as the running guess but never
#: ends the session, even when calibrated.
STOP_METHODS = ("fingerprint", "both")


def is_confident(rec: Recommendation | None, stop_confidence: float) -> bool:
    """True when the recording is identified, by the fingerprint, with at least ``stop_confidence``."""
    ident = rec.identified if rec is not None else None
    return bool(ident is not None and ident.confidence >= stop_confidence and ident.method in STOP_METHODS)


@dataclass
class LiveGuess:
    """What the session thinks after hearing ``seconds`` of audio (``rec`` None: not enough yet)."""

    seconds: float
    rec: Recommendation | None
    confident: bool

    def message(self, kind: str = "guess", **extra: Any) -> dict[str, Any]:
        if self.rec is None and kind == "guess":
            return {"type": "listening", "seconds": round(self.seconds, 1)}
        return {"type": kind, "seconds": round(self.seconds, 1), "confident": self.confident,
                "answer": public_answer(self.rec) if self.rec is not None else None, **extra}


class LiveSession:
    """The accumulated stream of one listener and the guesses made on it.

    Transport-free (the WebSocket handler and ``bench/live_time_to_answer.py``
    both drive it): ``add(chunk)`` then ``await guess()``.
    """

    def __init__(self, service: SynestheteAPI, settings: Settings, clock: Callable[[], float] = time.monotonic,
                 *, metrics: WebMetrics | None = None) -> None:
        self.service = service
        self.settings = settings
        self.clock = clock
        self.metrics = metrics  # None: not counted (the benchmark drives sessions without an app)
        self.buffer = bytearray()
        self.max_bytes = settings.max_upload_bytes
        self.started_at: float | None = None
        self.guessed_bytes = 0  # buffer length at the last guess
        self.best: LiveGuess | None = None
        self.guesses = 0

    # ---- input ------------------------------------------------------------------

    def add(self, chunk: bytes) -> None:
        if self.started_at is None:
            self.started_at = self.clock()
        if len(self.buffer) + len(chunk) > self.max_bytes:
            raise TooLargeAudioError(f"live stream passed {self.max_bytes} bytes")
        self.buffer.extend(chunk)

    @property
    def elapsed(self) -> float:
        return 0.0 if self.started_at is None else self.clock() - self.started_at

    @property
    def has_new_audio(self) -> bool:
        return len(self.buffer) > self.guessed_bytes

    # ---- guessing ---------------------------------------------------------------

    async def guess(self) -> LiveGuess:
        """Recommend on everything heard so far, off the event loop.

        Raises the engine's typed errors, except "not enough signal yet", which
        gives a guess with ``rec=None``.
        """
        data = bytes(self.buffer)
        self.guessed_bytes = len(data)
        self.guesses += 1
        try:
            with self.metrics.audio_query("live") if self.metrics is not None else nullcontext():
                rec = await self.service.arecommend(data)
        except (TooShortAudioError, EmptyAudioError):
            return LiveGuess(self.elapsed, None, False)
        except CorruptAudioError:
            # a stream cut before its first whole frame reads as damaged: keep listening a while
            if self.elapsed < self.settings.min_signal_seconds * 2 + self.settings.web_live_interval_s:
                return LiveGuess(self.elapsed, None, False)
            raise
        g = LiveGuess(float(rec.query_seconds or self.elapsed), rec,
                      is_confident(rec, self.settings.web_live_stop_confidence))
        if self.best is None or _rank(g) >= _rank(self.best):
            self.best = g
        return g


def _rank(g: LiveGuess) -> tuple[int, float]:
    """Later guesses hear more, so they win unless an earlier one was identified and this one is not."""
    ident = g.rec is not None and g.rec.identified is not None
    return (1 if ident else 0, g.seconds)


class _WebSocketRun:
    """One live session's WebSocket loop, split by phase: receive, guess, final answer.

    Receiving and guessing overlap: chunks keep arriving while a guess runs, and
    at most one guess runs at a time.  ``reason`` is why the session ended;
    ``done`` means the client has had its last message (or is gone).
    """

    def __init__(self, ws: Any, session: LiveSession, on_error: Callable[[Exception], dict]) -> None:
        self.ws = ws
        self.session = session
        self.on_error = on_error
        settings = session.settings
        self.interval = max(0.5, settings.web_live_interval_s)
        self.deadline = settings.web_record_seconds + GRACE_S
        self.send_lock = asyncio.Lock()
        self.reason = "stopped"
        self.done = False
        self.running: asyncio.Task | None = None
        self.last_guess_at = 0.0

    def end(self, reason: str) -> None:
        self.done, self.reason = True, reason

    async def send(self, msg: dict) -> None:
        """Send one JSON message; a client that is gone is not an error."""
        if self.ws.closed:
            return
        async with self.send_lock:
            try:
                await self.ws.send_json(msg)
            except (ConnectionError, RuntimeError):
                pass

    async def one_guess(self) -> None:
        """A running guess: tell the client, and end the session once identified or out of time."""
        session, settings = self.session, self.session.settings
        try:
            g = await session.guess()
        except BusyError as exc:
            await self.send({"type": "status", "kind": exc.kind, "message": exc.user_message})
            return
        except Exception as exc:  # noqa: BLE001 - every error becomes one sentence
            self.end("error")
            await self.send(self.on_error(exc))
            await self.ws.close()
            return
        if g.confident:
            self.end("identified")
            await self.send(g.message("done", reason="identified"))
            await self.ws.close()
        elif g.seconds >= settings.web_record_seconds:
            self.end("max_seconds")
            if session.best is None:
                await self.send(self.on_error(TooShortAudioError("nothing decodable by the end of the recording")))
            else:
                await self.send(session.best.message("done", reason="max_seconds"))
            await self.ws.close()
        else:
            await self.send(g.message())

    def maybe_guess(self, now: float) -> None:
        """Start a guess when none runs, one interval has passed, and there can be enough signal."""
        if (self.running is None or self.running.done()) and now - self.last_guess_at >= self.interval \
                and now >= min(self.interval, self.session.settings.min_signal_seconds):
            self.last_guess_at = now
            self.running = asyncio.create_task(self.one_guess())

    async def receive(self) -> None:
        """Take the client's frames until it stops, goes quiet or away, or the session ends."""
        from aiohttp import WSMsgType

        while not self.done:
            try:
                msg = await asyncio.wait_for(self.ws.receive(), timeout=IDLE_TIMEOUT_S)
            except TimeoutError:
                self.reason = "idle"
                return
            if msg.type == WSMsgType.BINARY:
                try:
                    self.session.add(msg.data)
                except TooLargeAudioError as exc:
                    self.end("error")
                    await self.send(self.on_error(exc))
                    return
                now = self.session.elapsed
                self.maybe_guess(now)
                if now > self.deadline:
                    self.reason = "max_seconds"
                    return
            elif msg.type == WSMsgType.TEXT:
                if msg.data.strip().lower() in ('{"type":"stop"}', '{"type": "stop"}', "stop"):
                    self.reason = "stopped"
                    return
            else:  # CLOSE, CLOSING, CLOSED, ERROR
                self.end("closed")
                return

    async def final_answer(self) -> str | None:
        """The answer on everything heard, after the client stopped; "error" when there is none to give."""
        session = self.session
        if session.has_new_audio or session.best is None:
            try:
                g = await session.guess()
                final = g if g.rec is not None else (session.best or g)
                if session.best is not None and _rank(session.best) > _rank(final):
                    final = session.best
            except Exception as exc:  # noqa: BLE001
                if session.best is None:
                    await self.send(self.on_error(exc))
                    return "error"
                final = session.best
        else:
            final = session.best
        if final.rec is None:
            await self.send(self.on_error(TooShortAudioError("stream ended before enough signal")))
        else:
            await self.send(final.message("done", reason=self.reason))
        return None


async def run_websocket(ws: Any, session: LiveSession, *, on_error: Callable[[Exception], dict]) -> str:
    """Drive one live session over an open aiohttp WebSocket; returns why it ended.

    Receiving and guessing overlap: chunks keep arriving while a guess runs.
    """
    run = _WebSocketRun(ws, session, on_error)
    try:
        await run.receive()
        if run.running is not None and not run.running.done():
            await run.running
        if not run.done and not ws.closed:
            failed = await run.final_answer()
            if failed is not None:
                return failed
    finally:
        if run.running is not None and not run.running.done():
            run.running.cancel()
        if not ws.closed:
            await ws.close()
    return run.reason
