"""OpenAI's `chunking_strategy`: `auto` (the configured VAD) or `server_vad`, whose threshold,
silence and padding become the VAD's own options for one request."""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.errors import InvalidOption
from pipeline.vad import VadOptions

# WhisperX's offset sits at this fraction of its onset (0.363 / 0.500): a region ends when the
# score falls a little below where it began. server_vad's one threshold keeps that hysteresis.
OFFSET_PER_ONSET = VadOptions().offset / VadOptions().onset
MAX_SILENCE_MS = 10_000  # a longer pause held inside one region would merge whole chunks of silence
MAX_PADDING_MS = 2_000


@dataclass(frozen=True)
class ServerVad:
    """OpenAI's `{"type": "server_vad", ...}` with its documented defaults."""

    threshold: float = 0.5  # speech probability that starts a region (the VAD's onset)
    silence_duration_ms: int = 200  # pauses shorter than this stay inside a region
    prefix_padding_ms: int = 300  # audio kept before each region's detected start

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise InvalidOption(f"chunking_strategy threshold must be between 0 and 1, not {self.threshold}")
        if not 0 <= self.silence_duration_ms <= MAX_SILENCE_MS:
            raise InvalidOption(
                f"chunking_strategy silence_duration_ms must be 0-{MAX_SILENCE_MS}, not {self.silence_duration_ms}"
            )
        if not 0 <= self.prefix_padding_ms <= MAX_PADDING_MS:
            raise InvalidOption(
                f"chunking_strategy prefix_padding_ms must be 0-{MAX_PADDING_MS}, not {self.prefix_padding_ms}"
            )


def server_vad(fields: dict[str, str]) -> ServerVad:
    """`server_vad` from its fields as text (a form's or a JSON object's); unknown fields are an error."""
    kinds = {"threshold": float, "silence_duration_ms": int, "prefix_padding_ms": int}
    values = {}
    for name, raw in fields.items():
        if name == "type":
            continue
        if name not in kinds:
            raise InvalidOption(f"chunking_strategy has no field {name!r} (it takes {', '.join(kinds)})")
        try:
            values[name] = kinds[name](raw)
        except (TypeError, ValueError):
            raise InvalidOption(f"chunking_strategy {name} must be a number, not {raw!r}") from None
    return ServerVad(**values)


def vad_options(configured: VadOptions, chunking: ServerVad | None) -> VadOptions:
    """The VAD options one request runs with: the configured ones, or server_vad's mapped onto them."""
    if chunking is None:
        return configured
    return replace(
        configured,
        onset=chunking.threshold,
        offset=round(chunking.threshold * OFFSET_PER_ONSET, 4),
        min_silence_seconds=chunking.silence_duration_ms / 1000,
        pad_onset_seconds=chunking.prefix_padding_ms / 1000,
    )
