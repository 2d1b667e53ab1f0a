"""Question: do Whisper's cross-attention word times stay on speech (issue 12)?

Before vs after in one run: every chunk's words are recorded as the DTW path placed them
(before: as `bound_words` receives them) and as `bound_words` keeps them
on the chunk's VAD speech (after). Texts are the same by construction (only times change);
the script checks the words match one for one.

- word-boundary error at the 24 utterance joins of `diarization/librispeech_3spk_turns.flac`,
  against the STM (LibriSpeech file edges, which include each file's own 0-0.6 s of room
  noise before and after the speech) and against the speech inside each utterance (first and
  last 10 ms frame above -45 dBFS; the joins are digital silence, the room noise -50 to -65);
- words longer than 2 s over the 40 English dev files + the three diarization files, the
  longest word, and dev00.wav's "Okay" times;
- WER over the 40 English dev files (unchanged: same texts).

    .venv/bin/python -m benchmarks.bench_word_bounds
"""

from __future__ import annotations

import copy
import os
import threading
from pathlib import Path

import numpy as np

from benchmarks.common import SPEECH_DIR, english_dev_set

ONSET_DBFS = -45.0


def speech_edges(path: Path, utterances):
    """Each utterance cut to its speech: the first and last 10 ms frame above ONSET_DBFS."""
    from benchmarks.evaluation import Utterance
    from pipeline.audio import load_audio

    samples = load_audio(path).samples
    frames = samples[: len(samples) // 160 * 160].reshape(-1, 160)
    energy = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    out = []
    for u in utterances:
        lo, hi = int(u.start * 100), int(u.end * 100)
        loud = np.nonzero(energy[lo:hi] > ONSET_DBFS)[0]
        start, end = float(lo + loud[0]) / 100, float(lo + loud[-1] + 1) / 100
        out.append(Utterance(start, end, u.speaker, u.text))
    return out


class Recorder:
    """Wraps pipeline.asr's bound_words and _segments: per chunk, the words before and after."""

    def __init__(self):
        import pipeline.asr as asr

        self.asr, self.local = asr, threading.local()
        self.chunks: dict[int, tuple[list, list]] = {}
        original_bound, original_segments = asr.bound_words, asr._segments

        def bound(words, speech):
            self.local.before = copy.deepcopy(words)
            return original_bound(words, speech)

        def segments(chunk, text, timings, avg_logprob):
            self.local.before = []
            out = original_segments(chunk, text, timings, avg_logprob)
            before = self.local.before
            for w in before:
                w.word = w.word.strip()
            self.chunks[chunk.index] = (before, [w for s in out for w in s.words])
            return out

        asr.bound_words, asr._segments = bound, segments

    def words(self) -> tuple[list, list]:
        before, after = [], []
        for index in sorted(self.chunks):
            before += self.chunks[index][0]
            after += self.chunks[index][1]
        self.chunks = {}
        return before, after


def main() -> None:
    from benchmarks.evaluation import boundary_errors, corpus_wer, read_stm
    from pipeline.plan import Request
    from pipeline.runner import LocalPipeline
    from pipeline.word_times import max_word_seconds

    pipe = LocalPipeline()
    recorder = Recorder()
    refs = english_dev_set()
    folder = SPEECH_DIR / "diarization"
    paths = [folder / n for n in ("sample.wav", "dev00.wav", "librispeech_3spk_turns.flac")] + [r.path for r in refs]
    words: dict[Path, tuple[list, list]] = {}
    texts: dict[Path, str] = {}
    for path in paths:
        texts[path] = pipe.transcribe(path, Request(response_format="whisperx")).text
        words[path] = recorder.words()
        before, after = words[path]
        assert [w.word for w in before] == [w.word for w in after], f"words changed in {path.name}"

    three = folder / "librispeech_3spk_turns.flac"
    stm = read_stm(three.with_suffix(".stm"))
    edges = speech_edges(three, stm)
    pad = [abs(a.start - b.start) for a, b in zip(stm, edges)] + [abs(a.end - b.end) for a, b in zip(stm, edges)]
    n_words = sum(len(b) for b, _ in words.values())
    wer = corpus_wer([r.text for r in refs], [texts[r.path] for r in refs])

    def row(label: str, side: int) -> str:
        errors = boundary_errors(stm, words[three][side])
        inner = boundary_errors(edges, words[three][side])
        every = [(w.end - w.start, p.name, w) for p, pair in words.items() for w in pair[side]]
        over = sum(1 for d, _, _ in every if d > 2.0)
        capped = sum(1 for d, _, w in every if d > max_word_seconds(w.word) + 1e-6)
        d, name, w = max(every, key=lambda x: x[0])
        dev00 = words[folder / "dev00.wav"][side]
        okay = ", ".join(f"{x.start:.2f}-{x.end:.2f}" for x in dev00 if "okay" in x.word.lower())
        return (
            f"| {label} | {np.median(errors):.3f} | {np.percentile(errors, 90):.3f} | {np.median(inner):.3f} | "
            f"{np.percentile(inner, 90):.3f} | {over} | {capped} | {d:.2f} s ({name}: {w.word!r}) | {okay} | "
            f"{100 * wer:.2f} |"
        )

    print(
        f"machine: {os.cpu_count()} cores; {len(paths)} files ({len(refs)} English dev + 3 diarization), "
        f"{n_words} words; 3-speaker file: {len(boundary_errors(stm, words[three][1]))} of {2 * len(stm)} "
        f"join boundaries matched; STM edge to speech edge: median {np.median(pad):.3f} s, max {max(pad):.3f} s\n"
    )
    print(
        "| word times | join error vs STM, median s | p90 s | join error vs speech edges, median s | p90 s | "
        'words > 2 s | words over the cap | longest word | dev00 "Okay" | WER % (40 dev) |'
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(row("cross-attention DTW as is (before)", 0))
    print(row("bounded by speech and length (after)", 1))


if __name__ == "__main__":
    main()
