"""Tiny random-weight models for measuring what does not depend on a model's size (the CPU
side of alignment) and for tests that exercise real code paths without downloadable weights."""

from __future__ import annotations


def tiny_wav2vec2_ctc(vocab_size: int, seed: int = 0, **config):
    """A 2-layer, 32-wide Wav2Vec2ForCTC with random weights: its forward costs next to nothing."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(seed)
    settings = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    return Wav2Vec2ForCTC(Wav2Vec2Config(**{**settings, **config}))
