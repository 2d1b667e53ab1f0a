"""Known speakers: the clusters whose voice matches a reference clip take its name (OpenAI's
`known_speaker_names[]` with `known_speaker_references[]`).

Each speaker's voice is the mean unit embedding (resemblyzer's encoder, as the offline
diarizer's) of the 1.6 s windows over the stretches where it alone speaks; each reference's, of
the windows over the clip. Names go by a one-to-one assignment that maximises the summed cosine
similarity, keeping only pairs at or above the threshold: two clusters never share a name, and a
cluster whose best reference is not similar enough keeps its label.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.diarize.encoder import EMBED_ROWS, FRAME_SECONDS, WINDOW_FRAMES, partial_windows
from pipeline.errors import InvalidSpeakerReference
from pipeline.intervals import Regions
from pipeline.schema import SAMPLE_RATE, Audio, Turn

# Measured with benchmarks/bench_known_speakers.py on the dev set's multi-speaker files
# (references cut from other parts of each recording): BENCHMARKS.md, "Known speakers".
MATCH_THRESHOLD = 0.85
REFERENCE_SECONDS = (2.0, 10.0)  # OpenAI's bounds on a reference clip
MAX_REFERENCES = 4  # OpenAI's; a config may allow more (DiarizeConfig.max_known_speakers)
MIN_SOLO_SECONDS = 1.0  # less than this alone: the speaker's voice is read from all of its turns


@dataclass(frozen=True)
class KnownSpeaker:
    """A name and its reference clip as sent (encoded audio: bytes, so a Request stays hashable)."""

    name: str
    audio: bytes


@dataclass(frozen=True)
class SpeakerReference:
    """A name and its reference clip decoded (16 kHz mono float32)."""

    name: str
    samples: np.ndarray

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def check_names(names: Sequence[str], references: int, limit: int = MAX_REFERENCES) -> None:
    """The names and references a request gives: as many of each, at most `limit`, names
    non-empty and distinct."""
    if len(names) != references:
        raise InvalidSpeakerReference(
            f"known_speaker_names[] ({len(names)}) and known_speaker_references[] ({references}) "
            "must come in pairs: one reference clip per name"
        )
    if len(names) > limit:
        raise InvalidSpeakerReference(
            f"known_speaker_names[]: at most {limit} known speakers, not {len(names)} "
            "(the max_known_speakers setting, --max-known-speakers, allows more)"
        )
    for i, name in enumerate(names):
        if not name.strip():
            raise InvalidSpeakerReference(f"known_speaker_names[{i}] is empty")
    if len({n.strip() for n in names}) != len(names):
        raise InvalidSpeakerReference("known_speaker_names[] must be distinct: two clusters never get one name")


def known_speakers_in(folder: Path) -> tuple[KnownSpeaker, ...]:
    """A folder's reference clips, one per speaker, each named after its file (alice.wav: alice),
    in name order (the CLI's and batch job's --known-speakers)."""
    if not folder.is_dir():
        raise InvalidSpeakerReference(f"--known-speakers {folder}: not a folder")
    clips = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not clips:
        raise InvalidSpeakerReference(f"--known-speakers {folder}: no reference clips in it")
    return tuple(KnownSpeaker(p.stem, p.read_bytes()) for p in clips)


@functools.lru_cache(maxsize=8)
def decode_references(known: tuple[KnownSpeaker, ...]) -> tuple[SpeakerReference, ...]:
    """Each clip decoded and its length checked; a bad one is an error naming its field.
    Kept for the next call with the same clips (a batch job's every file, a client's repeats)."""
    from pipeline.audio import AudioLimits, load_audio
    from pipeline.errors import PipelineError

    low, high = REFERENCE_SECONDS
    limits = AudioLimits(max_bytes=16 << 20, max_seconds=60.0)  # a clip, not a recording
    out = []
    for i, speaker in enumerate(known):
        try:
            samples = load_audio(speaker.audio, limits).samples
        except PipelineError as exc:
            raise InvalidSpeakerReference(
                f"known_speaker_references[{i}] ({speaker.name}) is not usable audio: {exc}"
            ) from None
        reference = SpeakerReference(speaker.name, samples)
        if not low <= reference.seconds <= high:
            raise InvalidSpeakerReference(
                f"known_speaker_references[{i}] ({speaker.name}) is {reference.seconds:.1f} s long; "
                f"a reference clip must be {low:g}-{high:g} s"
            )
        out.append(reference)
    return tuple(out)


def references_digest(known: Sequence[KnownSpeaker]) -> list[tuple[str, str]]:
    """What identifies the known speakers in a cache key: each name and its clip's sha256."""
    import hashlib

    return [(k.name, hashlib.sha256(k.audio).hexdigest()) for k in known]


class VoicePrints:
    """Speaker embeddings from an encoder with `mel(audio)` and `__call__(mels) -> unit rows`
    (pipeline.diarize.encoder.SpeakerEncoder)."""

    def __init__(self, encoder):
        self.encoder = encoder

    def of_spans(self, mel: np.ndarray, spans: Sequence[tuple[float, float]]) -> np.ndarray | None:
        """The mean unit embedding of the windows tiling `spans` of a mel spectrogram (None: no frames)."""
        windows = []
        for start, end in spans:
            frames = mel[int(start / FRAME_SECONDS) : int(end / FRAME_SECONDS)]
            if len(frames) >= WINDOW_FRAMES // 4:  # a quarter window: shorter carries little voice
                windows += partial_windows(frames)
        if not windows:
            return None
        batch = np.stack(windows)
        rows = np.concatenate([self.encoder(batch[i : i + EMBED_ROWS]) for i in range(0, len(batch), EMBED_ROWS)])
        mean = rows.mean(axis=0)
        return mean / (np.linalg.norm(mean) or 1.0)

    def of_reference(self, reference: SpeakerReference) -> np.ndarray | None:
        mel = self.encoder.mel(Audio(reference.samples))
        return self.of_spans(mel, [(0.0, reference.seconds)])

    def of_speakers(self, audio: Audio, turns: Sequence[Turn]) -> dict[str, np.ndarray]:
        """Each speaker's voice, from where it alone speaks (all of its turns when that is short)."""
        mel = self.encoder.mel(audio)
        out = {}
        for speaker in dict.fromkeys(t.speaker for t in turns):
            own = Regions.of([(t.start, t.end) for t in turns if t.speaker == speaker])
            others = Regions.of([(t.start, t.end) for t in turns if t.speaker != speaker])
            solo = own.minus(others)
            spans = solo.spans if solo.seconds >= MIN_SOLO_SECONDS else own.spans
            voice = self.of_spans(mel, spans)
            if voice is not None:
                out[speaker] = voice
        return out


def similarities(voices: dict[str, np.ndarray], references: dict[str, np.ndarray]) -> np.ndarray:
    """(speakers, references) cosine similarities, in the dicts' orders."""
    if not voices or not references:
        return np.zeros((len(voices), len(references)))
    return np.stack(list(voices.values())) @ np.stack(list(references.values())).T


def match(similarity: np.ndarray, threshold: float = MATCH_THRESHOLD) -> dict[int, int]:
    """Speaker row -> reference column: one-to-one, the most similar overall, at or above the threshold."""
    from scipy.optimize import linear_sum_assignment

    if similarity.size == 0:
        return {}
    rows, cols = linear_sum_assignment(-similarity)
    return {int(r): int(c) for r, c in zip(rows, cols) if similarity[r, c] >= threshold}


def name_speakers(
    turns: list[Turn],
    audio: Audio,
    references: Sequence[SpeakerReference],
    prints: VoicePrints,
    threshold: float = MATCH_THRESHOLD,
) -> list[Turn]:
    """`turns` with each matched speaker's label replaced by its reference's name."""
    if not turns or not references:
        return turns
    voices = prints.of_speakers(audio, turns)
    refs = {r.name: v for r in references if (v := prints.of_reference(r)) is not None}
    pairs = match(similarities(voices, refs), threshold)
    speakers, names = list(voices), list(refs)
    renamed = {speakers[s]: names[r] for s, r in pairs.items()}
    return [Turn(t.start, t.end, renamed.get(t.speaker, t.speaker)) for t in turns]
