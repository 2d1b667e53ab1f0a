"""A property test over valid audio (issue 9, item 5): whatever valid audio comes in, the
library and the CLI give a well-formed result, never an exception or a traceback.

Cases are generated deterministically (a seeded `random.Random`; no hypothesis): speech (cut
and looped from pyannote's bundled sample.wav, or espeak-ng), silence (digital zero or a noise
floor) and speech/silence mixes; 0.1 s to 40 s (edges 0.1, 0.25, 0.5, 1, 2.6, 29.9, 30.1,
40); 8 to 48 kHz; 1 to 6 channels; WAV (PCM 8/16/24 bit, float) written by soundfile and
FLAC, MP3, Ogg Vorbis and Ogg Opus encoded by ffmpeg. A failure names the case (duration,
rate, channels, content, container, seed) and its file, and lists every failing case at once.

Layer 1 runs the cases through `LocalPipeline` three ways: words timed (whisperx and the
other timed formats), untimed (OpenAI json/text skip word timing) and diarized; each
transcript is rendered in every response format and checked. The ASR runs once per
(case, way) and is shared by all formats. The named cases run all three ways, the generated
ones two of the three in rotation (the time budget: about 3 minutes on 2 cores). Language
given ("en") or not: for the bundled English-only tiny.en both plan the same decoding
(asserted below), so each run takes one of the two, alternating; every (way, language) pair
runs. Layer 2 runs the named cases through the CLI's `main` (`whisperx-serve transcribe`).
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile

from pipeline.errors import PipelineError
from pipeline.formats import FORMATS
from pipeline.plan import Request
from pipeline.runner import LocalPipeline
from pipeline.schema import SAMPLE_RATE, Transcript
from tests.conftest import ffmpeg

# WXS_VALID_AUDIO_SEED=<n> explores other cases; the cases cover every rate, channel count,
# content and container whatever the seed.
SEED = int(os.environ.get("WXS_VALID_AUDIO_SEED", "905"))
EDGE_DURATIONS = (0.1, 0.25, 0.5, 1.0, 2.6, 29.9, 30.1, 40.0)
RATES = (8000, 11025, 16000, 22050, 32000, 44100, 48000)
CONTENTS = ("speech", "espeak", "silence", "mix")
WAV_SUBTYPES = {"wav16": "PCM_16", "wav24": "PCM_24", "wavf32": "FLOAT", "wavu8": "PCM_U8"}
# ffmpeg encoders; lame writes at most 2 channels, the others take 6.
ENCODED = {
    "flac": ("flac", ["-c:a", "flac"]),
    "mp3": ("mp3", ["-c:a", "libmp3lame", "-q:a", "5"]),
    "vorbis": ("ogg", ["-c:a", "libvorbis", "-q:a", "3"]),
    "opus": ("opus", ["-c:a", "libopus", "-b:a", "48k"]),
}
CONTAINERS = (*WAV_SUBTYPES, *ENCODED)
# libopus takes more than 2 channels only in a layout it maps (family 1): name the usual one.
OPUS_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1"}
RANDOM_CASES = 22
TIME_SLACK = 0.5  # word and segment times lie within [0, duration + TIME_SLACK]
SAMPLE_SPEECH = (6.6, 30.0)  # where sample.wav's speech is (its RTTM: 6.69 s to the end)
ESPEAK_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Speech recognition works on batches of thirty second chunks from many requests.",
)


@dataclass(frozen=True)
class Case:
    name: str
    duration: float
    rate: int
    channels: int
    content: str
    container: str
    seed: int

    def __str__(self) -> str:
        return (
            f"{self.name}: {self.duration:g} s, {self.rate} Hz, {self.channels} ch, {self.content}, "
            f"{self.container} (seed {self.seed})"
        )


def fixed_cases() -> list[Case]:
    """The cases the CLI layer runs too (by name), and the ones that found bugs before."""
    return [
        # Diarized, its words (Whisper hears "Thank you.") came back without speakers: the
        # diarizer found no turn in 0.1 s.
        Case("shortest", 0.1, 16000, 1, "speech", "wav16", 1),
        Case("silence", 12.0, 44100, 2, "silence", "wav16", 2),
        Case("six_channels_8k", 7.5, 8000, 6, "mix", "flac", 3),
        # `whisperx-serve transcribe clip.wav --diarize` on 2.6 s of speech used to crash in
        # cluster(): operands could not be broadcast together with shapes (4,) (3,).
        Case("speech_2_6", 2.6, 16000, 1, "speech", "wav16", 4),
        Case("longest", 40.0, 48000, 2, "mix", "mp3", 5),
    ]


def _spread(rng: random.Random, values, n: int) -> list:
    """n picks in random order that cover every value (when n >= len(values))."""
    picks = [values[i % len(values)] for i in range(n)]
    rng.shuffle(picks)
    return picks


def generate_cases(seed: int = SEED) -> list[Case]:
    rng = random.Random(seed)
    cases = fixed_cases()
    durations = [d for d in EDGE_DURATIONS if d not in {c.duration for c in cases}]
    # log-uniform: as many short clips (the edge cases of VAD and clustering) as long ones
    durations += [round(math.exp(rng.uniform(math.log(0.1), math.log(40.0))), 2) for _ in range(RANDOM_CASES)]
    n = len(durations)
    rates, contents = _spread(rng, RATES, n), _spread(rng, CONTENTS, n)
    channels, containers = _spread(rng, range(1, 7), n), _spread(rng, CONTAINERS, n)
    for i in range(n):  # lame writes at most 2 channels: swap with a case that has few
        if containers[i] == "mp3" and channels[i] > 2:
            j = next(j for j in range(n) if channels[j] <= 2 and containers[j] != "mp3")
            channels[i], channels[j] = channels[j], channels[i]
    return cases + [
        Case(f"case{i:02d}", durations[i], rates[i], channels[i], contents[i], containers[i], rng.randrange(1 << 30))
        for i in range(n)
    ]


CASES = generate_cases()


# --- audio synthesis -------------------------------------------------------------------------


def _resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    from scipy.signal import resample_poly

    if rate_in == rate_out:
        return x
    g = math.gcd(rate_in, rate_out)
    return resample_poly(x, rate_out // g, rate_in // g, axis=0).astype(np.float32)


def _loop(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples of `pool` from a random offset, wrapping around."""
    start = int(rng.integers(0, len(pool)))
    return np.take(pool, np.arange(start, start + n), mode="wrap")


def _silence(n: int, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        return np.zeros(n, np.float32)  # digital silence
    return (rng.normal(0.0, 10 ** (-70 / 20), n)).astype(np.float32)  # a -70 dBFS noise floor


def _content(kind: str, n: int, pools: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One channel's n samples at 16 kHz."""
    if kind in pools:
        return _loop(pools[kind], n, rng)
    if kind == "silence":
        return _silence(n, rng)
    assert kind == "mix"
    out, pos = [], 0
    speaking = bool(rng.random() < 0.5)
    while pos < n:
        length = min(n - pos, int(rng.uniform(0.3, 6.0) * SAMPLE_RATE))
        source = rng.choice(["speech", "espeak"])
        out.append(_loop(pools[source], length, rng) if speaking else _silence(length, rng))
        pos += length
        speaking = not speaking
    return np.concatenate(out)


def synthesize(case: Case, pools: dict[str, np.ndarray]) -> np.ndarray:
    """(frames, channels) float32 at the case's rate, exactly round(duration * rate) frames.
    Channel 0 always carries the content; the others carry it too at another gain, another
    speech, or silence (never inverted: a mono downmix must not cancel it out)."""
    rng = np.random.default_rng(case.seed)
    n16 = max(1, round(case.duration * SAMPLE_RATE))
    columns = [_content(case.content, n16, pools, rng) * rng.uniform(0.5, 1.0)]
    for _ in range(1, case.channels):
        pick = rng.random()
        if pick < 0.5:
            columns.append(columns[0] * rng.uniform(0.2, 1.0))
        elif pick < 0.75 and case.content != "silence":
            columns.append(_content(case.content, n16, pools, rng) * rng.uniform(0.2, 1.0))
        else:
            columns.append(_silence(n16, rng))
    x = _resample(np.stack(columns, axis=1), SAMPLE_RATE, case.rate)
    frames = max(1, round(case.duration * case.rate))
    x = np.pad(x, ((0, max(0, frames - len(x))), (0, 0)))[:frames]
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def write_case(case: Case, pools: dict[str, np.ndarray], folder: Path) -> Path:
    x = synthesize(case, pools)
    if case.container in WAV_SUBTYPES:
        path = folder / f"{case.name}.wav"
        soundfile.write(path, x, case.rate, subtype=WAV_SUBTYPES[case.container])
        return path
    extension, codec = ENCODED[case.container]
    source = folder / f"{case.name}.source.wav"
    soundfile.write(source, x, case.rate, subtype="FLOAT")
    path = folder / f"{case.name}.{extension}"
    if case.container == "opus":
        codec = ["-af", f"aformat=channel_layouts={OPUS_LAYOUTS[case.channels]}", *codec]
    ffmpeg("-i", str(source), *codec, str(path))
    source.unlink()
    return path


@pytest.fixture(scope="module")
def pools(pyannote_sample, speak) -> dict[str, np.ndarray]:
    return speech_pools(pyannote_sample, speak)


def speech_pools(pyannote_sample: Path, speak) -> dict[str, np.ndarray]:
    """Speech at 16 kHz mono: sample.wav's conversation, and espeak-ng sentences."""
    sample, rate = soundfile.read(pyannote_sample, dtype="float32")
    assert rate == SAMPLE_RATE
    conversation = sample[int(SAMPLE_SPEECH[0] * rate) : int(SAMPLE_SPEECH[1] * rate)]
    gap = np.zeros(int(0.4 * SAMPLE_RATE), np.float32)
    sentences = []
    for text in ESPEAK_SENTENCES:
        said, said_rate = soundfile.read(speak(text), dtype="float32")
        sentences += [_resample(said, said_rate, SAMPLE_RATE), gap]
    return {"speech": conversation, "espeak": np.concatenate(sentences)}


class CaseFiles(dict):
    """case name -> its file, written on first use (the core suite needs only the named cases)."""

    def __init__(self, pools: dict[str, np.ndarray], folder: Path):
        super().__init__()
        self.pools, self.folder = pools, folder

    def __missing__(self, name: str) -> Path:
        case = next(c for c in CASES if c.name == name)
        self[name] = write_case(case, self.pools, self.folder)
        return self[name]


@pytest.fixture(scope="module")
def case_files(pools, tmp_path_factory) -> CaseFiles:
    return CaseFiles(pools, tmp_path_factory.mktemp("valid_audio"))


# --- checks ------------------------------------------------------------------------------------

# An srt without cues is empty, and so is an rttm without turns.
ALWAYS_CONTENT = tuple(f for f in FORMATS if f not in ("srt", "rttm"))


@dataclass(frozen=True)
class Way:
    """How a pass runs the pipeline: timed words, untimed (json/text) or diarized."""

    name: str
    response_format: str
    diarize: bool

    @property
    def timed(self) -> bool:
        return self.response_format != "json" or self.diarize


WAYS = {
    "timed": Way("timed", "whisperx", diarize=False),
    "untimed": Way("untimed", "json", diarize=False),
    "diarized": Way("diarized", "whisperx", diarize=True),
}


def passes(cases: list[Case]) -> dict[tuple[str, str | None], list[Case]]:
    """(way, language) -> the cases run that way. The named cases run every way; to keep the
    file within its time budget each generated case runs two of the three, in rotation. Every
    other run of a case gives the language."""
    named = {case.name for case in fixed_cases()}
    out: dict[tuple[str, str | None], list[Case]] = {(w, lang): [] for w in WAYS for lang in ("en", None)}
    for i, case in enumerate(cases):
        for k, way in enumerate(WAYS):
            if case.name not in named and i % len(WAYS) == k:
                continue
            out[(way, "en" if (i + k) % 2 == 0 else None)].append(case)
    return out


PASSES = passes(CASES)


def check_transcript(case: Case, way: Way, t: Transcript) -> list[str]:
    problems = []
    # Codecs pad to whole frames: MP3 by up to ~one frame (72 ms at 8 kHz) after gapless trimming.
    if abs(t.duration - case.duration) > 0.15:
        problems.append(f"decoded duration {t.duration:.3f} s, written {case.duration:g} s")
    if t.language != "en":
        problems.append(f"language {t.language!r}")
    limit = case.duration + TIME_SLACK
    for s in t.segments:
        if not (0.0 <= s.start <= s.end <= limit):
            problems.append(f"segment times outside [0, {limit:g}] or reversed: {s.start} .. {s.end} {s.text!r}")
        if not s.text.strip():
            problems.append(f"segment without text at {s.start}")
        for w in s.words:
            if not (0.0 <= w.start <= w.end <= limit):
                problems.append(f"word times outside [0, {limit:g}] or reversed: {w}")
    if not way.timed and t.words:
        problems.append("json/text plan timed words")
    if way.diarize:
        if "diarize" not in t.models:
            problems.append("diarized without a diarize model in models")
        unlabelled = [w for w in t.words if not w.speaker] + [s for s in t.segments if s.words and not s.speaker]
        if unlabelled:
            problems.append(f"diarized words/segments without a speaker: {unlabelled[:3]}")
        if t.speaker_turns is None:
            problems.append("diarized without speaker_turns")
        elif [(u.start, u.end) for u in t.speaker_turns] != sorted((u.start, u.end) for u in t.speaker_turns):
            problems.append("speaker_turns out of order")
    elif any(w.speaker for w in t.words) or t.speaker_turns is not None:
        problems.append("speakers without diarization")
    if case.content in ("speech", "espeak") and case.duration >= 2.0 and not t.text:
        problems.append("no text from 2 s or more of speech")
    return problems


def check_rendered(fmt: str, body: bytes, t: Transcript) -> list[str]:
    if not isinstance(body, bytes):
        return [f"{fmt}: rendered {type(body).__name__}, not bytes"]
    if fmt in ALWAYS_CONTENT and not body:
        return [f"{fmt}: empty output"]
    text = body.decode("utf-8")
    cues = [s for s in t.segments if s.text.strip()]
    try:
        if fmt in ("whisperx", "json", "verbose_json"):
            data = json.loads(text)
            assert data["text"] == t.text
            if fmt == "verbose_json":
                assert len(data["segments"]) == len(t.segments)
                assert len(data["words"]) == len(t.words)
        elif fmt == "text":
            assert text == t.text + "\n"
        elif fmt == "srt":
            import srt

            parsed = list(srt.parse(text))
            assert len(parsed) == len(cues), (len(parsed), len(cues))
            assert all(c.start <= c.end for c in parsed)
        elif fmt == "vtt":
            import webvtt

            parsed = webvtt.from_buffer(io.StringIO(text))
            assert len(parsed.captions) == len(cues), (len(parsed.captions), len(cues))
        elif fmt == "rttm":
            lines = [line.split(" ") for line in text.splitlines()]
            assert len(lines) == len(t.speaker_turns), (len(lines), len(t.speaker_turns))
            assert all(len(f) == 10 and f[0] == "SPEAKER" and float(f[4]) >= 0 for f in lines)
        elif fmt == "tsv":
            rows = text.rstrip("\n").split("\n")
            assert rows[0] == "start\tend\tspeaker\ttext" and len(rows) == 1 + len(cues)
            for row in rows[1:]:
                start, end, _, words = row.split("\t")
                assert 0 <= int(start) <= int(end) and words
    except Exception as exc:  # a malformed rendering, not a crash: report it with the case
        return [f"{fmt}: malformed output ({type(exc).__name__}: {exc}): {text[:300]!r}"]
    return []


def run_pass(pipe: LocalPipeline, cases: list[Case], files: dict[str, Path], request: Request):
    """(case, transcript or None, problems) per case, over one batched `transcribe_many` (chunks
    of consecutive files share ASR batches, as in the CLI). If the batch raises, the traceback
    goes to the first case it had not finished, and each unfinished case then runs alone, so
    every crash is pinned on its input."""
    outcomes: list[tuple[Case, Transcript | None, list[str]]] = []
    try:
        for case, result in zip(cases, pipe.transcribe_many([files[c.name] for c in cases], request)):
            if result.error is not None:
                problem = f"valid audio rejected: {type(result.error).__name__}: {result.error}"
                outcomes.append((case, None, [problem]))
            else:
                outcomes.append((case, result.transcript, []))
        return outcomes
    except Exception:
        batch_trace = f"crash in transcribe_many (this file or a later one in flight): {traceback.format_exc()}"
    for n, case in enumerate(cases[len(outcomes) :]):
        problems = [batch_trace] if n == 0 else []
        try:
            outcomes.append((case, pipe.transcribe(files[case.name], request), problems))
        except Exception as exc:  # PipelineError included: valid audio must succeed
            kind = "valid audio rejected" if isinstance(exc, PipelineError) else "crash"
            outcomes.append((case, None, [*problems, f"{kind}, run alone: {traceback.format_exc()}"]))
    return outcomes


# --- layer 1: the library ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipe(local_pipeline) -> LocalPipeline:
    return local_pipeline


def test_cases_cover_the_space():
    assert {c.duration for c in CASES} >= set(EDGE_DURATIONS)
    assert {c.rate for c in CASES} == set(RATES)
    assert {c.channels for c in CASES} == set(range(1, 7))
    assert {c.content for c in CASES} == set(CONTENTS)
    assert {c.container for c in CASES} == set(CONTAINERS)
    assert min(c.duration for c in CASES) == 0.1 and max(c.duration for c in CASES) == 40.0
    assert generate_cases() == CASES, "cases must be deterministic"
    runs = {case.name: [(way, lang) for (way, lang), cases in PASSES.items() if case in cases] for case in CASES}
    assert all(len(r) >= 2 and len({way for way, _ in r}) == len(r) for r in runs.values()), runs
    assert all(len(r) == len(WAYS) for name, r in runs.items() if name in {c.name for c in fixed_cases()})
    assert all(PASSES.values()), "every (way, language) pair runs"


def test_language_given_or_not_plans_the_same_for_the_bundled_model(pipe):
    # What lets each case run with one of the two: the same decoding, stages and models.
    for way in WAYS.values():
        request = Request(response_format=way.response_format, diarize=way.diarize)
        given, detected = pipe.plan(replace(request, language="en")), pipe.plan(request)
        assert given.decode == detected.decode and given.stages() == detected.stages()
        assert given.models() == detected.models()


@pytest.mark.slow  # every case, every way: a minute and a half (the core suite runs the named cases via the CLI)
@pytest.mark.parametrize(("way", "language"), list(PASSES), ids=[f"{w}-{lang or 'auto'}" for w, lang in PASSES])
def test_valid_audio_gives_a_well_formed_result_in_every_format(pipe, case_files, way, language):
    cases = PASSES[(way, language)]
    way = WAYS[way]
    request = Request(language=language, diarize=way.diarize, response_format=way.response_format)
    # rttm is made of speaker turns: only the diarized way renders it.
    formats = [f for f in FORMATS if way.diarize or not FORMATS[f].needs_speakers]
    plans = {fmt: pipe.plan(replace(request, response_format=fmt)) for fmt in formats}
    failures = []
    for case, transcript, problems in run_pass(pipe, cases, case_files, request):
        if transcript is not None:
            problems += check_transcript(case, way, transcript)
            for fmt, plan in plans.items():
                try:
                    problems += check_rendered(fmt, plan.render(transcript), transcript)
                except Exception:
                    problems.append(f"{fmt}: render crashed: {traceback.format_exc()}")
        if problems:
            failures.append(f"{case} [{case_files[case.name]}], {request}:\n  " + "\n  ".join(problems))
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n\n" + "\n\n".join(failures)


# --- layer 2: the CLI --------------------------------------------------------------------------


def test_cli_on_the_named_cases(capsys, pipe, case_files, tmp_path):
    """`whisperx-serve transcribe` over the named cases, through the CLI's own `main` in this
    process (the run's shared models). One call over all of them (each written to
    --output-dir), --diarize, as the 2.6 s clip once crashed with it (and the 0.1 s one lost
    its speakers)."""
    from cluster.cli import main

    names = [case.name for case in fixed_cases()]
    out = tmp_path / "out"
    capsys.readouterr()
    code = main(["transcribe", *(str(case_files[n]) for n in names), "--diarize", "--output-dir", str(out)])
    stderr = capsys.readouterr().err
    assert code == 0 and "Traceback" not in stderr, stderr
    for name in names:
        body = json.loads((out / f"{name}.json").read_text())
        assert body["models"]["diarize"], name
        assert all(w.get("speaker") for w in body["word_segments"]), (name, body["word_segments"])
    assert json.loads((out / "silence.json").read_text())["segments"] == []
    assert json.loads((out / "speech_2_6.json").read_text())["word_segments"]
    assert json.loads((out / "longest.json").read_text())["word_segments"]
