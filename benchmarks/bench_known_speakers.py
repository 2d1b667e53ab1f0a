"""Question: how reliably do reference clips name the right speaker, and what similarity
threshold separates a speaker's own reference from another voice?

For every multi-speaker recording (the dev set's four, and the held-out synthetic meetings of
benchmarks/meetings.py): each reference speaker's reference clip is its longest stretch of solo
speech (2-8 s, cut from its middle); that stretch is then silenced in the audio that is
diarized, so the clip is never matched against itself. The offline diarizer (the default) finds
the speakers; each found speaker's true identity is the reference speaker it overlaps most.

Reported: the similarity of each found speaker to its own reference and to the best other one
(the same recording's other speakers, and impostors: every other recording's references), and
per threshold, names given right, names given wrong, and speakers left unnamed, with the
recording's own references alone and with two impostor references added.

    .venv/bin/python -m benchmarks.bench_known_speakers [--skip-held-out]
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

import numpy as np

from benchmarks.common import SPEECH_DIR

THRESHOLDS = (0.7, 0.75, 0.8, 0.825, 0.85, 0.875, 0.9)
MAX_REFERENCE_SECONDS = 8.0


@dataclass
class Case:
    name: str
    references: dict[str, np.ndarray]  # true speaker -> reference voice
    voices: dict[str, np.ndarray]  # found speaker -> voice
    truth: dict[str, str]  # found speaker -> true speaker


def solo_reference(turns, speaker: str, duration: float) -> tuple[float, float] | None:
    from pipeline.intervals import Regions

    own = Regions.of([(t.start, t.end) for t in turns if t.speaker == speaker])
    solo = own.minus(Regions.of([(t.start, t.end) for t in turns if t.speaker != speaker]))
    spans = [s for s in solo.spans if s[1] - s[0] >= 2.0]
    if not spans:
        return None
    start, end = max(spans, key=lambda s: s[1] - s[0])
    middle, half = (start + end) / 2, min(end - start, MAX_REFERENCE_SECONDS) / 2
    return max(0.0, middle - half), min(duration, middle + half)


def case_of(name, audio, reference_turns, diarizer, vad, prints) -> Case:
    from pipeline.diarize.known import SpeakerReference
    from pipeline.schema import SAMPLE_RATE, Audio

    speakers = list(dict.fromkeys(t.speaker for t in reference_turns))
    samples = audio.samples.copy()
    references = {}
    for speaker in speakers:
        span = solo_reference(reference_turns, speaker, audio.duration)
        if span is None:
            continue
        lo, hi = int(span[0] * SAMPLE_RATE), int(span[1] * SAMPLE_RATE)
        references[speaker] = prints.of_reference(SpeakerReference(speaker, audio.samples[lo:hi].copy()))
        samples[lo:hi] = 0.0  # never matched against itself
    held_out = Audio(samples)
    turns = diarizer.diarize(held_out, vad.analyze(held_out).speech)
    voices = prints.of_speakers(held_out, turns)
    truth = {}
    for found in voices:
        overlap = {
            s: sum(
                max(0.0, min(a.end, b.end) - max(a.start, b.start))
                for a in turns
                if a.speaker == found
                for b in reference_turns
                if b.speaker == s
            )
            for s in speakers
        }
        truth[found] = max(overlap, key=overlap.get)
    return Case(name, references, voices, truth)


def person(speaker: str) -> str:
    """Who a reference label is: the synthetic meetings reuse the dev files' LibriSpeech readers
    (S26 there is LS26 here), and an impostor must be somebody else."""
    match = re.fullmatch(r"L?S(\d+)", speaker)
    return f"librispeech-{match.group(1)}" if match else speaker


def impostors_of(case: Case, cases: list[Case]) -> list[tuple[str, np.ndarray]]:
    """Every other recording's references of people who do not speak in this one."""
    present = {person(s) for s in case.references} | {person(s) for s in case.truth.values()}
    return [
        (f"{o.name}:{s}", v)
        for o in cases
        if o is not case
        for s, v in o.references.items()
        if person(s) not in present
    ]


def score(cases: list[Case], threshold: float, impostors: int, own: bool = True) -> tuple[int, int, int, int]:
    """(right, wrong, unnamed, namable) over every found speaker whose true speaker has a
    reference; `own` False: the impostors alone (every name given is wrong)."""
    from pipeline.diarize.known import match, similarities

    right = wrong = unnamed = namable = 0
    for k, case in enumerate(cases):
        refs = dict(case.references) if own else {}
        others = impostors_of(case, cases)
        turn = k % max(1, len(others))  # a different pair of impostors for each recording
        refs.update((others[turn:] + others[:turn])[:impostors])
        names = list(refs)
        pairs = match(similarities(case.voices, refs), threshold)
        for row, found in enumerate(case.voices):
            has_reference = own and case.truth[found] in case.references
            namable += has_reference
            given = names[pairs[row]] if row in pairs else None
            if given is None:
                unnamed += has_reference
            elif given == case.truth[found]:
                right += 1
            else:
                wrong += 1
    return right, wrong, unnamed, namable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-held-out", action="store_true")
    args = parser.parse_args()

    from benchmarks.evaluation import read_rttm
    from benchmarks.meetings import held_out_meetings
    from pipeline.audio import load_audio
    from pipeline.diarize import Diarizer
    from pipeline.diarize.known import VoicePrints
    from pipeline.placement import Placement
    from pipeline.schema import Turn
    from pipeline.vad import SpeechDetector

    placement = Placement.local_cpu()
    vad = SpeechDetector(placement=placement)
    diarizer = Diarizer(placement=placement)
    prints = VoicePrints(diarizer.voice_encoder)
    folder = SPEECH_DIR / "diarization"
    recordings = []
    for name in ("sample.wav", "dev00.wav", "librispeech_3spk_turns.flac", "voxconverse_akthc.wav"):
        path = folder / name
        annotation = read_rttm(path.with_suffix(".rttm"))
        turns = [Turn(s.start, s.end, str(label)) for s, _, label in annotation.itertracks(yield_label=True)]
        recordings.append((name, load_audio(path), turns))
    if not args.skip_held_out:
        recordings += [(m.name, m.audio, m.turns) for m in held_out_meetings(SPEECH_DIR)]
    cases = [case_of(name, audio, turns, diarizer, vad, prints) for name, audio, turns in recordings]

    print("| recording | found speaker | true speaker | own reference | best other in the recording | best impostor |")
    print("|---|---|---|---|---|---|")
    for case in cases:
        impostors = [v for _, v in impostors_of(case, cases)]
        for found, voice in case.voices.items():
            true = case.truth[found]
            own = case.references.get(true)
            others = [float(voice @ v) for s, v in case.references.items() if s != true]
            worst = max((float(voice @ v) for v in impostors), default=float("nan"))
            print(
                f"| {case.name} | {found} | {true} | {'-' if own is None else f'{float(voice @ own):.3f}'} "
                f"| {max(others) if others else float('nan'):.3f} | {worst:.3f} |"
            )
    print(
        "\n| threshold | own references: right / wrong / unnamed of namable "
        "| with 2 impostors: right / wrong / unnamed | 4 impostors alone: strangers named |"
    )
    print("|---|---|---|---|")
    for threshold in THRESHOLDS:
        own = score(cases, threshold, 0)
        mixed = score(cases, threshold, 2)
        strangers = score(cases, threshold, 4, own=False)
        print(
            f"| {threshold} | {own[0]} / {own[1]} / {own[2]} of {own[3]} "
            f"| {mixed[0]} / {mixed[1]} / {mixed[2]} | {strangers[1]} of {sum(len(c.voices) for c in cases)} |"
        )


if __name__ == "__main__":
    main()
