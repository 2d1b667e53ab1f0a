"""Question: where does the offline diarizer lose reference speech, step by step?

For every real multi-speaker dev file and the built far-field meetings (benchmarks/farfield.py),
the `segmentation` method's trace (pipeline.diarize.segmentation.SegmentationBackend.trace):
on a 10 ms grid, the reference's speakers per frame against what each step keeps:

- `VAD`: the reference speech inside the VAD's regions (what clipping to them would keep: the
  diarizer did so until issue 23, and still checks only that the VAD found some speech);
- `segmentation`: speakers the segmentation finds active per frame;
- `clustered`: of those, the ones that got a cluster (the count reconstruction uses);
- `result`: the turns built from them.

Missed = sum over frames of max(0, reference speakers - kept speakers), as DER counts it, in %
of the reference's speaker-seconds; `overlap kept` = frames with 2+ reference speakers where
the step keeps 2+. Then the result's DER (collar 0.25, pyannote.metrics) split into missed,
false alarm and confusion, and the speakers found.

    .venv/bin/python -m benchmarks.bench_speech_loss [--files dev00,far4_overlap]
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import SPEECH_DIR

GRID = 0.01  # seconds


def count_of_turns(turns, frames: int) -> np.ndarray:
    count = np.zeros(frames, dtype=int)
    for t in turns:
        count[int(round(t.start / GRID)) : int(round(t.end / GRID))] += 1
    return count


def count_of_feature(feature, frames: int) -> np.ndarray:
    """A pyannote SlidingWindowFeature of speakers per frame, sampled on the 10 ms grid."""
    if feature is None:
        return np.zeros(frames, dtype=int)
    window = feature.sliding_window
    times = np.arange(frames) * GRID + GRID / 2
    index = np.rint((times - window.start - window.duration / 2) / window.step).astype(int)
    inside = (index >= 0) & (index < len(feature.data))
    count = np.zeros(frames, dtype=int)
    count[inside] = feature.data[index[inside], 0]
    return count


def reference_count(reference, frames: int) -> np.ndarray:
    count = np.zeros(frames, dtype=int)
    for segment, _, _ in reference.itertracks(yield_label=True):
        count[int(round(segment.start / GRID)) : int(round(segment.end / GRID))] += 1
    return count


def missed_share(reference: np.ndarray, kept: np.ndarray) -> float:
    return float(np.maximum(0, reference - kept).sum() / max(1, reference.sum()))


def overlap_kept(reference: np.ndarray, kept: np.ndarray) -> float:
    overlapped = reference >= 2
    return float((kept[overlapped] >= 2).mean()) if overlapped.any() else float("nan")


def files(selected: set[str] | None):
    """(name, audio, reference Annotation) of each multi-speaker dev file and far-field meeting."""
    from benchmarks.evaluation import annotation_of, read_rttm
    from benchmarks.farfield import far_field_meetings
    from pipeline.audio import load_audio

    folder = SPEECH_DIR / "diarization"
    for name in ("dev00.wav", "sample.wav", "librispeech_3spk_turns.flac", "voxconverse_akthc.wav"):
        if selected is None or name.split(".")[0] in selected:
            yield name, load_audio(folder / name), read_rttm((folder / name).with_suffix(".rttm"))
    for meeting in far_field_meetings(SPEECH_DIR):
        if selected is None or meeting.name in selected:
            yield meeting.name, meeting.audio, annotation_of(meeting.turns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", default=None, help="comma-separated names (dev00, far4_overlap, ...)")
    args = parser.parse_args()
    selected = set(args.files.split(",")) if args.files else None

    from pyannote.metrics.diarization import DiarizationErrorRate

    from benchmarks.evaluation import annotation_of
    from pipeline.diarize import DiarizeConfig, SpeakerCount
    from pipeline.diarize.segmentation import SegmentationBackend
    from pipeline.placement import Placement
    from pipeline.schema import Turn
    from pipeline.vad import SpeechDetector

    placement = Placement.local_cpu()
    vad = SpeechDetector(placement=placement)
    backend = SegmentationBackend(DiarizeConfig(), placement)
    stages = ("VAD", "segmentation", "clustered", "result")
    print("Missed reference speech after each step, % of reference speaker-seconds (overlap kept, %):\n")
    print(f"| file | ref s (overlap s) | {' | '.join(stages)} |")
    print("|---|---|" + "---|" * len(stages))
    summaries = []
    for name, audio, reference in files(selected):
        frames = int(np.ceil(audio.duration / GRID))
        ref = reference_count(reference, frames)
        speech = vad.analyze(audio).speech
        trace = backend.trace(audio, speech, SpeakerCount())
        in_vad = count_of_turns([Turn(s, e, "speech") for s, e in speech], frames) > 0
        kept = {
            "VAD": np.where(in_vad, ref, 0),
            "segmentation": count_of_feature(trace.found, frames),
            "clustered": count_of_feature(trace.speaking, frames),
            "result": count_of_turns(trace.turns, frames),
        }
        cells = [
            f"{100 * missed_share(ref, kept[s]):.1f}"
            + ("" if s == "VAD" else f" ({100 * overlap_kept(ref, kept[s]):.0f})")
            for s in stages
        ]
        print(f"| {name} | {ref.sum() * GRID:.1f} ({(ref >= 2).sum() * GRID:.1f}) | {' | '.join(cells)} |")
        detail = DiarizationErrorRate(collar=0.25)(reference, annotation_of(trace.turns), detailed=True)
        summaries.append((name, len(reference.labels()), len({t.speaker for t in trace.turns}), detail))

    print("\nThe result, DER at collar 0.25 (pyannote.metrics), % of scored reference speech:\n")
    print("| file | speakers true | found | DER | missed | false alarm | confusion |")
    print("|---|---|---|---|---|---|---|")
    for name, true, found, d in summaries:
        total = max(d["total"], 1e-9)
        print(
            f"| {name} | {true} | {found} | {100 * d['diarization error rate']:.1f} | "
            f"{100 * d['missed detection'] / total:.1f} | {100 * d['false alarm'] / total:.1f} | "
            f"{100 * d['confusion'] / total:.1f} |"
        )


if __name__ == "__main__":
    main()
