"""Which ASR model decodes a request: the one routing rule, applied by the plan.

A pipeline holds one or two ASR models (`AsrConfig.model`, and `AsrConfig.english_model`, an
English-only model that is faster on English). A request either names one (`model`: its id or
configured name) or leaves it to the rule ("auto", also what `whisper-1` means by default):
English goes to the English model, anything else to the multilingual one, and a request without a
language has it identified once, by the multilingual model, on the plan's sample of chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.errors import InvalidOption, UnknownModel
from pipeline.models import AsrCard

AUTO = "auto"  # the routing rule rather than one model


@dataclass(frozen=True)
class AsrRoutes:
    """The loaded models' cards and the names requests may use for them."""

    cards: tuple[AsrCard, ...]  # `AsrConfig.model_names()` order: `model`, then `english_model` if any
    # name a request may give -> model id (each model's id and its configured name), plus aliases
    names: dict[str, str] = field(default_factory=dict)
    # aliases (e.g. OpenAI's whisper-1) -> a model's name or AUTO
    aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls, cards: Sequence[AsrCard], configured: Sequence[str] = (), aliases: dict[str, str] | None = None
    ) -> AsrRoutes:
        """`configured[i]`: the name the config gave `cards[i]` (e.g. "base" for "bundled/base")."""
        names = {card.model_id: card.model_id for card in cards}
        for name, card in zip(configured, cards):
            names.setdefault(name, card.model_id)
        for card in cards:  # "tiny.en" for "bundled/tiny.en"
            names.setdefault(card.model_id.rsplit("/", 1)[-1], card.model_id)
        routes = cls(tuple(cards), names, dict(aliases or {}))
        for alias, target in routes.aliases.items():
            if target != AUTO and target not in names:
                raise InvalidOption(f"model alias {alias!r} names {target!r}, which is not configured")
        return routes

    # --- which models -----------------------------------------------------------------------

    def card(self, model_id: str) -> AsrCard:
        return next(c for c in self.cards if c.model_id == model_id)

    @property
    def multilingual(self) -> AsrCard | None:
        """The multilingual model (the first configured): it detects and serves every language."""
        return next((c for c in self.cards if c.multilingual), None)

    @property
    def english(self) -> AsrCard:
        """English audio's model: the configured English model (`AsrConfig.english_model`, the
        second card) where there is one, else the first. By role, not by its card: an English
        model whose vocabulary reads multilingual (distil-large-v3) is still the English one."""
        return self.cards[1] if len(self.cards) > 1 else self.cards[0]

    def served(self) -> list[str]:
        """What `model` may name, as /v1/models lists it: aliases first, then each model's id."""
        return [*self.aliases, *(c.model_id for c in self.cards)]

    def pinned(self, requested: str | None) -> str | None:
        """The model id a request names, or None for the rule; an unknown name is an error
        that lists the names served."""
        name = (requested or "").strip() or AUTO
        name = self.aliases.get(name, name)
        if name == AUTO:
            return None
        if name not in self.names:
            known = ", ".join([AUTO, *self.served(), *sorted(set(self.names) - set(self.served()))])
            raise UnknownModel(f"model {requested!r} is not served here; choose one of: {known}")
        return self.names[name]

    def for_language(self, language: str | None, task: str, pinned: str | None) -> AsrCard:
        """The model that decodes: the pinned one; else translation and other languages on the
        multilingual model, English on the English one. Language None: the one that detects
        (or, with no multilingual model, the English one)."""
        if pinned is not None:
            return self.card(pinned)
        multilingual = self.multilingual
        if language == "en" and task == "transcribe":
            return self.english
        if multilingual is None:
            return self.english  # check_decode_options names what is missing
        return multilingual

    def detector(self, pinned: str | None) -> AsrCard | None:
        """The model that identifies the language; None: it cannot be identified (English-only)."""
        card = self.card(pinned) if pinned is not None else self.multilingual
        return card if card is not None and card.multilingual else None

    def identity(self, pinned: str | None) -> str:
        """Every model a request with this choice may run, with its weights and compute type
        (a result-cache key's part: a new model under the same name never serves old results)."""
        cards = [self.card(pinned)] if pinned is not None else self.cards
        return ";".join(f"{c.model_id}|{c.weights}|{c.compute_type}" for c in cards)
