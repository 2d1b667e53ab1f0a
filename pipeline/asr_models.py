"""The ASR models one process holds (`AsrConfig.model_names()`), each a `Transcriber`: chunks go
to the model their planned options name, so a batch never mixes models inside one decode."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from pipeline.asr import AsrConfig, DecodeOptions, Transcriber
from pipeline.models import AsrCard, describe_asr_model
from pipeline.placement import Placement
from pipeline.schema import Chunk, ChunkResult


class AsrModels:
    def __init__(self, config: AsrConfig = AsrConfig(), placement: Placement = Placement()):
        self.config = config
        self.placement = placement
        self.engines: dict[str, Transcriber] = {}
        for name in config.model_names():
            engine = Transcriber(replace(config, model=name), placement)
            self.engines.setdefault(engine.model_id, engine)
        self.first = next(iter(self.engines.values()))

    @property
    def cards(self) -> tuple[AsrCard, ...]:
        return tuple(engine.card for engine in self.engines.values())

    @property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(self.engines)

    def engine(self, model_id: str) -> Transcriber:
        """The model a plan named ("": the first, as a plan made for one model says)."""
        if not model_id:
            return self.first
        try:
            return self.engines[model_id]
        except KeyError:
            raise ValueError(f"ASR model {model_id!r} is not loaded here; loaded: {', '.join(self.engines)}") from None

    def detect_language(
        self, chunks: Sequence[Chunk], model_id: str = "", candidates: Sequence[str] = ()
    ) -> tuple[str, float]:
        return self.engine(model_id).detect_language(chunks, candidates)

    def transcribe_chunks(
        self, chunks: Sequence[Chunk], options: DecodeOptions | Sequence[DecodeOptions]
    ) -> list[ChunkResult]:
        """Each chunk decoded by its options' model; results in input order."""
        if isinstance(options, DecodeOptions):
            options = [options] * len(chunks)
        by_model: dict[str, list[int]] = defaultdict(list)
        for i, opt in enumerate(options):
            by_model[opt.model].append(i)
        results: list[ChunkResult | None] = [None] * len(chunks)
        for model_id, members in by_model.items():
            decoded = self.engine(model_id).transcribe_chunks(
                [chunks[i] for i in members], [options[i] for i in members]
            )
            for i, result in zip(members, decoded):
                results[i] = result
        return results  # type: ignore[return-value]


def describe_asr_models(config: AsrConfig, device: str) -> tuple[AsrCard, ...]:
    """The cards of the configured models, read from their files without loading them."""
    cards: dict[str, AsrCard] = {}
    for name in config.model_names():
        card = describe_asr_model(name, config.compute_type, device)
        cards.setdefault(card.model_id, card)
    return tuple(cards.values())
