"""The pipeline's configuration: models and stage settings, one typed value, one set of defaults
(every entry point fills it; where a stage runs is a separate `Placement`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pipeline.align import AlignConfig
from pipeline.asr import AsrConfig
from pipeline.audio import AudioLimits
from pipeline.diarize import DiarizeConfig
from pipeline.torch_runtime import TORCH_STAGES, TorchRuntime
from pipeline.vad import VadOptions


@dataclass(frozen=True)
class PipelineConfig:
    asr: AsrConfig = field(default_factory=AsrConfig)
    vad: VadOptions = field(default_factory=VadOptions)
    limits: AudioLimits = field(default_factory=AudioLimits)
    align: AlignConfig = field(default_factory=AlignConfig)
    diarize: DiarizeConfig = field(default_factory=DiarizeConfig)

    def with_torch(self, dtypes: dict[str, str] | None = None, compile: bool = False) -> PipelineConfig:
        """The torch stages' precision (per stage; float32 where not named) and torch.compile (all or none)."""
        dtypes = dict(dtypes or {})
        unknown = set(dtypes) - set(TORCH_STAGES)
        if unknown:
            from pipeline.errors import InvalidOption

            raise InvalidOption(f"torch stages are {', '.join(TORCH_STAGES)}; not {', '.join(sorted(unknown))}")

        runtimes = {s: TorchRuntime(dtype=dtypes.get(s, "float32"), compile=compile) for s in TORCH_STAGES}
        return replace(self, **{s: replace(getattr(self, s), runtime=runtimes[s]) for s in TORCH_STAGES})

    def check_torch_devices(self, devices: dict[str, str], where: dict[str, str] | None = None) -> None:
        """Fail before anything starts when a torch stage's precision needs a GPU its executor lacks.
        `devices`: stage -> "cpu" / "cuda"; `where` names each stage's executor in the message."""
        from pipeline.placement import Placement

        for stage, device in devices.items():
            named = f": {where[stage]}" if where and stage in where else ""
            getattr(self, stage).runtime.check(Placement(device=device), stage, named)
