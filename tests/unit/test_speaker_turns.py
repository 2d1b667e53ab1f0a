"""Speaker turns as an output: Transcript.speaker_turns in the native JSON (and back), the rttm
renderer and its file id, turns from a cached result. Hand-made transcripts; no models, no Ray."""

from __future__ import annotations

import json

import pytest

from pipeline.cache_entries import AsrEntry, encode_asr, encode_turns, reuse
from pipeline.cache_keys import stage_keys
from pipeline.config import PipelineConfig
from pipeline.errors import InvalidOption
from pipeline.formats import FORMATS, file_id, render
from pipeline.models import AsrCard
from pipeline.plan import Planner, Request, run_sync
from pipeline.schema import ChunkResult, Segment, Transcript, Turn, Word

EN = AsrCard("bundled/tiny.en", False, ("en",))
# Overlapping turns (SPEAKER_01 starts before SPEAKER_00 ends), and a turn without words.
TURNS = [
    Turn(0.0, 1.2, "SPEAKER_00"),
    Turn(1.0, 2.0, "SPEAKER_01"),
    Turn(2.5, 2.9, "SPEAKER_00"),  # "mm-hm": no word in it
]


def transcript(turns: list[Turn] | None = TURNS) -> Transcript:
    words = [Word("Hello", 0.0, 0.5, 0.9, "SPEAKER_00"), Word("Hi.", 1.3, 1.9, 0.8, "SPEAKER_01")]
    segments = [
        Segment(0.0, 0.5, " Hello", words[:1], -0.1, "SPEAKER_00"),
        Segment(1.3, 1.9, " Hi.", words[1:], -0.2, "SPEAKER_01"),
    ]
    return Transcript(segments, "en", 3.0, {"asr": "bundled/tiny.en"}, speaker_turns=turns)


# --- native JSON -------------------------------------------------------------------------------


def test_to_dict_has_speaker_turns_only_when_diarized():
    body = transcript().to_dict()
    assert body["speaker_turns"] == [
        {"start": 0.0, "end": 1.2, "speaker": "SPEAKER_00"},
        {"start": 1.0, "end": 2.0, "speaker": "SPEAKER_01"},
        {"start": 2.5, "end": 2.9, "speaker": "SPEAKER_00"},
    ]
    assert "speaker_turns" not in transcript(None).to_dict()
    assert transcript([]).to_dict()["speaker_turns"] == [], "diarized, no turn found"


def test_to_dict_rounds_turn_times_to_ms():
    body = transcript([Turn(0.12345, 1.98765, "SPEAKER_00")]).to_dict()
    assert body["speaker_turns"] == [{"start": 0.123, "end": 1.988, "speaker": "SPEAKER_00"}]


@pytest.mark.parametrize("turns", [TURNS, [], None], ids=["turns", "none-found", "not-diarized"])
def test_from_dict_round_trip(turns):
    original = transcript(turns)
    body = json.loads(render(original, "whisperx"))
    back = Transcript.from_dict(body)
    assert back.speaker_turns == turns
    assert back == original
    assert back.to_dict() == original.to_dict()


# --- rttm --------------------------------------------------------------------------------------


def test_rttm_lines():
    text = render(transcript(), "rttm", source="/calls/call 7.wav").decode()
    assert text == (
        "SPEAKER call_7 1 0.000 1.200 <NA> <NA> SPEAKER_00 <NA> <NA>\n"
        "SPEAKER call_7 1 1.000 1.000 <NA> <NA> SPEAKER_01 <NA> <NA>\n"
        "SPEAKER call_7 1 2.500 0.400 <NA> <NA> SPEAKER_00 <NA> <NA>\n"
    )
    assert all(len(line.split(" ")) == 10 for line in text.splitlines())


def test_rttm_defaults_and_edges():
    assert render(transcript(), "rttm").decode().split()[1] == "audio"
    assert render(transcript([]), "rttm") == b"", "diarized, no turn: an empty file"
    odd = render(transcript([Turn(1.0, 1.0, "the host")]), "rttm").decode()
    assert odd == "SPEAKER audio 1 1.000 0.000 <NA> <NA> the_host <NA> <NA>\n"
    with pytest.raises(InvalidOption, match="diarization"):
        render(transcript(None), "rttm")
    assert FORMATS["rttm"].extension == "rttm" and FORMATS["rttm"].content_type.startswith("text/plain")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (None, "audio"),
        ("", "audio"),
        ("sample.wav", "sample"),
        ("/data/in/sample.wav", "sample"),
        ("C:\\Users\\me\\my talk.mp3", "my_talk"),
        ("a.b.flac", "a.b"),
        ("no-extension", "no-extension"),
        ("x\ty;rm -rf.wav", "x_y_rm_-rf"),
        (".wav", "wav"),
        ("...", "audio"),
        ("  .mp3", "audio"),
    ],
)
def test_file_id(source, expected):
    assert file_id(source) == expected


def test_rttm_round_trip_through_pyannote(tmp_path):
    """Rendered, then read back by the project's reader and by pyannote.database's (which
    holds every line to RTTM's ten columns): the same turns, overlap included."""
    from pyannote.database.util import load_rttm

    from benchmarks.evaluation import read_rttm

    path = tmp_path / "call.rttm"
    path.write_bytes(render(transcript(), "rttm", source="call.wav"))
    ours = read_rttm(path)
    theirs = load_rttm(path)["call"]
    for annotation in (ours, theirs):
        got = sorted(
            (round(s.start, 3), round(s.end, 3), label) for s, _, label in annotation.itertracks(yield_label=True)
        )
        assert got == [(t.start, t.end, t.speaker) for t in TURNS]
    assert theirs.get_overlap().duration() == pytest.approx(0.2)


# --- the cache ---------------------------------------------------------------------------------


def test_a_full_cache_hit_carries_the_speaker_turns():
    """The cache holds turns per stage (no transcript): a hit assembles them again, so it
    answers with the same speaker_turns as the request that computed them."""
    plan = Planner(PipelineConfig(), EN).plan(Request(response_format="rttm"))
    keys = stage_keys(plan, "ab" * 32)
    segments = [Segment(0.0, 0.5, " Hello", [Word("Hello", 0.0, 0.5, 0.9)])]
    entry = AsrEntry(3.0, "en", False, [(0.0, 3.0)], [ChunkResult("x", 0, "en", segments, 0.0, 3.0)])
    stored = list(reversed(TURNS))  # the order a diarizer returned them in
    hit = plan.with_cached(reuse(keys, {keys.asr: encode_asr(entry), keys.diarize: encode_turns(stored)}))
    assert hit.cache_state == "hit" and hit.to_run() == ()
    computed = plan.assemble(3.0, segments, stored)
    cached = hit.assemble(
        hit.cached.asr.duration, run_sync(hit.timed_segments(hit.asr_results(), None)), hit.cached.turns
    )
    assert cached.speaker_turns == computed.speaker_turns == TURNS
    assert plan.render(cached, "call.wav") == plan.render(computed, "call.wav")


# --- the CLI's flags -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "diarize", "error"),
    [([], None, False), (["--diarize"], True, False), (["--no-diarize"], False, True)],
)
def test_cli_rttm_flags(flags, diarize, error):
    """`--output-format rttm` implies diarization; `--no-diarize` with it fails in the plan."""
    from pipeline.cli import build_parser, request_from_args

    args = build_parser().parse_args(["transcribe", "a.wav", "--output-format", "rttm", *flags])
    request = request_from_args(args, args.output_format)
    assert request.diarize is diarize
    planner = Planner(PipelineConfig(), EN)
    if error:
        with pytest.raises(InvalidOption, match="diarize is false"):
            planner.plan(request)
    else:
        assert planner.plan(request).diarize is True
