"""Question: what does identifying a request's language cost, and how often does the first
chunk alone (the default: a first chunk of at least `language_confident_seconds` whose language
Whisper base gives `language_confidence` or more decides, so a stream starts at once) answer
differently from the vote over the five longest of the first eight chunks (the rule before it)?

Inputs with more than one chunk, where the two rules can differ: each dev language's clip laid
end to end to about 60 s (de, es, fr, it, ja, ko, pt, en), the dev set's long English files
(the 106 s three-speaker file, the 115 s broadcast clip) and the mixed workload's four long
recordings (45 s to 5 min); every other dev file is one chunk, where both rules are the same
encoder pass. Per input: the VAD's chunks, each rule's language, the first chunk's length and
confidence, and the CPU seconds of each rule's identification (base, int8, 2 threads).

Then the window the language's encoder pass sees, on every dev file (47, 8 languages, its first
30 s as one chunk): the chunk's own frames plus 1 s (the default, `language_detection_trim`)
against WhisperX's window padded to 30 s: the language each names, how sure, and the CPU.

    .venv/bin/python -m benchmarks.bench_language_id
"""

from __future__ import annotations

import asyncio
import resource
import tempfile
from pathlib import Path

from benchmarks.common import SPEECH_DIR


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def inputs(folder: Path) -> list[tuple[str, Path]]:
    from benchmarks.bench_languages import multilang_clips
    from benchmarks.bench_service import long_recording
    from benchmarks.mixed import mixed_workload

    out = []
    for clip in multilang_clips():
        path = folder / f"{clip.language}_60s.wav"
        long_recording([clip.path], 60.0, path)
        out.append((f"{clip.language}: its clip x{round(60 / (clip.duration + 0.5))}", path))
    out.append(("en: 3 speakers, 106 s", SPEECH_DIR / "diarization" / "librispeech_3spk_turns.flac"))
    out.append(("en: broadcast, 115 s", SPEECH_DIR / "diarization" / "voxconverse_akthc.wav"))
    out += [(f"en: mixed workload, {f.seconds:.0f} s", f.path) for f in mixed_workload() if f.seconds > 40]
    return out


def main() -> None:
    from dataclasses import replace

    from pipeline.asr import AsrConfig
    from pipeline.audio import load_audio
    from pipeline.config import PipelineConfig
    from pipeline.plan import Request
    from pipeline.runner import LocalPipeline

    pipe = LocalPipeline(PipelineConfig(asr=AsrConfig(model="base")))
    first_rule = pipe.plan(Request())
    vote_rule = replace(
        first_rule, config=replace(first_rule.config, asr=replace(first_rule.config.asr, language_confidence=1.01))
    )
    seen: list[tuple[int, float]] = []

    def detect(sample, model, candidates):
        language, confidence = pipe.transcriber.detect_language(sample, model, candidates)
        seen.append((len(sample), confidence))
        return language, confidence

    rows, same = [], 0
    with tempfile.TemporaryDirectory() as folder:
        for label, path in inputs(Path(folder)):
            audio = load_audio(path)
            chunks = pipe.vad.chunks(audio, path.name)
            results = {}
            for name, plan in (("first chunk", first_rule), ("vote", vote_rule)):
                seen.clear()
                start = cpu_now()
                results[name] = asyncio.run(plan.detect_language(chunks, detect)).language
                results[name + " cpu"] = cpu_now() - start
                results[name + " passes"] = sum(n for n, _ in seen)
                if name == "first chunk":
                    results["confidence"] = seen[0][1]
            same += results["first chunk"] == results["vote"]
            rows.append((label, len(chunks), chunks[0].end - chunks[0].start, results))

    print(f"Whisper base, int8; {len(rows)} inputs with several chunks\n")
    print(
        "| input | chunks | first chunk s | its confidence | first-chunk rule: language, encoder passes, CPU s "
        "| vote: language, passes, CPU s |\n|---|---|---|---|---|---|"
    )
    for label, count, first_s, r in rows:
        print(
            f"| {label} | {count} | {first_s:.1f} | {r['confidence']:.2f} | {r['first chunk']}, "
            f"{r['first chunk passes']}, {r['first chunk cpu']:.2f} | {r['vote']}, {r['vote passes']}, "
            f"{r['vote cpu']:.2f} |"
        )
    cpu_first = sum(r["first chunk cpu"] for *_, r in rows)
    cpu_vote = sum(r["vote cpu"] for *_, r in rows)
    print(
        f"\nsame language on {same} of {len(rows)}; identification CPU s in all: first-chunk rule {cpu_first:.1f}, "
        f"vote {cpu_vote:.1f} (per encoder pass about {cpu_vote / sum(r['vote passes'] for *_, r in rows):.2f})"
    )
    windows(pipe)


ESPEAK = (
    ("de", "Guten Morgen. Heute ist das Wetter in Berlin sehr schön."),
    ("de", "Ich habe heute keine Zeit, weil ich arbeiten muss."),
    ("fr", "Bonjour, je voudrais un café s'il vous plaît."),
    ("es", "Buenos días, ¿cómo estás hoy?"),
    ("it", "Buongiorno, come stai oggi?"),
)


def windows(pipe) -> None:
    """The trimmed pass alone, the default (trimmed, then padded when unsure) and the padded
    window alone, on every dev file and on short espeak-ng phrases (where it is installed)."""
    import shutil
    import subprocess

    from benchmarks.evaluation import read_references
    from pipeline.asr import detection_frames
    from pipeline.audio import load_audio
    from pipeline.vad import cut

    transcriber = pipe.transcriber.first
    inputs = [(ref.language, ref.path) for ref in read_references(SPEECH_DIR)]
    folder = Path(tempfile.mkdtemp())
    if shutil.which("espeak-ng"):
        for n, (language, text) in enumerate(ESPEAK):
            path = folder / f"espeak{n}.wav"
            subprocess.run(["espeak-ng", "-v", language, "-s", "140", "-w", str(path), text], check=True)
            inputs.append((language, path))
    ways = {
        "the speech + 1 s alone": lambda c: transcriber._vote(transcriber._features(c), (), detection_frames(c)),
        "the speech + 1 s, padded when < 0.9 sure (default)": lambda c: transcriber.detect_language(c),
        "padded to 30 s (WhisperX)": lambda c: transcriber._vote(transcriber._features(c), (), None),
    }
    print(f"\nthe language pass's window, {len(inputs)} files (dev set; the last {len(inputs) - 47} espeak-ng):\n")
    print("| window | right language, dev files | right, espeak-ng | CPU s per file |\n|---|---|---|---|")
    for label, way in ways.items():
        right, synthetic, cpu = 0, 0, 0.0
        for n, (language, path) in enumerate(inputs):
            audio = load_audio(path)
            chunks = cut(audio, "0", [(0.0, min(30.0, audio.duration))])
            start = cpu_now()
            found, _ = way(chunks)
            cpu += cpu_now() - start
            if n < 47:
                right += found == language
            else:
                synthetic += found == language
        print(f"| {label} | {right} of 47 | {synthetic} of {len(inputs) - 47} | {cpu / len(inputs):.2f} |")


if __name__ == "__main__":
    main()
