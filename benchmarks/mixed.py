"""The mixed workload: dev-set English speech shaped like a service's real traffic.

Real uploads are mostly short with a few long ones, in several formats; the dev set is 40 files
of 10-16 s. This builds 54 files from it, deterministically, in a cache folder (rebuilt when this
recipe changes): 12 under 5 s, most of the rest 5-10 s (LibriSpeech utterances cut at their
quietest point near a target length, so no word is split), whole utterances of 10-16 s, the 30 s
telephone call, the 106 s three-speaker file, and recordings of 45 s, 75 s, 3 and 5 minutes made
of utterances laid end to end. A third are 16 kHz WAV, a third FLAC, a third 44.1 kHz stereo MP3
(ffmpeg decodes them, as it does a user's uploads).

    from benchmarks.mixed import mixed_workload
    files = mixed_workload()   # [MixedFile(path, seconds)], longest last
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import SPEECH_DIR

# Target lengths of the cut utterances (seconds), the whole utterances kept, and the long
# recordings laid end to end: 12 under 5 s, median about 7.5 s, 5 over 30 s, longest 5 min.
SHORT_CUTS_S = (2.5, 3.0, 3.5, 4.0, 4.5, 3.0, 4.0)
MEDIUM_CUTS_S = tuple(round(5.6 + 0.16 * i, 2) for i in range(26))  # 5.6 .. 9.6 s
WHOLE_UTTERANCES = 10
LONG_RECORDINGS_S = (45.0, 75.0, 180.0, 300.0)
FORMATS = ("wav", "flac", "mp3")
RECIPE = "mixed-v2"


@dataclass(frozen=True)
class MixedFile:
    path: Path
    seconds: float


def _utterances():
    from benchmarks.evaluation import read_references

    refs = [r for r in read_references(SPEECH_DIR) if r.language == "en"]
    return sorted((r for r in refs if r.path.parent.name == "librispeech"), key=lambda r: r.path.name)


def _cut_at_quietest(samples, target_s: float, rate: int):
    """The samples up to the quietest 100 ms within 0.6 s of `target_s` (a pause, not a word)."""
    import numpy as np

    frame = rate // 10
    lo, hi = int((target_s - 0.6) * rate), min(len(samples) - frame, int((target_s + 0.6) * rate))
    if hi <= lo:
        return samples
    starts = np.arange(lo, hi, frame // 2)
    energy = [float(np.mean(samples[s : s + frame] ** 2)) for s in starts]
    cut = int(starts[int(np.argmin(energy))] + frame // 2)
    return samples[:cut]


def _laid_end_to_end(clips, seconds: float, rate: int, offset: int):
    import numpy as np

    gap = np.zeros(rate // 2, dtype=np.float32)
    pieces, total, i = [], 0, offset
    while total < seconds * rate:
        clip = clips[i % len(clips)]
        pieces += [clip, gap]
        total += len(clip) + len(gap)
        i += 1
    return np.concatenate(pieces)[: int(seconds * rate)]


def _write(samples, rate: int, path: Path) -> None:
    """16 kHz WAV as is; FLAC and MP3 (44.1 kHz stereo, 96 kb/s) through ffmpeg."""
    import soundfile

    if path.suffix == ".wav":
        soundfile.write(path, samples, rate, subtype="PCM_16")
        return
    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        soundfile.write(wav.name, samples, rate, subtype="PCM_16")
        codec = ["-ac", "2", "-ar", "44100", "-b:a", "96k"] if path.suffix == ".mp3" else []
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", wav.name, *codec, str(path)], check=True
        )


def mixed_workload(root: Path | None = None) -> list[MixedFile]:
    """The 54 files (built once per recipe), shortest first."""
    import soundfile

    from pipeline.audio import load_audio
    from pipeline.schema import SAMPLE_RATE

    utterances = _utterances()
    if not utterances:
        raise SystemExit(f"no LibriSpeech dev files under {SPEECH_DIR} (set WXS_SPEECH_DIR)")
    stamp = hashlib.sha256(f"{RECIPE}{[r.path.name for r in utterances]}".encode()).hexdigest()[:12]
    folder = (root or Path(tempfile.gettempdir())) / f"wxs-mixed-{stamp}"
    done = folder / "DONE"
    if not done.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        clips = [load_audio(r.path).samples for r in utterances]
        pieces = []
        # cuts from the longest utterances (rotating), whole ones from the shortest over 9 s
        by_length = sorted(range(len(clips)), key=lambda i: -len(clips[i]))
        for n, target in enumerate(SHORT_CUTS_S + MEDIUM_CUTS_S):
            pieces.append(_cut_at_quietest(clips[by_length[n % len(by_length)]], target, SAMPLE_RATE))
        pieces += [c for c in clips if len(c) < 5 * SAMPLE_RATE]  # the short ones as they are
        pieces += [clips[i] for i in by_length[::-1] if len(clips[i]) >= 9 * SAMPLE_RATE][:WHOLE_UTTERANCES]
        pieces += [load_audio(SPEECH_DIR / "diarization" / "sample.wav").samples]
        pieces += [load_audio(SPEECH_DIR / "diarization" / "librispeech_3spk_turns.flac").samples]
        pieces += [_laid_end_to_end(clips, s, SAMPLE_RATE, offset=7 * k) for k, s in enumerate(LONG_RECORDINGS_S)]
        for n, samples in enumerate(pieces):
            _write(samples, SAMPLE_RATE, folder / f"m{n:02d}.{FORMATS[n % len(FORMATS)]}")
        done.write_text(RECIPE)
    files = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lstrip(".") in FORMATS):
        files.append(MixedFile(path, soundfile.info(path).duration if path.suffix != ".mp3" else _mp3_seconds(path)))
    return sorted(files, key=lambda f: (f.seconds, f.path.name))


def _mp3_seconds(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip())


def describe(files: list[MixedFile]) -> str:
    import statistics

    seconds = [f.seconds for f in files]
    median = statistics.median(seconds)
    formats = sorted({f.path.suffix.lstrip(".") for f in files})
    return (
        f"mixed workload: {len(files)} files, {sum(seconds):.0f} s of audio, median {median:.1f} s, "
        f"{sum(s < 5 for s in seconds)} under 5 s, {sum(s > 30 for s in seconds)} over 30 s, "
        f"longest {max(seconds):.0f} s; {', '.join(formats)}"
    )


if __name__ == "__main__":
    print(describe(mixed_workload()))
