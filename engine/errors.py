"""Typed errors, each with one sentence a user may see.

Why: the bot, the CLI and the web page must all say the same friendly thing for
the same problem, and log the detail.  ``user_message`` is that sentence;
``str(exc)`` is the detail for the log.  ``kind`` is a short stable name used
in metrics and HTTP mapping.
"""

from __future__ import annotations


class SynestheteError(Exception):
    kind = "internal"
    user_message = "Something went wrong on our side; please try again later."

    def __init__(self, detail: str = "", *, user_message: str | None = None) -> None:
        super().__init__(detail or self.user_message)
        if user_message is not None:
            self.user_message = user_message


# ---- audio -----------------------------------------------------------------


class AudioError(SynestheteError):
    kind = "audio"
    user_message = "I couldn't read that audio."


class NotAudioError(AudioError):
    kind = "not_audio"
    user_message = "That file doesn't look like audio; send an mp3, ogg, m4a, wav, flac or a voice message."


class CorruptAudioError(AudioError):
    kind = "corrupt"
    user_message = "That audio file seems damaged or cut off, so I couldn't decode it."


class EmptyAudioError(AudioError):
    kind = "empty"
    user_message = "That file is empty."


class TooShortAudioError(AudioError):
    kind = "too_short"
    user_message = "I need at least a couple of seconds of music to listen to; that was too short or silent."


class TooLargeAudioError(AudioError):
    kind = "too_large"
    user_message = "That file is too large for me; please send a shorter clip."


class DecodeTimeoutError(AudioError):
    kind = "timeout"
    user_message = "Decoding that audio took too long; please try a shorter or simpler file."


# ---- models / index --------------------------------------------------------


class ModelError(SynestheteError):
    kind = "model"
    user_message = "The listening model isn't available right now."


class WeightsUnavailableError(ModelError):
    kind = "weights_unavailable"
    user_message = "The model weights are not installed and could not be downloaded."


class StoreError(SynestheteError):
    kind = "store"
    user_message = "The music index isn't available right now; please try again later."


class StoreUnavailableError(StoreError):
    """Milvus failed after the index was open: the server restarted, the network was cut.

    Mapped once, in ``engine.store``, from whatever pymilvus / gRPC raised; the web API
    answers 503 with Retry-After, the bot says the sentence, the CLI exits 1.
    """

    kind = "store_unavailable"
    user_message = "The music index isn't available right now; please try again in a minute."


class EngineUnavailableError(SynestheteError):
    """The engine process named by SYNESTHETE_ENGINE_URL did not answer (engine.client)."""

    kind = "engine_unavailable"
    user_message = "The music engine isn't reachable right now; please try again in a minute."


class StoreLockedError(StoreError):
    kind = "store_locked"
    user_message = "The music index is being used by another process; please try again shortly."


class IndexModelMismatchError(StoreError):
    kind = "model_mismatch"
    user_message = "The music index was built with a different model; it needs to be rebuilt."


class EmptyIndexError(StoreError):
    kind = "empty_index"
    user_message = "The music catalogue is empty: it hasn't been built yet."


class TrackNotFoundError(SynestheteError):
    kind = "not_found"
    user_message = "I couldn't find that track in the catalogue."


class BusyError(SynestheteError):
    kind = "busy"
    user_message = "I'm busy listening to other songs; please try again in a moment."


class QueryTimeoutError(SynestheteError):
    kind = "query_timeout"
    user_message = "That took too long; please try again with a shorter clip."


class BadFilterError(SynestheteError):
    """A filter the user gave cannot be applied (contradictory range, unknown value)."""

    kind = "bad_filter"
    user_message = "Those filters don't make sense together; please check them."


class BadRadioLengthError(SynestheteError):
    """A radio of a length outside 1..RADIO_MAX tracks (engine.radio)."""

    kind = "bad_request"
    user_message = "A radio has 1 to 50 tracks; ask for a number in that range."


class NothingMatchesError(SynestheteError):
    """The filters are valid but no catalogue track passes them."""

    kind = "no_match"
    user_message = "No track in the catalogue matches those filters; try loosening them."
