"""Question: how accurate are transcripts, word times and speakers with the offline defaults?

WER over the 40 English dev files (and plain WhisperX's, same run); DER of the offline
diarizer (collar 0 and 0.25) on the three files with reference turns, with the speaker count
estimated and given; median word-boundary error at the 3-speaker file's utterance joins.

    .venv/bin/python -m benchmarks.bench_accuracy
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import SPEECH_DIR, PlainWhisperX, english_dev_set


def main() -> None:
    from benchmarks.evaluation import boundary_errors, corpus_wer, diarization_error_rate, read_rttm, read_stm
    from pipeline.audio import load_audio
    from pipeline.diarize import SpeakerCount
    from pipeline.runner import LocalPipeline

    pipe = LocalPipeline()
    refs = english_dev_set()
    paths = [r.path for r in refs]
    baseline = PlainWhisperX()
    plain_wer = corpus_wer([r.text for r in refs], [baseline.transcribe(p) for p in paths])
    ours_wer = corpus_wer([r.text for r in refs], [r.transcript.text for r in pipe.transcribe_many(paths)])
    print("## WER (40 English dev files, Whisper English normaliser)\n")
    print("| system | WER % |\n|---|---|")
    print(f"| plain WhisperX (tiny.en int8, batch 16, pyannote VAD) | {100 * plain_wer:.2f} |")
    print(f"| whisperx-serve pipeline (same model) | {100 * ours_wer:.2f} |\n")

    print(f"## DER, offline diarizer ({pipe.diarizer.model_id})\n")
    print(
        "| file | reference speakers | speakers found | DER collar 0 % | DER collar 0.25 % | "
        "DER, count given, collar 0 % | diarize s |"
    )
    print("|---|---|---|---|---|---|---|")
    folder = SPEECH_DIR / "diarization"
    for name in ("sample.wav", "dev00.wav", "librispeech_3spk_turns.flac"):
        path = folder / name
        reference = read_rttm(path.with_suffix(".rttm"))
        audio = load_audio(path)
        speech = pipe.vad.analyze(audio).speech
        start = time.perf_counter()
        turns = pipe.diarizer.diarize(audio, speech)
        elapsed = time.perf_counter() - start
        given = pipe.diarizer.diarize(audio, speech, SpeakerCount(num_speakers=len(reference.labels())))
        print(
            f"| {name} | {len(reference.labels())} | {len({t.speaker for t in turns})} | "
            f"{100 * diarization_error_rate(reference, turns, 0.0):.1f} | "
            f"{100 * diarization_error_rate(reference, turns, 0.25):.1f} | "
            f"{100 * diarization_error_rate(reference, given, 0.0):.1f} | {elapsed:.2f} |"
        )
    stereo = load_audio(folder / "stereo_diarization.wav")
    found = {t.speaker for t in pipe.diarizer.diarize(stereo, pipe.vad.analyze(stereo).speech)}
    print(f"\nstereo_diarization.wav (one speaker per channel, mixed to mono): {len(found)} speakers found\n")

    print("## Word boundaries (Whisper cross-attention times)\n")
    path = folder / "librispeech_3spk_turns.flac"
    errors = boundary_errors(read_stm(path.with_suffix(".stm")), pipe.transcribe(path).words)
    print(
        f"librispeech_3spk_turns: {len(errors)} of 24 utterance boundaries matched; |error| median "
        f"{np.median(errors):.3f} s, 90th percentile {np.percentile(errors, 90):.3f} s"
    )


if __name__ == "__main__":
    main()
