"""The GPU benchmark's parts that must hold before a GPU session spends its minutes on them
(slow suite): a random-weight Whisper of a real architecture loads through this project's
Transcriber, and every chunk then decodes exactly the fixed number of tokens, so the speed
it measures is the architecture's and not the random weights'."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.random_whisper import FixedLength, build
from pipeline.asr import AsrConfig, DecodeOptions, Transcriber
from pipeline.placement import Placement
from pipeline.schema import Chunk

pytestmark = pytest.mark.slow


def test_random_whisper_decodes_a_fixed_length(tmp_path):
    model_dir = build("tiny", tmp_path)
    assert len(json.loads((model_dir / "config.json").read_text())["lang_ids"]) == 99  # base's language tokens
    transcriber = Transcriber(AsrConfig(model=str(model_dir)), Placement.local_cpu())
    assert transcriber.card.multilingual
    whisper = transcriber._model
    eot = whisper.hf_tokenizer.token_to_id("<|endoftext|>")
    lengths = []

    class Counting(FixedLength):
        def generate(self, features, prompts, **options):
            results = super().generate(features, prompts, **options)
            lengths.extend(len(r.sequences_ids[0]) for r in results)
            return results

    whisper.model = Counting(whisper.model, eot, tokens=37)
    rng = np.random.default_rng(0)
    chunks = [Chunk("a", i, 0.0, 10.0 + i, rng.normal(0, 0.1, (10 + i) * 16000).astype(np.float32)) for i in range(3)]
    results = transcriber.transcribe_chunks(chunks, DecodeOptions(language="en"))
    assert len(results) == 3 and lengths == [37, 37, 37]
