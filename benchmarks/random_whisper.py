"""A Whisper of a real architecture with random weights, in CTranslate2 format, and a model
wrapper that makes every chunk decode the same number of tokens.

The GPU machine has no internet and no weights. Speed depends on the architecture, the
precision and how many tokens are decoded, not on the weights' values, so a random
large-v3-turbo measures large-v3-turbo's speed honestly once the decode length is fixed
(random weights would otherwise stop at a random token). Its transcripts are noise: only
the timing is read from it, never a WER.

The tokenizer and vocabulary are the bundled multilingual base model's (51865 tokens;
large-v3's 51866th, <|yue|>, changes no timing).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

# Whisper sizes by their published configurations (openai/whisper-*).
ARCHITECTURES: dict[str, dict[str, int]] = {
    "large-v3-turbo": dict(d_model=1280, layers=(32, 4), heads=20, mels=128),
    "large-v3": dict(d_model=1280, layers=(32, 32), heads=20, mels=128),
    "distil-large-v3": dict(d_model=1280, layers=(32, 2), heads=20, mels=128),
    "tiny": dict(d_model=384, layers=(4, 4), heads=6, mels=80),
}
VOCABULARY = 51865


def build(name: str, folder: Path) -> Path:
    """`folder` holding a faster-whisper model directory of architecture `name` (float16
    weights; CTranslate2 converts to the compute type asked at load). Reused if present."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperTokenizerFast

    out = folder / f"random-{name}"
    if (out / "model.bin").is_file():
        return out
    arch = ARCHITECTURES[name]
    base = _tokenizer_dir()
    hf = folder / f"hf-random-{name}"
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(base / "tokenizer.json"))
    tokenizer.save_pretrained(hf)
    encoder_layers, decoder_layers = arch["layers"]
    config = WhisperConfig(
        vocab_size=VOCABULARY,
        num_mel_bins=arch["mels"],
        d_model=arch["d_model"],
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        encoder_attention_heads=arch["heads"],
        decoder_attention_heads=arch["heads"],
        encoder_ffn_dim=4 * arch["d_model"],
        decoder_ffn_dim=4 * arch["d_model"],
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    # Initialising 800M parameters takes a minute on a CPU, seconds on the GPU.
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = WhisperForConditionalGeneration(config).to(torch.float16)
    model.generation_config.suppress_tokens = []
    model.generation_config.begin_suppress_tokens = [220, tokenizer.eos_token_id]
    model.save_pretrained(hf)
    del model

    import ctranslate2

    ctranslate2.converters.TransformersConverter(str(hf), copy_files=["tokenizer.json"]).convert(
        str(out), quantization="float16", force=True
    )
    # Language tokens, for language detection (the converter finds none in a bare tokenizer).
    config_path = out / "config.json"
    ct2_config = json.loads(config_path.read_text())
    ct2_config["lang_ids"] = _language_ids(tokenizer)
    config_path.write_text(json.dumps(ct2_config))
    # faster-whisper reads the mel count from here (128 for the large-v3 family).
    (out / "preprocessor_config.json").write_text(json.dumps({"feature_size": arch["mels"]}))
    shutil.rmtree(hf)
    return out


def _tokenizer_dir() -> Path:
    """The bundled base model's folder, or (on the GPU machine, where the 180 MB model is not
    carried) the copy of its tokenizer.json that benchmarks/gpu/wheels.sh made."""
    import os

    if os.environ.get("WXS_WHISPER_TOKENIZER_DIR"):
        return Path(os.environ["WXS_WHISPER_TOKENIZER_DIR"])
    from pipeline.bundled import assembled_model_dir

    return assembled_model_dir("base")


def _language_ids(tokenizer) -> list[int]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    vocabulary = tokenizer.get_vocab()
    return sorted(vocabulary[f"<|{code}|>"] for code in _LANGUAGE_CODES if f"<|{code}|>" in vocabulary)


class FixedLength:
    """Wraps a CTranslate2 Whisper so that `generate` emits exactly `tokens` tokens after the
    prompt (end-of-text suppressed), for our pipeline and faster-whisper's alike."""

    def __init__(self, model, eot: int, tokens: int):
        self._model, self._eot, self._tokens = model, eot, tokens

    def generate(self, features, prompts, **options):
        options["suppress_tokens"] = list(options.get("suppress_tokens") or [-1]) + [self._eot]
        # CTranslate2's Whisper generates max_length // 2 tokens when nothing stops it
        # (measured: 10 -> 5, 60 -> 30, 100 -> 50; the test holds it to exactly `tokens`).
        options["max_length"] = 2 * self._tokens
        return self._model.generate(features, prompts, **options)

    def __getattr__(self, name):
        return getattr(self._model, name)
