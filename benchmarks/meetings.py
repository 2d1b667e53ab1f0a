"""Synthetic meetings for diarization held out from tuning: real utterances of different
speakers (LibriSpeech speakers and the multilingual clips' speakers) laid end to end, some
overlapping, with exact reference turns. Deterministic (seeded)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.schema import SAMPLE_RATE, Audio, Turn


@dataclass(frozen=True)
class Meeting:
    name: str
    audio: Audio
    turns: list[Turn]  # reference

    @property
    def speakers(self) -> int:
        return len({t.speaker for t in self.turns})


def _trimmed(samples: np.ndarray) -> np.ndarray:
    """Cut leading and trailing silence (20 ms frames under 5 % of the loudest frame's RMS)."""
    frame = SAMPLE_RATE // 50
    n = len(samples) // frame
    rms = np.sqrt((samples[: n * frame].reshape(n, frame) ** 2).mean(axis=1))
    loud = np.nonzero(rms > 0.05 * rms.max())[0]
    return samples[loud[0] * frame : (loud[-1] + 1) * frame]


def build(name: str, utterances: list[tuple[Path, str]], gaps: list[float]) -> Meeting:
    """Utterances in order; `gaps[i]` seconds between utterance i and i+1 (negative: overlap)."""
    from pipeline.audio import load_audio

    pieces = [(_trimmed(load_audio(path).samples), speaker) for path, speaker in utterances]
    starts, t = [], 0.0
    for i, (samples, _) in enumerate(pieces):
        starts.append(max(0.0, t))
        t = starts[-1] + len(samples) / SAMPLE_RATE + (gaps[i] if i < len(gaps) else 0.0)
    total = int((max(s + len(p) / SAMPLE_RATE for s, (p, _) in zip(starts, pieces)) + 0.5) * SAMPLE_RATE)
    mix = np.zeros(total, dtype=np.float32)
    turns = []
    for start, (samples, speaker) in zip(starts, pieces):
        i = int(start * SAMPLE_RATE)
        mix[i : i + len(samples)] += samples / max(1e-6, np.abs(samples).max()) * 0.5
        turns.append(Turn(round(start, 3), round(start + len(samples) / SAMPLE_RATE, 3), speaker))
    return Meeting(name, Audio(np.clip(mix, -1, 1)), turns)


def held_out_meetings(speech_dir: Path) -> list[Meeting]:
    """Four meetings: 2 speakers with overlaps, 4 and 5 speakers taking turns, and 4 speakers
    with frequent short overlaps."""
    ls = speech_dir / "librispeech"
    ml = speech_dir / "multilang"

    def libri(speaker: str, k: int) -> tuple[Path, str]:
        chapter = {"19": "19-198", "26": "26-495", "27": "27-123349"}[speaker]
        return ls / f"{chapter}-{k:04d}.wav", f"S{speaker}"

    def clip(lang: str) -> tuple[Path, str]:
        return ml / f"test_{lang}.wav", f"S_{lang}"

    rng = np.random.default_rng(12)
    two = [libri("26", k) if k % 2 == 0 else libri("19", k) for k in range(6, 12)]
    four = [
        libri("19", 8),
        clip("de"),
        libri("27", 8),
        clip("es"),
        libri("19", 9),
        clip("de"),
        libri("27", 9),
        clip("es"),
    ]
    five = [
        clip("fr"),
        libri("26", 9),
        clip("it"),
        libri("27", 10),
        clip("pt"),
        clip("fr"),
        libri("26", 10),
        clip("it"),
    ]
    busy = [libri("19", 10), clip("ja"), libri("26", 11), clip("ko"), libri("19", 11), clip("ja"), libri("26", 8)]
    return [
        build("two_overlapping", two, [-0.8, 0.3, -0.5, 0.6, -1.0]),
        build("four_taking_turns", four, list(rng.uniform(0.2, 0.8, len(four) - 1))),
        build("five_taking_turns", five, list(rng.uniform(0.2, 0.8, len(five) - 1))),
        build("four_overlapping", busy, list(rng.uniform(-0.8, 0.2, len(busy) - 1))),
    ]
