"""Attachments: which ones are audio, how big they may be, and a capped streaming download.

Order of checks, cheapest first: the attachment's metadata (flags, content type,
extension, size) decides before a byte is fetched; the download then streams
with a byte cap (a lying ``size`` or ``Content-Length`` cannot make us buffer
more) and a total timeout.  Decoding, sniffing and the engine's own limits come
after, in the engine.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import PurePosixPath
from typing import Any

import aiohttp

from engine.catalogue import AUDIO_EXTENSIONS
from engine.settings import BOT_MAX_ATTACHMENT_CEILING

from .errors import AttachmentTooLargeError, DownloadError, DownloadTimeoutError

log = logging.getLogger(__name__)

#: Hard ceiling for the bot's attachment limit (Discord Nitro uploads are up to 500 MiB;
#: we never want more than this in memory for one query).
MAX_ATTACHMENT_CEILING = BOT_MAX_ATTACHMENT_CEILING  # the one ceiling, defined with the settings
CHUNK = 64 * 1024

_AUDIO_VIDEO_TYPES = ("video/mp4", "video/webm", "video/ogg", "video/quicktime", "application/ogg")


def is_audio_attachment(att: Any) -> bool:
    """True for a voice message or a file that is audio (or a video container that may carry audio)."""
    if getattr(att, "is_voice_message", lambda: False)():
        return True
    ctype = (getattr(att, "content_type", None) or "").split(";")[0].strip().lower()
    if ctype.startswith("audio/") or ctype in _AUDIO_VIDEO_TYPES:
        return True
    if ctype and not ctype.startswith(("application/octet-stream", "binary/")):
        return False  # Discord told us what it is, and it is not audio
    return PurePosixPath(getattr(att, "filename", "") or "").suffix.lower() in AUDIO_EXTENSIONS


def effective_limit(bot_limit: int, engine_limit: int) -> int:
    return max(1, min(int(bot_limit), int(engine_limit), MAX_ATTACHMENT_CEILING))


def check_size(att: Any, limit: int) -> None:
    """Refuse from metadata alone: no download for a file we would refuse anyway."""
    size = getattr(att, "size", None)
    if size and size > limit:
        raise AttachmentTooLargeError(size, limit)


async def download(session: aiohttp.ClientSession, url: str, *, max_bytes: int, timeout_s: float) -> bytes:
    """Stream ``url`` into memory, at most ``max_bytes``, within ``timeout_s`` seconds."""
    buf = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async with session.get(url, allow_redirects=True) as resp:
                if resp.status != 200:
                    raise DownloadError(f"HTTP {resp.status} for attachment")
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise AttachmentTooLargeError(resp.content_length, max_bytes)
                async for chunk in resp.content.iter_chunked(CHUNK):
                    buf += chunk
                    if len(buf) > max_bytes:
                        raise AttachmentTooLargeError(None, max_bytes)
    except TimeoutError as exc:
        raise DownloadTimeoutError(f"download exceeded {timeout_s}s after {len(buf)} bytes") from exc
    except aiohttp.ClientError as exc:
        raise DownloadError(f"download failed: {type(exc).__name__}: {exc}") from exc
    return bytes(buf)
