"""The pipeline's configuration: which models and how each stage works, one typed value with
one set of defaults. The CLI's flags, the service's `config.yaml` args and the batch job's
flags all fill this same object; where a stage runs is a separate `Placement`."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.align import AlignConfig
from pipeline.asr import AsrConfig
from pipeline.audio import AudioLimits
from pipeline.diarize import DiarizeConfig
from pipeline.vad import VadOptions


@dataclass(frozen=True)
class PipelineConfig:
    asr: AsrConfig = field(default_factory=AsrConfig)
    vad: VadOptions = field(default_factory=VadOptions)
    limits: AudioLimits = field(default_factory=AudioLimits)
    align: AlignConfig = field(default_factory=AlignConfig)
    diarize: DiarizeConfig = field(default_factory=DiarizeConfig)
