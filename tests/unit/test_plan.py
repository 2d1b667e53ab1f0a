"""pipeline.plan: every decision the planner makes, with hand-made model cards (no model loads)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.align import CROSS_ATTENTION_ID, AlignConfig
from pipeline.asr import AsrConfig
from pipeline.cache_keys import options_digest, result_options
from pipeline.config import PipelineConfig
from pipeline.diarize import DiarizeConfig, SpeakerCount
from pipeline.errors import InvalidOption, UnsupportedLanguage
from pipeline.formats import FORMATS
from pipeline.models import AsrCard
from pipeline.plan import Planner, Request
from pipeline.schema import Segment, Turn, Word
from pipeline.vad import VAD_MODEL_ID, VadOptions

SPEAKER_FORMATS = [f for f in FORMATS if FORMATS[f].needs_speakers]
TIMED_FORMATS = [f for f in FORMATS if FORMATS[f].word_times != "never"]


def align_model(p) -> str | None:
    """The wav2vec2 model a plan aligns with, once its language is known."""
    return p.config.align.model_name(p.language) if p.aligns and p.language else None


EN = AsrCard("bundled/tiny.en", False, ("en",))
MULTI = AsrCard("large-v3-turbo", True, ("en", "de", "fr", "ja"))
ALIGNED = PipelineConfig(align=AlignConfig(model="default"))


def plan(request: Request = Request(), config: PipelineConfig = PipelineConfig(), card: AsrCard = EN):
    return Planner(config, card).plan(request)


# --- word timing -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["whisperx", "verbose_json", "srt", "vtt", "tsv"])
def test_timed_formats_run_word_timing(fmt):
    p = plan(Request(response_format=fmt))
    assert p.word_timing is True
    assert p.decode.word_timestamps is True
    assert "word_times" in p.stages()


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_untimed_formats_skip_word_timing(fmt):
    p = plan(Request(response_format=fmt), ALIGNED)
    assert p.word_timing is False
    assert p.decode.word_timestamps is False
    assert p.aligns is False
    assert not {"align", "word_times"} & set(p.stages())


def test_timed_formats_are_the_formats_minus_json_text_and_the_speaker_formats():
    assert SPEAKER_FORMATS == ["diarized_json", "rttm"]
    assert set(TIMED_FORMATS) == set(FORMATS) - {"json", "text", "rttm", "diarized_json"}
    assert {f for f in FORMATS if FORMATS[f].openai} == {"json", "text", "srt", "verbose_json", "vtt", "diarized_json"}


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_diarization_forces_word_timing_even_for_untimed_formats(fmt):
    p = plan(Request(response_format=fmt, diarize=True))
    assert p.diarize is True
    assert p.word_timing is True
    assert p.decode.word_timestamps is True


# --- diarization -------------------------------------------------------------------------------


def test_no_diarization_by_default():
    p = plan()
    assert p.diarize is False
    assert "diarize" not in p.stages()
    assert "diarize" not in p.models()


@pytest.mark.parametrize(
    "count",
    [SpeakerCount(num_speakers=2), SpeakerCount(min_speakers=2), SpeakerCount(max_speakers=3)],
    ids=["num", "min", "max"],
)
def test_any_speaker_count_implies_diarization(count):
    p = plan(Request(speakers=count, response_format="json"))
    assert p.diarize is True
    assert p.speakers == count
    assert p.word_timing is True
    assert "diarize" in p.stages()


def test_rttm_implies_diarization():
    p = plan(Request(response_format="rttm"))
    assert p.diarize is True and "diarize" in p.stages() and "diarize" in p.models()
    assert p.word_timing is True, "diarization assigns speakers per word"
    assert plan(Request(response_format="rttm", diarize=True)).diarize is True


def test_rttm_with_diarization_turned_off_is_invalid():
    with pytest.raises(InvalidOption, match="diarize is false"):
        plan(Request(response_format="rttm", diarize=False))


def test_diarize_false_with_a_speaker_count_is_invalid():
    with pytest.raises(InvalidOption, match="speaker count .* diarize is false"):
        plan(Request(diarize=False, speakers=SpeakerCount(num_speakers=2)))
    assert plan(Request(diarize=True, speakers=SpeakerCount(max_speakers=3))).diarize is True


def test_diarize_false_is_off_for_other_formats():
    assert plan(Request(diarize=False)).diarize is False
    assert plan(Request(diarize=None)).diarize is False


# --- language ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [("DE", "de"), ("  Fr ", "fr"), ("en", "en")])
def test_given_language_is_normalised(given, expected):
    p = plan(Request(language=given), card=MULTI)
    assert p.language == expected
    assert p.detects_language is False
    assert "language" not in p.stages()


def test_blank_language_counts_as_not_given():
    p = plan(Request(language="   "), card=MULTI)
    assert p.language is None
    assert p.detects_language is True


def test_english_only_card_defaults_to_english_without_detection():
    p = plan(card=EN)
    assert p.language == "en"
    assert p.detects_language is False
    assert "language" not in p.stages()


def test_english_only_card_accepts_upper_case_english():
    assert plan(Request(language="EN"), card=EN).language == "en"


def test_multilingual_card_detects_language():
    p = plan(card=MULTI)
    assert p.language is None
    assert p.detects_language is True
    assert p.stages().index("language") == p.stages().index("asr") - 1
    detected = p.with_language("de")
    assert detected.language == "de"
    assert detected.detects_language is False
    assert "language" in detected.stages(), "the vote ran, so the stage is reported"
    assert "language" not in plan(Request(language="de"), card=MULTI).stages()
    assert p.language is None, "with_language returns a new plan"


def test_language_sample_picks_the_longest_chunks_in_time_order():
    config = PipelineConfig(asr=AsrConfig(language_detection_chunks=3))
    p = plan(config=config, card=MULTI)
    assert p.detection_chunks == 3
    # lengths: 10, 30, 5, 25, 1, 20 -> the three longest are 1, 3, 5
    chunks = [(0, 10), (10, 40), (40, 45), (45, 70), (70, 71), (71, 91)]
    assert p.language_sample(chunks) == [1, 3, 5]


def test_language_sample_breaks_ties_by_time_and_takes_all_when_few():
    p = plan(config=PipelineConfig(asr=AsrConfig(language_detection_chunks=2)), card=MULTI)
    assert p.language_sample([(0, 5), (5, 10), (10, 15)]) == [0, 1]
    assert p.language_sample([(0, 3)]) == [0]
    assert p.language_sample([]) == []


def test_a_long_confident_first_chunk_decides_the_language_alone():
    import asyncio

    from pipeline.plan import run_sync

    spans = [(0.0, 20.0)] + [(20.0 + 25 * i, 45.0 + 25 * i) for i in range(10)]
    asked, votes = [], []

    async def first(n):  # as the service's chunk feed: the first n, once known
        asked.append(n)
        return spans[:n]

    def detector(confidence):
        def detect(sample, model, candidates):
            votes.append(sample)
            return ("de" if len(sample) == 1 else "fr"), confidence

        return detect

    p = plan(card=MULTI)
    assert asyncio.run(p.detect_language(first, detector(0.95))).language == "de"
    assert asked == [1] and votes == [[spans[0]]], "no more chunks waited for, no vote"
    asked.clear(), votes.clear()
    assert run_sync(p.detect_language(spans, detector(0.6))).language == "fr", "unsure: the vote decides"
    assert votes == [[spans[0]], [spans[i] for i in p.language_sample(spans[:8])]]
    votes.clear()
    short = [(0.0, 9.0)] + spans[1:]  # too short to decide alone, however sure
    assert run_sync(p.detect_language(short, detector(0.99))).language == "fr" and len(votes) == 1
    votes.clear()
    always_vote = plan(config=PipelineConfig(asr=AsrConfig(language_confidence=1.01)), card=MULTI)
    assert run_sync(always_vote.detect_language(spans, detector(1.0))).language == "fr" and len(votes) == 1
    assert options_digest(result_options(always_vote)) != options_digest(result_options(p)), "in the keys"
    padded = plan(config=PipelineConfig(asr=AsrConfig(language_detection_trim=False)), card=MULTI)
    assert (p.detection_window, padded.detection_window) == ("speech", "30s")
    assert options_digest(result_options(padded)) != options_digest(result_options(p)), "the window is in the keys"


def test_the_language_pass_sees_the_speech_plus_a_second():
    import numpy as np

    from pipeline.asr import detection_frames
    from pipeline.schema import Chunk

    def chunk(seconds: float) -> Chunk:
        return Chunk("a", 0, 0.0, seconds, np.zeros(int(seconds * 16000), np.float32))

    assert detection_frames([chunk(5.0)]) == 600  # 500 frames of audio + 100 of padding
    assert detection_frames([chunk(0.3)]) == 200, "at least 2 s"
    assert detection_frames([chunk(5.005)]) % 2 == 0, "even: the encoder halves the frames"
    assert detection_frames([chunk(3.0), chunk(12.0)]) == 1300, "the longest of the sample"
    assert detection_frames([chunk(29.5)]) == detection_frames([chunk(40.0)]) == 3000, "never past 30 s"


def test_language_sample_uses_the_configured_default():
    p = plan(card=MULTI)
    assert p.detection_chunks == AsrConfig().language_detection_chunks == 5
    chunks = [(float(i), float(i) + 1 + (i % 4)) for i in range(0, 80, 8)]  # 10 chunks, lengths 1..4
    sample = p.language_sample(chunks)
    assert len(sample) == 5
    assert sample == sorted(sample)
    shortest_taken = min(chunks[i][1] - chunks[i][0] for i in sample)
    first = range(AsrConfig().language_detection_first_chunks)
    longest_left = max(chunks[i][1] - chunks[i][0] for i in first if i not in sample)
    assert shortest_taken >= longest_left


def test_language_sample_looks_only_at_the_first_chunks():
    # a stream identifies the language once the first chunks are found: a longer one later is not waited for
    config = PipelineConfig(asr=AsrConfig(language_detection_chunks=2, language_detection_first_chunks=4))
    p = plan(config=config, card=MULTI)
    chunks = [(0, 5), (5, 6), (6, 12), (12, 13), (13, 43)]
    assert p.language_sample(chunks) == [0, 2]
    assert p.language_sample(chunks[:4]) == [0, 2], "the same sample before the later chunks are known"
    assert plan(config=PipelineConfig(asr=AsrConfig(language_detection_chunks=6))).detection_first_chunks == 8
    assert plan(config=PipelineConfig(asr=AsrConfig(language_detection_chunks=9))).detection_first_chunks == 9


# --- alignment ---------------------------------------------------------------------------------


def test_alignment_runs_when_word_timing_align_and_model_configured():
    p = plan(config=ALIGNED)
    assert p.aligns is True
    assert align_model(p) == "default"
    assert "align" in p.stages() and "word_times" not in p.stages()


def test_no_alignment_without_a_configured_model():
    p = plan()
    assert p.word_timing is True
    assert p.aligns is False
    assert align_model(p) is None
    assert "word_times" in p.stages() and "align" not in p.stages()


def test_request_align_false_turns_alignment_off():
    p = plan(Request(align=False), ALIGNED)
    assert p.word_timing is True
    assert p.aligns is False
    assert p.models()["align"] == CROSS_ATTENTION_ID


def test_no_alignment_without_word_timing():
    assert plan(Request(response_format="text"), ALIGNED).aligns is False


def test_per_language_align_models():
    config = PipelineConfig(align=AlignConfig(language_models={"de": "org/wav2vec2-de"}))
    de = plan(Request(language="de"), config, MULTI)
    assert de.aligns is True
    assert align_model(de) == "org/wav2vec2-de"
    assert de.models()["align"] == "wav2vec2/org/wav2vec2-de"
    fr = plan(Request(language="fr"), config, MULTI)
    assert align_model(fr) is None
    assert fr.models()["align"] == CROSS_ATTENTION_ID


def test_per_language_model_wins_over_the_default_model():
    config = PipelineConfig(align=AlignConfig(model="default", language_models={"ja": "org/ja"}))
    assert align_model(plan(Request(language="ja"), config, MULTI)) == "org/ja"
    assert align_model(plan(Request(language="fr"), config, MULTI)) == "default"


def test_stages_agree_with_models_for_a_language_without_an_align_model():
    config = PipelineConfig(align=AlignConfig(language_models={"de": "org/wav2vec2-de"}))
    fr = plan(Request(language="fr"), config, MULTI)
    assert fr.models()["align"] == CROSS_ATTENTION_ID
    assert "word_times" in fr.stages()


def test_align_model_waits_for_the_detected_language():
    p = plan(config=ALIGNED, card=MULTI)
    assert p.aligns is True
    assert align_model(p) is None
    assert p.models()["align"] == CROSS_ATTENTION_ID
    detected = p.with_language("de")
    assert align_model(detected) == "default"
    assert detected.models()["align"] == "wav2vec2/default"


def test_default_align_model_only_for_languages_whisperx_has_one():
    # whisperx ships no default wav2vec2 model for af or bg: their words keep cross-attention
    # times rather than failing. (Imports whisperx.alignment: slow, so one test covers it.)
    card = AsrCard("large-v3", True, ("en", "de", "af", "bg"))
    p = plan(config=ALIGNED, card=card)
    assert p.aligns is True, "until the language is known, alignment may run"
    for language in ("af", "bg"):
        assert ALIGNED.align.model_name(language) is None, language
        detected = p.with_language(language)
        assert detected.aligns is False
        assert align_model(detected) is None
        assert detected.models()["align"] == CROSS_ATTENTION_ID
        assert "word_times" in detected.stages() and "align" not in detected.stages()
        given = plan(Request(language=language), ALIGNED, card)
        assert given.aligns is False and given.models()["align"] == CROSS_ATTENTION_ID
    for language in ("en", "de"):
        assert ALIGNED.align.model_name(language) == "default", language
        detected = p.with_language(language)
        assert detected.aligns is True and align_model(detected) == "default"
        assert detected.models()["align"] == "wav2vec2/default"
    # Only "default" depends on whisperx's list: a named model or a per-language one is used as given.
    assert AlignConfig(model="org/any").model_name("bg") == "org/any"
    assert AlignConfig(model="default", language_models={"bg": "org/bg"}).model_name("bg") == "org/bg"
    bg_model = PipelineConfig(align=AlignConfig(language_models={"bg": "org/bg"}))
    assert plan(Request(language="bg"), bg_model, card).aligns is True


# --- models() ----------------------------------------------------------------------------------


def test_models_default_config():
    assert plan().models() == {"asr": "bundled/tiny.en", "vad": VAD_MODEL_ID, "align": CROSS_ATTENTION_ID}


def test_models_asr_id_comes_from_the_card_not_the_config():
    config = PipelineConfig(asr=AsrConfig(model="something-else"))
    assert plan(config=config, card=MULTI).models()["asr"] == "large-v3-turbo"


def test_models_with_wav2vec2_alignment():
    assert plan(config=ALIGNED).models()["align"] == "wav2vec2/default"


def test_models_with_a_local_align_directory(tmp_path):
    folder = tmp_path / "my-w2v"
    folder.mkdir()
    config = PipelineConfig(align=AlignConfig(model=str(folder)))
    assert plan(config=config).models()["align"] == "wav2vec2/local/my-w2v"


def test_models_without_word_timing_has_no_align_entry():
    models = plan(Request(response_format="json"), ALIGNED).models()
    assert models == {"asr": "bundled/tiny.en", "vad": VAD_MODEL_ID}


def test_models_diarize_id_only_when_diarizing():
    assert "diarize" not in plan().models()
    assert plan(Request(diarize=True)).models()["diarize"] == "whisperx-segmentation+resemblyzer"
    pyannote = PipelineConfig(diarize=DiarizeConfig(model="my-pipeline"))
    assert plan(Request(diarize=True), pyannote).models()["diarize"] == "pyannote/my-pipeline"
    assert "diarize" not in plan(Request(), pyannote).models()


# --- stages() ----------------------------------------------------------------------------------


def test_stages_full_order():
    p = plan(Request(diarize=True), ALIGNED, MULTI)
    assert p.stages() == ("decode", "vad", "language", "asr", "align", "diarize", "merge", "render")


def test_stages_minimal():
    assert plan(Request(response_format="text")).stages() == ("decode", "vad", "asr", "merge", "render")


def test_stages_default():
    assert plan().stages() == ("decode", "vad", "asr", "word_times", "merge", "render")


# --- typed errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        Request(response_format="mp3"),
        Request(task="summarize"),
        Request(beam_size=0),
        Request(beam_size=17),
        Request(temperature=-0.1),
        Request(temperature=1.5),
        Request(initial_prompt="x" * 2001),
        Request(speakers=SpeakerCount(min_speakers=3, max_speakers=2)),
        Request(speakers=SpeakerCount(num_speakers=0)),
        Request(speakers=SpeakerCount(num_speakers=33)),
    ],
    ids=["format", "task", "beam0", "beam17", "temp-neg", "temp-high", "prompt", "min>max", "num0", "num33"],
)
def test_invalid_options(request_):
    with pytest.raises(InvalidOption):
        plan(request_, card=MULTI)


def test_invalid_format_is_checked_first_and_named():
    with pytest.raises(InvalidOption, match="response_format"):
        plan(Request(response_format="mp3", task="bogus"))


@pytest.mark.parametrize(("card", "language"), [(EN, "de"), (MULTI, "xx"), (MULTI, "KLINGON")])
def test_unsupported_language(card, language):
    with pytest.raises(UnsupportedLanguage) as info:
        plan(Request(language=language), card=card)
    assert not isinstance(info.value, InvalidOption)
    assert card.model_id in str(info.value)


def test_translate_on_english_only_card_is_invalid():
    with pytest.raises(InvalidOption, match="English-only"):
        plan(Request(task="translate"), card=EN)


def test_translate_on_multilingual_card():
    p = plan(Request(task="translate", language="de"), card=MULTI)
    assert p.decode.task == "translate"


def test_valid_edge_values_pass():
    p = plan(Request(temperature=1.0, beam_size=16, initial_prompt=""), card=MULTI)
    assert (p.decode.temperature, p.decode.beam_size) == (1.0, 16)
    assert p.decode.initial_prompt is None, "an empty prompt counts as none"


# --- result options ----------------------------------------------------------------------------


def _digest(request: Request = Request(), config: PipelineConfig = PipelineConfig(), card: AsrCard = EN) -> str:
    return options_digest(result_options(Planner(config, card).plan(request)))


def test_format_is_not_a_result_option_but_word_timing_is():
    # Formats that need the same work share a result; json/text (no word timing) differ from
    # the timed formats, whose segments carry words.
    timed = _digest(Request())
    untimed = _digest(Request(response_format="json"))
    assert untimed != timed
    for fmt in set(FORMATS) - set(SPEAKER_FORMATS):
        assert _digest(Request(response_format=fmt)) == (timed if fmt in TIMED_FORMATS else untimed), fmt
    assert _digest(Request(response_format="text", diarize=True)) == _digest(Request(diarize=True))
    assert _digest(Request(response_format="rttm")) == _digest(Request(diarize=True)), "rttm is a diarized result"
    assert _digest(Request(word_timestamps=False)) == timed
    options = result_options(plan())
    assert "response_format" not in options
    assert options["decode"]["word_timestamps"] is True
    assert result_options(plan(Request(response_format="json")))["decode"]["word_timestamps"] is False


def test_the_planned_decoding_is_digested_not_the_raw_request():
    # Requests the planner turns into the same decoding share a key.
    assert _digest(Request(language="en")) == _digest(Request()), "English-only: None plans as en"
    assert _digest(Request(language="EN")) == _digest(Request())
    assert _digest(Request(language="DE"), card=MULTI) == _digest(Request(language="de"), card=MULTI)
    assert _digest(Request(language=" de "), card=MULTI) == _digest(Request(language="de"), card=MULTI)
    assert _digest(Request(initial_prompt=""), card=MULTI) == _digest(Request(initial_prompt=None), card=MULTI)
    options = result_options(plan(Request(language="DE", initial_prompt=""), card=MULTI))
    assert options["decode"]["language"] == "de"
    assert options["decode"]["initial_prompt"] is None


def test_detected_and_given_language_differ_on_a_multilingual_card():
    assert _digest(Request(language="en"), card=MULTI) != _digest(Request(), card=MULTI)


@pytest.mark.parametrize(
    "changed",
    [
        Request(language="de"),
        Request(task="translate"),
        Request(initial_prompt="Names: Ada, Grace."),
        Request(temperature=0.4),
        Request(beam_size=1),
    ],
    ids=["language", "task", "prompt", "temperature", "beam"],
)
def test_decoding_choices_change_the_digest(changed):
    assert _digest(changed, card=MULTI) != _digest(Request(), card=MULTI)


@pytest.mark.parametrize(
    "changed",
    [
        Request(diarize=True),
        Request(speakers=SpeakerCount(num_speakers=2)),
        Request(speakers=SpeakerCount(max_speakers=3)),
    ],
    ids=["diarize", "num", "max"],
)
def test_diarizing_changes_the_digest(changed):
    assert _digest(changed) != _digest(Request())


def test_speaker_counts_are_digested_when_diarizing():
    assert _digest(Request(speakers=SpeakerCount(num_speakers=2))) != _digest(Request(diarize=True))
    assert _digest(Request(speakers=SpeakerCount(num_speakers=2))) != _digest(
        Request(speakers=SpeakerCount(num_speakers=3))
    )
    assert result_options(plan())["speakers"] is None
    assert result_options(plan(Request(diarize=True, speakers=SpeakerCount(max_speakers=4))))["speakers"] == {
        "num_speakers": None,
        "min_speakers": None,
        "max_speakers": 4,
    }


def test_align_changes_the_digest_only_when_alignment_is_requested():
    # Timed format + an align model configured: align on/off are different results.
    assert _digest(Request(align=False), ALIGNED) != _digest(Request(), ALIGNED)
    # Nothing to align with: the request's align changes nothing.
    assert _digest(Request(align=False)) == _digest(Request())
    # No word timing: no alignment either way, and the align config is not digested.
    json_aligned = _digest(Request(response_format="json"), ALIGNED)
    assert _digest(Request(response_format="json", align=False), ALIGNED) == json_aligned
    assert json_aligned == _digest(Request(response_format="json"))
    # align=False on an aligned config is the same result as no align model at all.
    assert _digest(Request(align=False), ALIGNED) == _digest(Request())
    # Which models are configured matters too.
    per_language = PipelineConfig(align=AlignConfig(model="default", language_models={"de": "org/de"}))
    assert _digest(Request(), per_language) != _digest(Request(), ALIGNED)


@pytest.mark.parametrize(
    ("config", "card"),
    [
        (PipelineConfig(asr=AsrConfig(compute_type="float16")), EN),
        (PipelineConfig(asr=AsrConfig(language_detection_chunks=2)), MULTI),
        (PipelineConfig(vad=replace(VadOptions(), onset=0.6)), EN),
        (ALIGNED, EN),
        (PipelineConfig(align=AlignConfig(language_models={"de": "org/de"})), EN),
    ],
    ids=["compute", "detection-chunks", "vad", "align", "align-lang"],
)
def test_result_changing_config_changes_the_digest(config, card):
    assert _digest(Request(), config, card) != _digest(Request(), PipelineConfig(), card)


def test_the_asr_model_is_the_cards_id():
    # "bundled", "tiny.en" and "bundled/tiny.en" load the same model: one card, one key.
    for name in ("bundled", "tiny.en", "bundled/tiny.en", "anything"):
        assert _digest(config=PipelineConfig(asr=AsrConfig(model=name))) == _digest(), name
    assert result_options(plan(config=PipelineConfig(asr=AsrConfig(model="bundled"))))["asr_model"] == EN.model_id
    other = AsrCard("bundled/base.en", False, ("en",))
    assert _digest(card=other) != _digest()


def test_diarize_config_changes_the_digest_only_for_diarizing_requests():
    pyannote = PipelineConfig(diarize=DiarizeConfig(model="my-pipeline"))
    assert _digest(Request(), pyannote) == _digest(Request())
    assert _digest(Request(diarize=True), pyannote) != _digest(Request(diarize=True))
    tuned = PipelineConfig(diarize=DiarizeConfig(keep_fraction=0.3))
    assert _digest(Request(diarize=True), tuned) != _digest(Request(diarize=True))
    assert result_options(plan(Request(), pyannote))["diarize"] is None


def test_digest_is_stable_and_order_independent():
    options = result_options(plan(Request(diarize=True), ALIGNED, MULTI))
    assert options_digest(options) == options_digest(dict(reversed(list(options.items()))))
    assert options_digest(options) == _digest(Request(diarize=True), ALIGNED, MULTI), "a new plan, the same key"
    assert len(options_digest(options)) == 16


# --- assemble ----------------------------------------------------------------------------------


def _segments():
    return [
        Segment(0.0, 2.0, " hello there", [Word("hello", 0.0, 0.8), Word("there", 1.0, 2.0)]),
        Segment(3.0, 5.0, " general kenobi", [Word("general", 3.0, 3.8), Word("kenobi", 4.0, 5.0)]),
    ]


def _turns():
    return [Turn(0.0, 2.5, "SPEAKER_00"), Turn(2.5, 5.0, "SPEAKER_01")]


def test_assemble_assigns_speakers_when_diarizing():
    p = plan(Request(diarize=True))
    transcript = p.assemble(5.0, _segments(), _turns())
    assert [s.speaker for s in transcript.segments] == ["SPEAKER_00", "SPEAKER_01"]
    assert [w.speaker for w in transcript.words] == ["SPEAKER_00"] * 2 + ["SPEAKER_01"] * 2
    assert transcript.language == "en"
    assert transcript.duration == 5.0
    assert transcript.models == p.models()
    assert transcript.models["diarize"] == "whisperx-segmentation+resemblyzer"


def test_assemble_splits_a_segment_where_the_speaker_changes():
    p = plan(Request(diarize=True))
    transcript = p.assemble(5.0, _segments(), [Turn(0.0, 0.9, "SPEAKER_00"), Turn(0.9, 5.0, "SPEAKER_01")])
    assert [(s.text, s.speaker) for s in transcript.segments] == [
        ("hello", "SPEAKER_00"),
        ("there", "SPEAKER_01"),
        (" general kenobi", "SPEAKER_01"),
    ]


def test_assemble_keeps_the_turns_sorted_unmerged_unclipped_in_ms():
    turns = [
        Turn(2.5, 5.0, "SPEAKER_01"),
        Turn(4.0, 9.1234567, "SPEAKER_00"),  # overlaps the one before and runs past the audio
        Turn(0.0, 2.5, "SPEAKER_00"),
        Turn(2.5, 3.0, "SPEAKER_00"),  # same start as SPEAKER_01's: the shorter one first
        Turn(6.0, 6.4, "SPEAKER_02"),  # laughter: no word falls in it
    ]
    transcript = plan(Request(diarize=True)).assemble(5.0, _segments(), turns)
    assert transcript.speaker_turns == [
        Turn(0.0, 2.5, "SPEAKER_00"),
        Turn(2.5, 3.0, "SPEAKER_00"),
        Turn(2.5, 5.0, "SPEAKER_01"),
        Turn(4.0, 9.123, "SPEAKER_00"),
        Turn(6.0, 6.4, "SPEAKER_02"),
    ]
    assert plan(Request(diarize=True)).assemble(5.0, _segments(), []).speaker_turns == []


def test_assemble_ignores_turns_when_not_diarizing():
    p = plan()
    transcript = p.assemble(5.0, _segments(), _turns())
    assert transcript.speaker_turns is None
    assert all(s.speaker is None for s in transcript.segments)
    assert all(w.speaker is None for w in transcript.words)
    assert "diarize" not in transcript.models


def test_assemble_without_turns_leaves_speakers_empty():
    transcript = plan(Request(diarize=True)).assemble(5.0, _segments(), None)
    assert all(s.speaker is None for s in transcript.segments)


def test_assemble_with_no_turns_found_gives_every_word_one_speaker():
    # Diarizing a 0.1 s clip found no turn (too short to embed) while ASR found words: they
    # came back without speakers. Diarization ran, so every word and segment has one.
    transcript = plan(Request(diarize=True)).assemble(5.0, _segments(), [])
    assert [s.speaker for s in transcript.segments] == ["SPEAKER_00"] * 2
    assert [w.speaker for w in transcript.words] == ["SPEAKER_00"] * 4
    untimed = [Segment(0.0, 2.0, "no word times")]
    assert plan(Request(diarize=True)).assemble(2.0, untimed, []).segments[0].speaker == "SPEAKER_00"


def test_assemble_uses_the_plan_language():
    p = plan(card=MULTI).with_language("de")
    assert p.assemble(1.0, [], None).language == "de"


def test_torch_precision_and_compile_keep_the_result_key():
    """They change a torch stage's outputs only within the tolerances its tests hold them to, so
    a batch job resumed with --torch-compile (or upgraded from before these settings) redoes
    nothing; the key still holds every other VAD, alignment and diarization setting."""
    request = Request(diarize=True)
    plain = _digest(request)
    assert _digest(request, PipelineConfig().with_torch({"diarize": "float16"}, compile=True)) == plain
    assert "runtime" not in result_options(Planner(PipelineConfig(), EN).plan(request))["vad"]
    assert _digest(request, PipelineConfig(vad=VadOptions(step_seconds=1.0))) != plain


# --- which ASR model decodes (pipeline/routing.py) ---------------------------------------------

BASE = AsrCard("bundled/base", True, ("en", "de", "ko", "ja"), "sha256:base", "int8")
TINY_EN = AsrCard("bundled/tiny.en", False, ("en",), "sha256:tiny", "int8")
PAIR = PipelineConfig(asr=AsrConfig(model="base", english_model="bundled"))


def routed(request: Request = Request()):
    return Planner(PAIR, (BASE, TINY_EN)).plan(request)


def test_without_a_language_the_multilingual_model_identifies_it_and_routes():
    p = routed()
    assert p.detects_language and p.detect_model == BASE.model_id and p.asr_model == ""
    assert p.with_language("en").asr_model == TINY_EN.model_id  # English: the fast English-only model
    assert p.with_language("ko").asr_model == BASE.model_id
    assert p.with_language("ko").models()["asr"] == BASE.model_id


def test_a_given_language_routes_at_plan_time():
    assert routed(Request(language="en")).asr_model == TINY_EN.model_id
    assert not routed(Request(language="de")).detects_language
    assert routed(Request(language="de")).asr_model == BASE.model_id
    # translation needs the multilingual model, whatever the language
    assert routed(Request(language="en", task="translate")).asr_model == BASE.model_id


@pytest.mark.parametrize("name", ["tiny.en", "bundled/tiny.en", "bundled"])
def test_a_named_model_decodes_everything_it_can(name):
    p = routed(Request(model=name))
    assert (p.language, p.asr_model, p.detects_language) == ("en", TINY_EN.model_id, False)
    with pytest.raises(UnsupportedLanguage):
        routed(Request(model=name, language="de"))
    pinned = routed(Request(model="base"))
    assert pinned.detect_model == BASE.model_id and pinned.with_language("en").asr_model == BASE.model_id


@pytest.mark.parametrize("name", [None, "", "auto", "whisper-1"])
def test_whisper_1_and_auto_mean_the_rule(name):
    assert routed(Request(model=name)).pinned is None


def test_an_unknown_model_is_refused_listing_what_is_served():
    from pipeline.errors import UnknownModel

    with pytest.raises(UnknownModel) as info:
        routed(Request(model="large-v9"))
    assert "whisper-1" in str(info.value) and "bundled/base" in str(info.value) and "bundled/tiny.en" in str(info.value)
    assert Planner(PAIR, (BASE, TINY_EN)).routes.served() == ["whisper-1", "bundled/base", "bundled/tiny.en"]


def test_english_only_service_names_what_to_configure_for_other_languages():
    with pytest.raises(UnsupportedLanguage, match="multilingual ASR model"):
        plan(Request(language="ko"))
    from pipeline.errors import MultilingualModelNeeded
    from serve.errors import status_of

    with pytest.raises(MultilingualModelNeeded, match="multilingual ASR model") as info:
        plan(Request(task="translate"))
    assert status_of(info.value) == 400  # /v1/audio/translations on an English-only service


def test_translation_on_english_only_models_is_400_whatever_the_language():
    from pipeline.errors import MultilingualModelNeeded

    for language in (None, "de", "en"):  # the task is checked before the language
        with pytest.raises(MultilingualModelNeeded, match="Translation needs a multilingual"):
            plan(Request(task="translate", language=language))
    with pytest.raises(MultilingualModelNeeded, match="English-only") as info:  # named: no config hint
        routed(Request(task="translate", model="tiny.en"))
    assert "configure" not in str(info.value)


def test_other_option_errors_get_no_multilingual_hint():
    with pytest.raises(InvalidOption) as info:
        plan(Request(language="de", beam_size=0), card=MULTI)
    with pytest.raises(InvalidOption) as english:
        plan(Request(beam_size=0))
    assert "multilingual" not in str(info.value) + str(english.value)


def test_the_english_model_is_chosen_by_its_role_not_its_card():
    """distil-large-v3 is English-only but its vocabulary reads multilingual: configured as the
    English model, it still decodes English."""
    distil = AsrCard("distil-large-v3", True, ("en", "de"), "sha256:distil", "int8")
    p = Planner(PipelineConfig(asr=AsrConfig(model="base", english_model="distil-large-v3")), (BASE, distil))
    assert p.plan(Request(language="en")).asr_model == "distil-large-v3"
    assert p.plan(Request(language="de")).asr_model == BASE.model_id
    assert p.plan(Request()).detect_model == BASE.model_id


def test_the_cache_key_names_the_choice_and_every_model_it_may_run():
    from pipeline.cache_keys import stage_keys

    auto, pinned = stage_keys(routed(), "ab" * 32), stage_keys(routed(Request(model="base")), "ab" * 32)
    assert auto.asr != pinned.asr
    assert routed().asr_identity == "bundled/base|sha256:base|int8;bundled/tiny.en|sha256:tiny|int8"
    retrained = replace(TINY_EN, weights="sha256:new")
    assert stage_keys(Planner(PAIR, (BASE, retrained)).plan(Request()), "ab" * 32).asr != auto.asr


def test_server_vad_maps_onto_the_vad_options_and_auto_keeps_the_configured_ones():
    from pipeline.chunking import ServerVad

    assert plan().vad == PipelineConfig().vad
    mapped = plan(Request(chunking=ServerVad(threshold=0.6, silence_duration_ms=800, prefix_padding_ms=100))).vad
    assert (mapped.onset, mapped.min_silence_seconds, mapped.pad_onset_seconds) == (0.6, 0.8, 0.1)
    assert mapped.offset == pytest.approx(0.6 * 0.363 / 0.5, abs=1e-4)  # WhisperX's hysteresis kept
    assert mapped.step_seconds == PipelineConfig().vad.step_seconds  # the scoring stays the configured one
    defaults = plan(Request(chunking=ServerVad())).vad  # OpenAI's defaults: WhisperX's thresholds
    assert (defaults.onset, defaults.offset) == (0.5, 0.363)


# --- OpenAI's languages[] and keywords[] ----------------------------------------------------------


def test_one_language_given_in_languages_is_the_language_and_several_restrict_the_vote():
    assert plan(Request(languages=("DE",)), card=MULTI).language == "de"
    several = plan(Request(languages=("de", " fr ", "de")), card=MULTI)
    assert several.detects_language and several.language_candidates == ("de", "fr")
    assert plan(Request(language="fr", languages=("de", "fr")), card=MULTI).language_candidates == ()  # given: no vote
    with pytest.raises(InvalidOption, match="not among languages"):
        plan(Request(language="en", languages=("de", "fr")), card=MULTI)
    with pytest.raises(UnsupportedLanguage, match="'xx'"):
        plan(Request(languages=("de", "xx")), card=MULTI)  # a candidate the model cannot decode


def test_languages_on_an_english_only_model():
    assert plan(Request(languages=("en", "de"))).language == "en"  # nothing to vote with: English
    with pytest.raises(UnsupportedLanguage, match="English-only"):
        plan(Request(languages=("de", "fr")))


def test_the_vote_is_given_the_candidates_and_they_are_in_the_key():
    from pipeline.cache_keys import stage_keys
    from pipeline.plan import run_sync

    asked = []
    restricted = plan(Request(languages=("de", "fr")), card=MULTI)
    run_sync(restricted.detect_language([(0.0, 5.0)], lambda sample, model, c: asked.append(c) or "fr"))
    assert asked == [("de", "fr")]
    assert stage_keys(restricted, "a" * 64).asr != stage_keys(plan(card=MULTI), "a" * 64).asr
    assert "language_candidates" not in result_options(plan(card=MULTI))  # keys without languages[] unchanged


def test_keywords_follow_the_prompt_as_the_decoder_reads_them():
    assert plan(Request(keywords=("Kubernetes", " Ray Serve "))).decode.initial_prompt == "Kubernetes, Ray Serve"
    both = plan(Request(initial_prompt="Names: Ada.", keywords=("WhisperX",))).decode.initial_prompt
    assert both == "Names: Ada. WhisperX"
    assert plan(Request(keywords=("", " "))).decode.initial_prompt is None
    with pytest.raises(InvalidOption, match="keywords"):
        plan(Request(keywords=tuple(f"w{i}" for i in range(101))))


def test_a_live_turn_brings_its_speech_and_runs_no_vad():
    from pipeline.live import LiveSession

    turn = plan(LiveSession().request(whole_speech=True))
    assert "vad" not in turn.stages() and turn.request.live
    given = turn.given_speech(70.0)
    assert given.speech == [(0.0, 70.0)] and len(given.chunks) == 3
    assert all(e - s <= 30.0 for s, e in given.chunks) and given.chunks[-1][1] == 70.0
    assert turn.given_speech(0.05).chunks == [], "nothing to decode"
    committed = plan(LiveSession().request())  # the client's commit: may hold silence, the VAD runs
    assert "vad" in committed.stages() and committed.given_speech(10.0) is None
