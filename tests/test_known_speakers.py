"""diarized_json and known speakers on the default service, through the real `openai` SDK:
OpenAI's shape, speakers lettered, a speaker named from a reference clip of its voice and the
name never given to another voice, bad references refused naming the field; the same names from
a folder in the CLI. The native endpoint's NDJSON stream over raw HTTP."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.conftest import ffmpeg
from tests.session import API_KEY

# sample.rttm: speaker91 alone 21.78-28.50 s, speaker90 alone 10.57-14.49 s
SPEAKER91_CLIP = ("22.0", "5.5")
SPEAKER91_SPAN, SPEAKER90_SPAN = (22.5, 27.0), (11.0, 14.0)
STRANGER_TEXT = "This voice belongs to nobody in the call, and it reads a sentence for about four seconds."


@pytest.fixture(scope="module")
def clips(pyannote_sample, speak, tmp_path_factory):
    folder = tmp_path_factory.mktemp("known")
    ffmpeg("-ss", SPEAKER91_CLIP[0], "-t", SPEAKER91_CLIP[1], "-i", str(pyannote_sample), str(folder / "Ada.wav"))
    ffmpeg("-i", str(speak(STRANGER_TEXT)), "-ar", "16000", str(folder / "Stranger.wav"))
    ffmpeg("-t", "1.0", "-i", str(pyannote_sample), str(folder / "short.wav"))
    return folder


def data_url(path) -> str:
    return "data:audio/wav;base64," + base64.b64encode(path.read_bytes()).decode()


@pytest.fixture
def sdk(service):
    import openai

    return openai.OpenAI(base_url=f"{service.base}/v1", api_key=API_KEY, max_retries=0)


def speaker_of(segments, span) -> tuple[str, float]:
    """The speaker holding most of the span's transcribed time, and the share it holds (segments are split
    at word speaker changes, so a turn boundary's imprecision costs a sliver, not the whole span)."""
    held: dict[str, float] = {}
    for s in segments:
        overlap = min(s.end, span[1]) - max(s.start, span[0])
        if overlap > 0 and s.text.strip():
            held[s.speaker] = held.get(s.speaker, 0.0) + overlap
    speaker = max(held, key=held.get)
    return speaker, held[speaker] / sum(held.values())


def test_diarized_json_names_the_speaker_its_reference_matches_and_letters_the_rest(sdk, pyannote_sample, clips):
    with open(pyannote_sample, "rb") as f:
        result = sdk.audio.transcriptions.create(
            model="whisper-1",
            file=f,
            response_format="diarized_json",
            known_speaker_names=["Ada", "Stranger"],
            known_speaker_references=[data_url(clips / "Ada.wav"), data_url(clips / "Stranger.wav")],
        )
    assert type(result).__name__ == "TranscriptionDiarized"  # the SDK parsed OpenAI's shape
    assert result.task == "transcribe" and round(result.duration) == 30 and "New Jersey" in result.text
    assert result.usage.type == "duration" and result.usage.seconds == 30
    assert all(s.type == "transcript.text.segment" and s.id.startswith("seg_") for s in result.segments)
    speakers = {s.speaker for s in result.segments}
    assert speakers == {"Ada", "A"}, "speaker91 named from its clip; speaker90 lettered; the stranger's voice unused"
    for span, expected in ((SPEAKER91_SPAN, "Ada"), (SPEAKER90_SPAN, "A")):
        speaker, share = speaker_of(result.segments, span)
        assert speaker == expected and share >= 0.75, (span, speaker, share)
    # Without references: letters only, in order of first appearance.
    with open(pyannote_sample, "rb") as f:
        plain = sdk.audio.transcriptions.create(model="whisper-1", file=f, response_format="diarized_json")
    assert [s.speaker for s in plain.segments][0] == "A" and {s.speaker for s in plain.segments} == {"A", "B"}


def test_bad_references_are_400_naming_the_field(sdk, pyannote_sample, clips):
    import openai

    cases = [
        (["Ada"], [data_url(clips / "short.wav")], "known_speaker_references[0]"),  # 1 s: too short
        (["Ada", "Bo"], [data_url(clips / "Ada.wav")], "known_speaker_references[]"),  # counts differ
        (["Ada"], ["data:audio/wav;base64," + base64.b64encode(b"not audio" * 400).decode()], "references[0]"),
    ]
    for names, references, field in cases:
        with open(pyannote_sample, "rb") as f, pytest.raises(openai.BadRequestError) as info:
            sdk.audio.transcriptions.create(
                model="whisper-1",
                file=f,
                response_format="diarized_json",
                known_speaker_names=names,
                known_speaker_references=references,
            )
        assert info.value.status_code == 400 and field in info.value.message


def test_diarized_json_streams_segments_before_done(sdk, pyannote_sample, clips):
    with open(pyannote_sample, "rb") as f:
        events = list(
            sdk.audio.transcriptions.create(
                model="whisper-1",
                file=f,
                response_format="diarized_json",
                stream=True,
                known_speaker_names=["Ada"],
                known_speaker_references=[data_url(clips / "Ada.wav")],
                extra_headers={"Cache-Control": "no-cache"},
            )
        )
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and "transcript.text.segment" in kinds
    assert kinds.index("transcript.text.segment") > max(i for i, k in enumerate(kinds) if k == "transcript.text.delta")
    segments = [e for e in events if e.type == "transcript.text.segment"]
    assert {"Ada", "A"} == {s.speaker for s in segments}


def test_the_native_endpoint_streams_ndjson_segments_then_done(service, pyannote_sample):
    url = f"{service.base}/v1/transcribe"
    headers = {"Authorization": f"Bearer {API_KEY}", "Cache-Control": "no-cache"}
    with open(pyannote_sample, "rb") as f:
        with httpx.stream("POST", url, files={"file": f}, data={"stream": "true"}, headers=headers, timeout=300) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(line) for line in r.iter_lines() if line]
    assert [x["type"] for x in lines[:-1]] == ["segment"] * (len(lines) - 1) and lines[-1]["type"] == "done"
    segments = [x["segment"] for x in lines[:-1]]
    assert segments and all(s["words"] and "start" in s["words"][0] for s in segments)
    assert "New Jersey" in " ".join(s["text"] for s in segments)
    done = lines[-1]
    assert done["language"] == "en" and done["service"]["chunks"] >= 1 and "segments" not in done
    # the same request unstreamed: the same segments
    with open(pyannote_sample, "rb") as f:
        whole = httpx.post(url, files={"file": f}, headers=headers, timeout=300).json()
    assert whole["segments"] == segments
    refused = httpx.post(url, content=pyannote_sample.read_bytes(), params={"stream": "true", "response_format": "srt"},
                         headers=headers, timeout=60)  # fmt: skip
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unsupported_stream"


def test_the_cli_names_speakers_from_a_folder_of_clips(pyannote_sample, clips, tmp_path):
    from pipeline.cli import main

    folder = tmp_path / "voices"
    folder.mkdir()
    (folder / "Ada.wav").write_bytes((clips / "Ada.wav").read_bytes())
    args = ["transcribe", str(pyannote_sample), "--known-speakers", str(folder), "--output-format", "rttm"]
    assert main([*args, "--output-dir", str(tmp_path)]) == 0
    lines = (tmp_path / "sample.rttm").read_text().splitlines()
    speakers = {line.split()[7] for line in lines}
    assert "Ada" in speakers and len(speakers) == 2
    assert main(["transcribe", str(pyannote_sample), "--known-speakers", str(tmp_path / "none")]) == 2
