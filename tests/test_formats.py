"""Every output format parses with a real parser and carries the transcript's text."""

from __future__ import annotations

import io
import json

import pytest

from pipeline.errors import InvalidOption
from pipeline.formats import render
from pipeline.schema import Segment, Transcript, Word


@pytest.fixture(scope="module")
def transcript(local_pipeline, pyannote_sample) -> Transcript:
    return local_pipeline.transcribe(pyannote_sample)


def squash(text: str) -> str:
    return " ".join(text.split())


def test_srt(transcript):
    import srt

    cues = list(srt.parse(render(transcript, "srt").decode()))
    assert len(cues) == len(transcript.segments)
    assert squash(" ".join(c.content for c in cues)) == squash(transcript.text)
    for cue, seg in zip(cues, transcript.segments):
        assert cue.start.total_seconds() == pytest.approx(seg.start, abs=0.001)
        assert cue.end.total_seconds() == pytest.approx(seg.end, abs=0.001)


def test_vtt(transcript):
    import webvtt

    captions = webvtt.from_buffer(io.StringIO(render(transcript, "vtt").decode()))
    assert len(captions) == len(transcript.segments)
    assert squash(" ".join(c.text for c in captions)) == squash(transcript.text)
    assert captions[0].start_in_seconds == int(transcript.segments[0].start)


def test_openai_json_and_text(transcript):
    usage = {"type": "duration", "seconds": 30}  # OpenAI's for a duration-billed model, rounded up
    assert json.loads(render(transcript, "json")) == {"text": transcript.text, "usage": usage}
    assert json.loads(render(transcript, "verbose_json"))["usage"] == usage
    assert render(transcript, "text").decode().strip() == transcript.text


def test_verbose_json(transcript):
    body = json.loads(render(transcript, "verbose_json"))
    assert body["language"] == "english" and body["task"] == "transcribe"
    assert body["duration"] == pytest.approx(30.0, abs=0.01)
    assert [s["text"] for s in body["segments"]] == [s.text for s in transcript.segments]
    assert [w["word"] for w in body["words"]] == [w.word for w in transcript.words]
    assert all(w["start"] <= w["end"] for w in body["words"])
    no_words = json.loads(render(transcript, "verbose_json", word_granularity=False))
    assert "words" not in no_words


def test_whisperx_json(transcript):
    body = json.loads(render(transcript, "whisperx"))
    assert body["language"] == "en"
    assert len(body["word_segments"]) == len(transcript.words)
    assert body["segments"][0]["words"][0].keys() >= {"word", "start", "end", "score"}
    assert Transcript.from_dict(body).text == transcript.text


def test_tsv(transcript):
    lines = render(transcript, "tsv").decode().splitlines()
    assert lines[0].split("\t") == ["start", "end", "speaker", "text"]
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == len(transcript.segments)
    assert int(rows[0][0]) == round(transcript.segments[0].start * 1000)
    assert squash(" ".join(r[3] for r in rows)) == squash(transcript.text)


def test_speakers_prefix_subtitles():
    import srt

    t = Transcript(
        segments=[
            Segment(
                0.0,
                1.0,
                "Hello there.",
                [Word("Hello", 0.0, 0.4, 0.9, "SPEAKER_00"), Word("there.", 0.5, 1.0, 0.9, "SPEAKER_00")],
                speaker="SPEAKER_00",
            ),
            Segment(1.2, 2.0, "Hi.", [Word("Hi.", 1.2, 2.0, 0.9, "SPEAKER_01")], speaker="SPEAKER_01"),
        ],
        language="en",
        duration=2.5,
    )
    cues = list(srt.parse(render(t, "srt").decode()))
    assert [c.content for c in cues] == ["[SPEAKER_00]: Hello there.", "[SPEAKER_01]: Hi."]
    assert "[SPEAKER_01]: Hi." in render(t, "vtt").decode()
    assert render(t, "tsv").decode().splitlines()[2].split("\t")[2] == "SPEAKER_01"
    assert json.loads(render(t, "verbose_json"))["words"][2]["speaker"] == "SPEAKER_01"


def test_unknown_format(transcript):
    with pytest.raises(InvalidOption):
        render(transcript, "docx")
