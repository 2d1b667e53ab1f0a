"""Question: how well does the diarizer find who spoke when, and at what cost?

DER the standard way (pyannote.metrics, overlap scored, collar 0 and 0.25 s), split into missed
speech, false alarm and confusion (% of the reference's scored speech), over every
multi-speaker file there is: the real dev files (sample.wav, dev00.wav, librispeech_3spk_turns,
voxconverse_akthc) and the built far-field meetings (benchmarks/farfield.py); speakers found
against the truth, without a hint, and DER with the count given; the real-time factor of the
diarization alone (VAD excluded). Then speaker counts on single-speaker clips, stereo_diarization
and the synthetic meetings of benchmarks/meetings.py (held out).

librispeech_3spk_turns' reference turns are whole LibriSpeech utterances, pauses included (a
fifth of their time is under -30 dB of the utterance's peak): its row `(speech only)` scores the
same turns cut to the reference's own speech (benchmarks/farfield.activity), which is what the
others' references hold.

Methods: `segmentation` (the offline default), `windows`, and `--pyannote-model NAME_OR_DIR`
(a pyannote pipeline; its weights are gated: skipped, saying so, where they are not present).

    .venv/bin/python -m benchmarks.bench_diarization [--methods segmentation,windows]
        [--pyannote-model pyannote/speaker-diarization-community-1] [--skip-held-out]
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import SPEECH_DIR

DEV_FILES = ("sample.wav", "dev00.wav", "librispeech_3spk_turns.flac", "voxconverse_akthc.wav")


def speech_only(reference, samples):
    """The reference's turns cut to the speech inside them (10 ms frames within 30 dB of the
    turn's loudest, pauses under 0.25 s bridged)."""
    from pyannote.core import Annotation
    from pyannote.core import Segment as Span

    from benchmarks.farfield import activity
    from pipeline.schema import SAMPLE_RATE

    cut = Annotation()
    for segment, track, label in reference.itertracks(yield_label=True):
        piece = samples[int(segment.start * SAMPLE_RATE) : int(segment.end * SAMPLE_RATE)]
        for i, (start, end) in enumerate(activity(piece)):
            cut[Span(segment.start + start, segment.start + end), (track, i)] = label
    return cut


def multi_speaker_files(held_out: bool):
    """(name, audio, reference Annotation): the dev files, then the far-field meetings."""
    from benchmarks.evaluation import annotation_of, read_rttm
    from benchmarks.farfield import far_field_meetings
    from pipeline.audio import load_audio

    folder = SPEECH_DIR / "diarization"
    for name in DEV_FILES:
        audio = load_audio(folder / name)
        reference = read_rttm((folder / name).with_suffix(".rttm"))
        yield name, audio, reference
        if name.startswith("librispeech"):
            yield f"{name} (speech only)", audio, speech_only(reference, audio.samples)
    if held_out:
        for meeting in far_field_meetings(SPEECH_DIR):
            yield f"{meeting.name} (built)", meeting.audio, annotation_of(meeting.turns)


def score(diarizer, files, speech) -> None:
    """One table: each file's DER at both collars, its parts, the count, the cost."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    from benchmarks.evaluation import annotation_of
    from pipeline.diarize import SpeakerCount

    print(
        "| file | speakers true | found | DER c0 % | DER c0.25 % | missed % | false alarm % | confusion % "
        "| DER c0.25, count given % | real-time factor |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    pooled = {0.0: DiarizationErrorRate(collar=0.0), 0.25: DiarizationErrorRate(collar=0.25)}
    for name, audio, reference in files:
        started = time.perf_counter()
        turns = diarizer.diarize(audio, speech[name])
        rtf = (time.perf_counter() - started) / audio.duration
        given = diarizer.diarize(audio, speech[name], SpeakerCount(num_speakers=len(reference.labels())))
        hypothesis = annotation_of(turns)
        strict = pooled[0.0](reference, hypothesis)
        parts = pooled[0.25](reference, hypothesis, detailed=True)
        total = max(parts["total"], 1e-9)
        print(
            f"| {name} | {len(reference.labels())} | {len({t.speaker for t in turns})} | {100 * strict:.1f} | "
            f"{100 * parts['diarization error rate']:.1f} | {100 * parts['missed detection'] / total:.1f} | "
            f"{100 * parts['false alarm'] / total:.1f} | {100 * parts['confusion'] / total:.1f} | "
            f"{100 * DiarizationErrorRate(collar=0.25)(reference, annotation_of(given)):.1f} | {rtf:.3f} |"
        )
    print(f"\npooled DER: c0 {100 * abs(pooled[0.0]):.1f} %, c0.25 {100 * abs(pooled[0.25]):.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="segmentation,windows")
    parser.add_argument("--pyannote-model", default=None, help="a pyannote pipeline: HF name (HF_TOKEN) or directory")
    parser.add_argument("--skip-held-out", action="store_true")
    args = parser.parse_args()

    from benchmarks.evaluation import annotation_of, diarization_error_rate
    from benchmarks.meetings import held_out_meetings
    from pipeline.audio import load_audio
    from pipeline.diarize import DiarizeConfig, Diarizer
    from pipeline.errors import ModelNotFound
    from pipeline.placement import Placement
    from pipeline.vad import SpeechDetector

    placement = Placement.local_cpu()
    vad = SpeechDetector(placement=placement)
    files = list(multi_speaker_files(not args.skip_held_out))
    speech = {name: vad.analyze(audio).speech for name, audio, _ in files}
    singles = [("jfk.flac", load_audio(SPEECH_DIR / "jfk.flac"))] + [
        (f"multilang/test_{lang}.wav", load_audio(SPEECH_DIR / "multilang" / f"test_{lang}.wav"))
        for lang in ("de", "en", "es", "fr", "it", "ja", "ko", "pt")
    ]
    meetings = [] if args.skip_held_out else held_out_meetings(SPEECH_DIR)
    stereo = load_audio(SPEECH_DIR / "diarization" / "stereo_diarization.wav")

    configs = [DiarizeConfig(method=method) for method in args.methods.split(",") if method]
    if args.pyannote_model:
        configs.append(DiarizeConfig(model=args.pyannote_model))
    for config in configs:
        try:
            diarizer = Diarizer(config, placement)
        except ModelNotFound as exc:
            print(f"\n### pyannote pipeline {config.model}: skipped, its weights are not here ({exc})")
            continue
        diarizer.diarize(files[0][1], speech[files[0][0]])  # warm
        print(f"\n### {config.model_id}\n")
        score(diarizer, files, speech)
        counts = [len({t.speaker for t in diarizer.diarize(a, vad.analyze(a).speech)}) for _, a in singles]
        print(f"single-speaker clips (jfk + 8 languages): speakers found {counts}")
        found = len({t.speaker for t in diarizer.diarize(stereo, vad.analyze(stereo).speech)})
        print(f"stereo_diarization.wav (2 speakers, one per channel, mixed to mono): {found} found")
        if meetings:
            print("\n| synthetic meeting (benchmarks/meetings.py) | speakers true | found | DER c0 % | DER c0.25 % |")
            print("|---|---|---|---|---|")
            for m in meetings:
                reference = annotation_of(m.turns)
                turns = diarizer.diarize(m.audio, vad.analyze(m.audio).speech)
                print(
                    f"| {m.name} ({m.audio.duration:.0f} s) | {m.speakers} | {len({t.speaker for t in turns})} | "
                    f"{100 * diarization_error_rate(reference, turns, 0.0):.1f} | "
                    f"{100 * diarization_error_rate(reference, turns, 0.25):.1f} |"
                )
    if not args.pyannote_model:
        print(
            "\npyannote pipeline: not run (its weights are gated on Hugging Face and not shipped in any "
            "package; pass --pyannote-model with HF_TOKEN or a local pipeline directory)"
        )


if __name__ == "__main__":
    main()
