"""The pipeline's configuration: which models and how each stage works, one typed value with
one set of defaults. The CLI's flags, the service's `config.yaml` args and the batch job's
flags all fill this same object; where a stage runs is a separate `Placement`."""

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
        """The torch stages' precision (per stage: vad, align, diarize; float32 where not
        named) and torch.compile (all of them or none), as every entry point sets them."""
        dtypes = dict(dtypes or {})
        unknown = set(dtypes) - set(TORCH_STAGES)
        if unknown:
            from pipeline.errors import InvalidOption

            raise InvalidOption(f"torch stages are {', '.join(TORCH_STAGES)}; not {', '.join(sorted(unknown))}")

        def runtime(stage: str) -> TorchRuntime:
            return TorchRuntime(dtype=dtypes.get(stage, "float32"), compile=compile)

        return replace(
            self,
            vad=replace(self.vad, runtime=runtime("vad")),
            align=replace(self.align, runtime=runtime("align")),
            diarize=replace(self.diarize, runtime=runtime("diarize")),
        )

    def check_torch_devices(self, devices: dict[str, str], where: dict[str, str] | None = None) -> None:
        """Fail before anything starts when a torch stage's precision needs a GPU that the
        executor will not give it. `devices`: stage -> "cpu" / "cuda"; `where` names each
        stage's executor in the message."""
        from pipeline.placement import Placement

        runtimes = {"vad": self.vad.runtime, "align": self.align.runtime, "diarize": self.diarize.runtime}
        for stage, device in devices.items():
            named = f": {where[stage]}" if where and stage in where else ""
            runtimes[stage].check(Placement(device=device), stage, named)
