"""Typed errors raised by the pipeline. serve/ maps them to HTTP status codes in one place."""


class PipelineError(Exception):
    """Base class: something about the input or configuration, not a bug."""

    code = "pipeline_error"


class AudioEmpty(PipelineError):
    code = "audio_empty"


class AudioDecodeError(PipelineError):
    code = "audio_undecodable"


class AudioTruncated(AudioDecodeError):
    code = "audio_truncated"


class AudioTooLarge(PipelineError):
    code = "audio_too_large"


class AudioTooLong(PipelineError):
    code = "audio_too_long"


class UnsupportedLanguage(PipelineError):
    code = "unsupported_language"


class InvalidOption(PipelineError):
    code = "invalid_option"


class UnknownModel(InvalidOption):
    """A request named an ASR model this pipeline does not hold."""

    code = "model_not_found"


class MultilingualModelNeeded(InvalidOption):
    """What was asked (translation) needs a multilingual ASR model and none is configured."""

    code = "multilingual_model_needed"


class StreamNotAvailable(InvalidOption):
    """stream=true with a response format that is not streamed (OpenAI streams json and text)."""

    code = "unsupported_stream"


class InvalidSpeakerReference(InvalidOption):
    """A bad known speaker (reference clip or name): the message names the field."""

    code = "invalid_speaker_reference"


class ModelNotFound(PipelineError):
    code = "model_not_found"
