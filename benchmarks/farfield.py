"""Far-field meetings with overlap, built from real close-talk speech, with exact references.

The recipe (issue 23): real LibriSpeech and JFK utterances are cut at their pauses into phrases
of 0.5-6 s; speakers take turns with a random gap, often negative (one starts before the other
ends), and short backchannels land inside a longer phrase. Each speaker sits at a distance of
their own: their phrases are convolved with a room impulse response (a direct path, a few early
reflections, an exponentially decaying diffuse tail of the speaker's RT60) and attenuated
(0 to -15 dB); a low noise floor (a fan: brown-ish noise) is added. The reference turns come
from the dry phrases' own activity (10 ms frames within 30 dB of the phrase's loudest, pauses
under 0.25 s bridged), so overlap and the quiet speakers are scored exactly. Deterministic
(seeded); nothing is written to disk.

    from benchmarks.farfield import far_field_meetings
    meetings = far_field_meetings(SPEECH_DIR)  # benchmarks.meetings.Meeting each
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.meetings import Meeting
from pipeline.schema import SAMPLE_RATE, Audio, Turn

FRAME = SAMPLE_RATE // 100  # 10 ms


@dataclass(frozen=True)
class Talker:
    name: str
    sources: tuple[Path, ...]  # close-talk recordings of this speaker
    gain_db: float  # level at the microphone relative to the loudest talker (distance)
    rt60: float  # seconds: how reverberant the path from this seat is


@dataclass(frozen=True)
class Phrase:
    samples: np.ndarray  # dry, peak-normalised to 0.5
    spans: tuple[tuple[float, float], ...]  # speech inside it (seconds from its start)


def activity(samples: np.ndarray, floor_db: float = -30.0, bridge_s: float = 0.25) -> list[tuple[float, float]]:
    """Speech spans of a dry recording: 10 ms frames within `floor_db` of its loudest frame,
    pauses shorter than `bridge_s` bridged. -30 dB: LibriSpeech's own background sits near
    -40 dB (a -40 floor marks a whole utterance, silences included: 11.8 of 11.8 s for
    19-198-0001), while -30 and -25 dB agree (8.5 and 8.4 s)."""
    n = len(samples) // FRAME
    if n == 0:
        return []
    rms = np.sqrt((samples[: n * FRAME].reshape(n, FRAME) ** 2).mean(axis=1)) + 1e-12
    loud = 20 * np.log10(rms / rms.max()) > floor_db
    spans: list[list[float]] = []
    for i in np.flatnonzero(loud):
        start, end = i * FRAME / SAMPLE_RATE, (i + 1) * FRAME / SAMPLE_RATE
        if spans and start - spans[-1][1] < bridge_s:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [(s, e) for s, e in spans if e - s >= 0.1]  # a lone 10-90 ms blip is no speech


def phrases_of(samples: np.ndarray, longest_s: float = 6.0) -> list[Phrase]:
    """A recording cut at its pauses (>= 0.25 s) into phrases of at most `longest_s` (joined
    while they fit), each with its own speech spans."""
    spans = activity(samples)
    groups: list[list[tuple[float, float]]] = []
    for span in spans:
        if groups and span[1] - groups[-1][0][0] <= longest_s:
            groups[-1].append(span)
        else:
            groups.append([span])
    phrases = []
    for group in groups:
        start, end = group[0][0], group[-1][1]
        if end - start < 0.5:
            continue
        piece = samples[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
        piece = piece / max(1e-6, float(np.abs(piece).max())) * 0.5
        phrases.append(Phrase(piece.astype(np.float32), tuple((s - start, e - start) for s, e in group)))
    return phrases


def room_impulse(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A far-field impulse response: the direct path, early reflections (2-25 ms, in phase), and a
    diffuse tail decaying 60 dB in `rt60` s, duller than the direct sound (walls absorb high
    frequencies first: a one-pole low-pass), with half the direct path's energy
    (direct-to-reverberant ratio ~3 dB, as at 1-2 m in a meeting room)."""
    from scipy.signal import lfilter

    length = int(rt60 * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    response = np.zeros(length, dtype=np.float64)
    response[0] = 1.0
    for _ in range(6):
        # hard walls and the table reflect in phase, weaker the longer the path
        delay = rng.uniform(0.002, 0.025)
        response[int(delay * SAMPLE_RATE)] += rng.uniform(0.3, 0.7) * (0.002 / delay) ** 0.5
    tail = lfilter([0.3], [1.0, -0.7], rng.normal(0, 1, length)) * np.exp(-6.9 * t / rt60)
    tail[: int(0.005 * SAMPLE_RATE)] = 0.0
    response += tail / np.sqrt((tail**2).sum()) * np.sqrt(0.5 * (response**2).sum())
    return response / np.sqrt((response**2).sum())


def _fan_noise(rng: np.random.Generator, length: int) -> np.ndarray:
    brown = np.cumsum(rng.normal(0, 1, length))
    brown -= np.convolve(brown, np.ones(801) / 801, mode="same")  # no drift: a steady hum
    return brown / (np.abs(brown).max() + 1e-9)


def build_far_field(
    name: str,
    talkers: list[Talker],
    seconds: float,
    seed: int,
    overlap_share: float = 0.45,
    backchannel_share: float = 0.25,
    noise_db: float = -50.0,
) -> Meeting:
    """A meeting of about `seconds`: talkers take turns (never the same twice in a row),
    `overlap_share` of the turns start before the previous one ends (by 0.3-1.5 s), and a
    `backchannel_share` of turns get a short phrase of another talker inside them."""
    from scipy.signal import fftconvolve

    from pipeline.audio import load_audio

    rng = np.random.default_rng(seed)
    phrases = {t.name: [p for s in t.sources for p in phrases_of(load_audio(s).samples)] for t in talkers}
    for t in talkers:
        rng.shuffle(phrases[t.name])
    used = {t.name: 0 for t in talkers}

    def next_phrase(talker: str) -> Phrase:
        pool = phrases[talker]
        used[talker] += 1
        return pool[(used[talker] - 1) % len(pool)]

    def short_phrase(talker: str) -> Phrase:
        pool = [p for p in phrases[talker] if len(p.samples) < 1.6 * SAMPLE_RATE] or phrases[talker]
        return pool[int(rng.integers(len(pool)))]

    placed: list[tuple[float, str, Phrase]] = []
    busy = {x.name: 0.0 for x in talkers}  # nobody overlaps themselves

    def place(start: float, talker: str, phrase: Phrase) -> None:
        placed.append((start, talker, phrase))
        busy[talker] = start + len(phrase.samples) / SAMPLE_RATE + 0.2

    t, previous = 0.5, None
    while t < seconds:
        talker = str(rng.choice([x.name for x in talkers if x.name != previous]))
        phrase = next_phrase(talker)
        t = max(t, busy[talker])
        place(t, talker, phrase)
        length = len(phrase.samples) / SAMPLE_RATE
        if rng.random() < backchannel_share and length > 2.5:
            other = str(rng.choice([x.name for x in talkers if x.name != talker]))
            at = t + rng.uniform(0.8, length - 1.2)
            if at >= busy[other]:
                place(at, other, short_phrase(other))
        gap = -rng.uniform(0.3, min(1.5, 0.6 * length)) if rng.random() < overlap_share else rng.uniform(0.1, 0.8)
        t, previous = t + length + gap, talker

    total = int((max(s + len(p.samples) / SAMPLE_RATE for s, _, p in placed) + 0.7) * SAMPLE_RATE)
    mix = np.zeros(total, dtype=np.float64)
    seat = {x.name: x for x in talkers}
    responses = {x.name: room_impulse(rng, x.rt60) for x in talkers}
    turns: list[Turn] = []
    for start, talker, phrase in placed:
        wet = fftconvolve(phrase.samples, responses[talker])
        i = int(start * SAMPLE_RATE)
        end = min(total, i + len(wet))
        mix[i:end] += wet[: end - i] * 10 ** (seat[talker].gain_db / 20)
        turns += [Turn(round(start + s, 3), round(start + e, 3), talker) for s, e in phrase.spans]
    mix += _fan_noise(rng, total) * 10 ** (noise_db / 20) * np.abs(mix).max()
    mix = mix / np.abs(mix).max() * 0.7
    return Meeting(name, Audio(mix.astype(np.float32)), sorted(turns, key=lambda x: (x.start, x.end)))


def far_field_meetings(speech_dir: Path) -> list[Meeting]:
    """Three meetings (about 60 s each): 4 talkers (LibriSpeech 19, 26, 27 and JFK) at
    different distances with much overlap; 3 talkers, one of them far and quiet; 2 talkers
    overlapping often in a reverberant room."""
    ls = speech_dir / "librispeech"

    def libri(chapter: str, ks) -> tuple[Path, ...]:
        return tuple(ls / f"{chapter}-{k:04d}.wav" for k in ks)

    jfk = (speech_dir / "jfk.flac",)
    four = [
        Talker("S19", libri("19-198", range(1, 6)), 0.0, 0.45),
        Talker("S26", libri("26-495", range(0, 5)), -5.0, 0.5),
        Talker("S27", libri("27-123349", range(2, 7)), -9.0, 0.6),
        Talker("JFK", jfk, -3.0, 0.5),
    ]
    three = [
        Talker("S19", libri("19-198", range(6, 12)), -2.0, 0.4),
        Talker("S26", libri("26-495", range(6, 12)), 0.0, 0.45),
        Talker("S27", libri("27-123349", range(7, 12)), -15.0, 0.6),
    ]
    two = [
        Talker("S26", libri("26-495", range(8, 12)), 0.0, 0.65),
        Talker("S27", libri("27-123349", range(0, 4)), -6.0, 0.7),
    ]
    return [
        build_far_field("far4_overlap", four, 60.0, seed=23),
        build_far_field("far3_quiet", three, 60.0, seed=24, overlap_share=0.35),
        build_far_field("far2_reverb", two, 60.0, seed=25, overlap_share=0.5),
    ]
