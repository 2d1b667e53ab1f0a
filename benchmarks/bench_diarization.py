"""Question: how well does the offline diarizer find who spoke when, and at what cost?

Both offline methods in the same run: `windows` (the first default: resemblyzer on 1.6 s
windows, spectral clustering) and `segmentation` (pyannote's recipe with whisperx's
segmentation weights and resemblyzer embeddings). For every dev diarization file: DER at
collar 0 and 0.25 (pyannote.metrics, overlap scored), speakers found vs true, and the
real-time factor of the diarization alone (VAD excluded). Then speaker counts on
single-speaker clips, and the held-out synthetic meetings (benchmarks/meetings.py).

    .venv/bin/python -m benchmarks.bench_diarization [--methods windows,segmentation]
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import SPEECH_DIR


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="windows,segmentation")
    parser.add_argument("--skip-held-out", action="store_true")
    args = parser.parse_args()

    from benchmarks.evaluation import annotation_of, diarization_error_rate, read_rttm
    from benchmarks.meetings import held_out_meetings
    from pipeline.audio import load_audio
    from pipeline.diarize import DiarizeConfig, Diarizer, SpeakerCount
    from pipeline.placement import Placement
    from pipeline.vad import SpeechDetector

    placement = Placement.local_cpu()
    vad = SpeechDetector(placement=placement)
    folder = SPEECH_DIR / "diarization"
    dev = []
    for name in ("sample.wav", "dev00.wav", "librispeech_3spk_turns.flac"):
        path = folder / name
        dev.append((name, load_audio(path), read_rttm(path.with_suffix(".rttm"))))
    singles = [("jfk.flac", load_audio(SPEECH_DIR / "jfk.flac"))] + [
        (f"multilang/test_{lang}.wav", load_audio(SPEECH_DIR / "multilang" / f"test_{lang}.wav"))
        for lang in ("de", "en", "es", "fr", "it", "ja", "ko", "pt")
    ]
    meetings = [] if args.skip_held_out else held_out_meetings(SPEECH_DIR)
    speech = {
        id(a): vad.analyze(a).speech
        for a in [d[1] for d in dev] + [s[1] for s in singles] + [m.audio for m in meetings]
    }

    for method in args.methods.split(","):
        diarizer = Diarizer(DiarizeConfig(method=method), placement)
        diarizer.diarize(dev[0][1], speech[id(dev[0][1])])  # warm
        print(f"\n### method `{method}` ({diarizer.model_id})\n")
        print("| file | speakers true | found | DER c0 % | DER c0.25 % | DER c0, count given % | real-time factor |")
        print("|---|---|---|---|---|---|---|")
        pooled = []
        for name, audio, reference in dev:
            start = time.perf_counter()
            turns = diarizer.diarize(audio, speech[id(audio)])
            rtf = (time.perf_counter() - start) / audio.duration
            given = diarizer.diarize(audio, speech[id(audio)], SpeakerCount(num_speakers=len(reference.labels())))
            pooled.append((reference, turns))
            print(
                f"| {name} | {len(reference.labels())} | {len({t.speaker for t in turns})} | "
                f"{100 * diarization_error_rate(reference, turns, 0.0):.1f} | "
                f"{100 * diarization_error_rate(reference, turns, 0.25):.1f} | "
                f"{100 * diarization_error_rate(reference, given, 0.0):.1f} | {rtf:.3f} |"
            )
        print(f"\npooled DER c0.25 (dev): {100 * _pooled(pooled, 0.25):.1f} %, c0: {100 * _pooled(pooled, 0.0):.1f} %")
        counts = [len({t.speaker for t in diarizer.diarize(a, speech[id(a)])}) for _, a in singles]
        print(f"single-speaker clips (jfk + 8 languages): speakers found {counts}")
        stereo = load_audio(folder / "stereo_diarization.wav")
        found = len({t.speaker for t in diarizer.diarize(stereo, vad.analyze(stereo).speech)})
        print(f"stereo_diarization.wav (2 speakers, one per channel, mixed to mono): {found} found")
        if meetings:
            print("\n| held-out meeting | speakers true | found | DER c0 % | DER c0.25 % | real-time factor |")
            print("|---|---|---|---|---|---|")
            for m in meetings:
                reference = annotation_of(m.turns)
                start = time.perf_counter()
                turns = diarizer.diarize(m.audio, speech[id(m.audio)])
                rtf = (time.perf_counter() - start) / m.audio.duration
                print(
                    f"| {m.name} ({m.audio.duration:.0f} s) | {m.speakers} | {len({t.speaker for t in turns})} | "
                    f"{100 * diarization_error_rate(reference, turns, 0.0):.1f} | "
                    f"{100 * diarization_error_rate(reference, turns, 0.25):.1f} | {rtf:.3f} |"
                )


def _pooled(pairs, collar: float) -> float:
    from pyannote.metrics.diarization import DiarizationErrorRate

    from benchmarks.evaluation import annotation_of

    metric = DiarizationErrorRate(collar=collar)
    for reference, turns in pairs:
        metric(reference, annotation_of(turns))
    return abs(metric)


if __name__ == "__main__":
    main()
