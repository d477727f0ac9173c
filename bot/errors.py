"""The bot's own refusals, in the engine's error family.

Why subclasses of :class:`engine.errors.SynestheteError`: one ``except`` clause
and one formatting path for every failure a user can meet, each with one
friendly sentence (``user_message``) and a stable ``kind`` for the metrics.
"""

from __future__ import annotations

from engine.errors import SynestheteError, TooLargeAudioError


def _fmt_mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB".replace(".0 MB", " MB")


class CooldownError(SynestheteError):
    kind = "cooldown"
    #: True when the user was already told during this refusal window (stay silent)
    quiet = False

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, round(retry_after + 0.49))
        super().__init__(f"user cooldown, retry after {retry_after:.1f}s",
                         user_message=f"You're going a bit fast for me; please try again in {self.retry_after} s.")


class GuildBusyError(SynestheteError):
    kind = "guild_busy"

    def __init__(self, running: int, retry_after: float) -> None:
        self.retry_after = max(1, round(retry_after + 0.49))
        super().__init__(f"guild has {running} queries in flight",
                         user_message=(f"I'm already listening to {running} song{'s' if running != 1 else ''} for this server; "
                                       f"please try again in {self.retry_after} s."))


class AttachmentTooLargeError(TooLargeAudioError):
    """Refused from the attachment's metadata (or while streaming), before decoding."""

    def __init__(self, size: int | None, limit: int) -> None:
        what = f"That file is {_fmt_mb(size)}" if size else "That file is too large"
        super().__init__(f"attachment {size} bytes > limit {limit}",
                         user_message=f"{what}; I can listen to files up to {_fmt_mb(limit)}, so please send a shorter clip.")


class DownloadError(SynestheteError):
    kind = "download"
    user_message = "I couldn't download that file from Discord; please try sending it again."


class DownloadTimeoutError(DownloadError):
    kind = "download_timeout"
    user_message = "Downloading that file took too long; please try again or send a shorter clip."


class NoAudioInMessageError(SynestheteError):
    kind = "no_audio"
    user_message = "That message has no audio I can listen to; it needs a voice message or an audio file."


class NothingMoreError(SynestheteError):
    kind = "no_more"
    user_message = "That's all I have for this clip; pick one of the songs above to explore from it."


class AnswerGoneError(SynestheteError):
    """A button whose answer cannot be rebuilt: not stored (or lost), or a recording whose audio is not kept."""

    kind = "answer_gone"
    user_message = "This answer is from before I restarted; send the clip again (or use /similar)."


class AnswerExpiredError(SynestheteError):
    """A button whose answer is older than the expiry, or was made by another model (its pages no longer line up)."""

    kind = "answer_expired"
    user_message = "These buttons have expired; send the clip again (or use /similar) for a fresh answer."
