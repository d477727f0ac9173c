"""Keep the bot token out of every log line and error text.

The token comes only from :class:`engine.settings.Settings` (``repr=False`` there);
this filter is the second belt: any record whose message or arguments contain
the token (an exception text quoting a header, a URL) is rewritten.
"""

from __future__ import annotations

import logging

REDACTED = "[token redacted]"


def redact(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s and s in text:
            text = text.replace(s, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    def __init__(self, *secrets: str) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 8]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is not our problem here
            return True
        clean = redact(msg, self.secrets)
        if record.exc_info and record.exc_info[1] is not None:
            # format the traceback now, redacted, so handlers print the clean text
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(formatted, self.secrets)
            record.exc_info = None
            clean = clean + "\n" + record.exc_text
            record.exc_text = None
        if clean != msg or record.args:
            record.msg, record.args = clean, None
        return True


def install(*secrets: str) -> RedactingFilter:
    """Attach the filter to every handler of the root logger (and future records via root)."""
    flt = RedactingFilter(*secrets)
    root = logging.getLogger()
    for h in root.handlers:
        h.addFilter(flt)
    root.addFilter(flt)
    return flt
