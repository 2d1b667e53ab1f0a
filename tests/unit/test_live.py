"""Live sessions' rules (pipeline/live.py) and the Realtime protocol's set-up (serve/realtime.py):
what each utterance asks for, and which session.update shapes are taken or refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from pipeline.audio import load_audio
from pipeline.live import CONTEXT_CHARS, LiveSession, LiveSettings, wav_bytes
from pipeline.turns import TurnDetection
from serve.realtime import RATE, EventError, SessionConfig, configure


def test_the_first_utterance_is_identified_and_its_language_kept():
    live = LiveSession()
    first = live.request()
    assert first.language is None and first.initial_prompt is None and first.openai
    assert not first.word_timestamps and not first.align, "plain text: no word timing"
    live.completed("Guten Tag.", "de")
    second = live.request()
    assert second.language == "de", "identified once, then kept"
    assert second.initial_prompt == "Guten Tag.", "the text before conditions the next utterance"
    live.completed("  ", "en")  # silence decodes to nothing: it teaches nothing
    assert live.request().initial_prompt == "Guten Tag." and live.language == "de"


def test_a_given_language_and_prompt_come_first():
    live = LiveSession(LiveSettings(model="bundled/base", language="fr", prompt="Réunion budget."))
    live.completed("Bonjour à tous.", "fr")
    asked = live.request()
    assert asked.language == "fr" and asked.model == "bundled/base"
    assert asked.initial_prompt == "Réunion budget. Bonjour à tous."
    assert live.language is None, "nothing to learn when the client named it"


def test_the_context_is_the_tail_in_whole_words():
    live = LiveSession()
    for i in range(200):
        live.completed(f"word{i} and more", "en")
    prompt = live.request().initial_prompt
    assert len(prompt) <= CONTEXT_CHARS and prompt.endswith("word199 and more")
    assert prompt.split(" ")[0] in {f"word{i}" for i in range(200)} | {"and", "more"}, "starts on a whole word"


def test_both_set_up_shapes():
    new = configure(
        SessionConfig(),
        {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": {"model": "whisper-1", "language": "en", "prompt": "JFK"},
                    "turn_detection": None,
                    "noise_reduction": {"type": "near_field"},
                }
            },
        },
        legacy=False,
    )
    assert new.settings == LiveSettings(model="whisper-1", language="en", prompt="JFK")
    described = new.describe()
    assert described["audio"]["input"]["transcription"]["language"] == "en"
    assert described["audio"]["input"]["turn_detection"] is None
    old = configure(
        SessionConfig(),
        {"input_audio_format": "pcm16", "input_audio_transcription": {"language": "de"}, "turn_detection": None},
        legacy=True,
    )
    assert old.settings.language == "de" and old.describe(legacy=True)["input_audio_format"] == "pcm16"
    # A partial update keeps the rest, turn detection included.
    kept = configure(old, {}, legacy=True)
    assert kept.settings == old.settings and kept.describe(legacy=True)["turn_detection"] is None


def test_server_vad_is_the_default_and_takes_openais_defaults_for_what_is_left_out():
    default = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500}
    assert SessionConfig().describe()["audio"]["input"]["turn_detection"] == default
    vad = _input(turn_detection={"type": "server_vad", "threshold": 0.7})
    asked = configure(SessionConfig(turn_detection=None), vad, legacy=False)
    assert asked.turn_detection == TurnDetection(threshold=0.7)
    legacy = configure(SessionConfig(), {"turn_detection": {"type": "server_vad", "silence_duration_ms": 800}}, True)
    assert legacy.describe(legacy=True)["turn_detection"] == {**default, "silence_duration_ms": 800}
    assert configure(asked, _input(transcription={"language": "en"}), False).turn_detection == asked.turn_detection


def _input(**fields) -> dict:
    return {"audio": {"input": fields}}


@pytest.mark.parametrize(
    "session, legacy, code, param",
    [
        (_input(format={"type": "audio/pcmu"}), False, "invalid_value", "session.audio.input"),
        (_input(format={"type": "audio/pcm", "rate": 16000}), False, "invalid_value", "session.audio.input"),
        ({"type": "realtime"}, False, "invalid_value", "session.type"),
        ({"input_audio_format": "g711_ulaw"}, True, "invalid_value", "session"),
        (_input(turn_detection={"type": "semantic_vad"}), False, "unsupported_turn_detection",
         "session.audio.input.turn_detection.type"),
        ({"turn_detection": {"type": "server_vad", "threshold": 1.5}}, True, "invalid_value", "session.turn_detection"),
        ({"turn_detection": {"silence_duration_ms": "long"}}, True, "invalid_value",
         "session.turn_detection.silence_duration_ms"),
        ({"turn_detection": {"prefix_padding_ms": 2.5}}, True, "invalid_value",
         "session.turn_detection.prefix_padding_ms"),
        ({"turn_detection": {"idle_timeout_ms": 5000}}, True, "unsupported_turn_detection", "session.turn_detection"),
        ({"turn_detection": "server_vad"}, True, "invalid_value", "session.turn_detection"),
        ("text", False, "invalid_value", "session"),
    ],
)  # fmt: skip
def test_set_up_refused_naming_the_field(session, legacy, code, param):
    with pytest.raises(EventError) as refused:
        configure(SessionConfig(), session, legacy)
    assert refused.value.code == code and refused.value.param == param


def test_committed_pcm16_decodes_as_an_upload_does():
    seconds = 1.5
    tone = (np.sin(np.arange(int(RATE * seconds)) * 2 * np.pi * 440 / RATE) * 8000).astype("<i2")
    wav = wav_bytes(tone.tobytes())
    assert soundfile.info(io.BytesIO(wav)).samplerate == 16000, "the model's rate: read without ffmpeg"
    audio = load_audio(wav)
    assert audio.duration == pytest.approx(seconds, abs=0.01)
    assert 0.15 < float(np.abs(audio.samples).max()) < 0.3, "resampled to 16 kHz float, same level"
