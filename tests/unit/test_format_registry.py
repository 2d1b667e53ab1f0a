"""pipeline.formats' registry: a new output format is one entry (and its renderer), and the
plan, the CLI and the HTTP parsing take it from there."""

from __future__ import annotations

import pytest

from pipeline.cli import build_parser
from pipeline.config import PipelineConfig
from pipeline.errors import InvalidOption
from pipeline.formats import FORMATS, Format, RenderContext
from pipeline.models import AsrCard
from pipeline.plan import Planner, Request
from pipeline.schema import Segment, Transcript, Word
from serve.http import Upload, native_request, openai_request

EN = AsrCard("bundled/tiny.en", False, ("en",))
TRANSCRIPT = Transcript(
    [Segment(0.0, 1.0, " Hello there.", [Word("Hello", 0.0, 0.4), Word("there.", 0.5, 1.0)])], "en", 1.0
)


def _words_csv(t: Transcript, context: RenderContext) -> str:
    return "".join(f"{w.word},{w.start:.2f},{w.end:.2f}\n" for w in t.words)


WORDS_CSV = Format("words_csv", "text/csv; charset=utf-8", "csv", _words_csv, word_times="always")


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(FORMATS, WORDS_CSV.name, WORDS_CSV)
    return WORDS_CSV


def test_a_new_format_is_one_entry(registered):
    planner = Planner(PipelineConfig(), EN)
    plan = planner.plan(native_request(Upload(b"", {"response_format": ["words_csv"]})))
    assert plan.format is registered and plan.word_timing and not plan.diarize  # its needs, planned
    assert plan.render(TRANSCRIPT) == b"Hello,0.00,0.40\nthere.,0.50,1.00\n"
    args = build_parser().parse_args(["transcribe", "a.wav", "--output-format", "words_csv"])
    assert args.output_format == "words_csv"
    with pytest.raises(InvalidOption, match="words_csv"):  # not one of OpenAI's
        planner.plan(openai_request(Upload(b"", {"response_format": ["words_csv"]})))


def test_the_registry_holds_what_each_surface_offers():
    assert {f.name for f in FORMATS.values() if f.openai} == {
        "json",
        "text",
        "srt",
        "verbose_json",
        "vtt",
        "diarized_json",
    }
    assert [f.name for f in FORMATS.values() if f.needs_speakers] == ["diarized_json", "rttm"]
    planner = Planner(PipelineConfig(), EN)
    for name, fmt in FORMATS.items():
        plan = planner.plan(Request(response_format=name))  # words asked for (the native default)
        assert plan.word_timing == (fmt.word_times != "never" or fmt.needs_speakers)
        assert plan.diarize == fmt.needs_speakers
        unasked = planner.plan(Request(response_format=name, word_timestamps=False))
        assert unasked.word_timing == (fmt.word_times == "always" or fmt.needs_speakers)
    with pytest.raises(InvalidOption, match="'docx'"):
        planner.plan(Request(response_format="docx"))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["transcribe", "a.wav", "--output-format", "words_csv"])  # not registered here
