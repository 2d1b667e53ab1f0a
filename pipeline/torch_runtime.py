"""How a torch stage runs its model: precision and `torch.compile`.

The torch stages are the VAD's segmentation model, the wav2vec2 alignment model and the
offline speaker encoder. ASR is CTranslate2, not a torch module: its precision is
`AsrConfig.compute_type`, and compile / CUDA graphs do not apply to it.

Reduced precision is autocast, not a cast of the weights: matrix products run in float16 or
bfloat16 while softmax, norms and the caller's tensors stay float32, so outputs stay close to
float32's (the tolerance each stage is held to is in its test and in bench_gpu.py).
Compiling is in place (`Module.compile`, dynamic shapes: audio lengths vary per request) so
code that reads the model's attributes keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import InvalidOption
from pipeline.placement import Placement

TORCH_DTYPES = ("float32", "float16", "bfloat16")
TORCH_STAGES = ("vad", "align", "diarize")


@dataclass(frozen=True)
class TorchRuntime:
    dtype: str = "float32"
    compile: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in TORCH_DTYPES:
            raise InvalidOption(f"torch dtype must be one of {', '.join(TORCH_DTYPES)}, not {self.dtype!r}")

    def check(self, placement: Placement, stage: str, where: str = "") -> None:
        """Reduced precision is for GPUs: on a CPU without bfloat16 units oneDNN cannot even run
        the LSTMs in bfloat16 (seen on this project's 2-core EPYC test machine). The one rule
        for every entry point: stages call it at load, the service and the batch job up front."""
        if self.dtype != "float32" and placement.device != "cuda":
            raise InvalidOption(f"{stage}: torch dtype {self.dtype} needs a GPU{where}; the CPU runs float32")

    def prepare(self, module, placement: Placement, stage: str):
        """The module, checked against the placement, its forward run in autocast with float32
        outputs (callers such as pyannote's Inference hand them to numpy), and compiled in
        place if asked. Changes `module` itself and returns it."""
        self.check(placement, stage)
        if self.dtype != "float32":
            module.forward = _autocast_forward(module.forward, placement.device, self.dtype)
        if self.compile:
            module.compile(dynamic=True)
        return module


def _autocast_forward(forward, device: str, dtype: str):
    import functools

    import torch

    @functools.wraps(forward)
    def run(*args, **kwargs):
        with torch.autocast(device_type=device, dtype=getattr(torch, dtype)):
            return _to_float32(forward(*args, **kwargs))

    return run


def _to_float32(output):
    """Floating tensors in a forward's output (a tensor, a tuple, or an HF ModelOutput) as float32."""
    import torch

    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, tuple | list):
        return type(output)(_to_float32(o) for o in output)
    if isinstance(output, dict):  # transformers' ModelOutput is an OrderedDict
        for key, value in output.items():
            output[key] = _to_float32(value)
    return output


def parse_dtypes(text: str | None) -> dict[str, str]:
    """`float16` (every torch stage) or `align=float16,vad=bfloat16` -> {stage: dtype}."""
    if not text:
        return {}
    if "=" not in text:
        return {stage: text.strip() for stage in TORCH_STAGES}
    dtypes = {}
    for part in text.split(","):
        stage, _, dtype = part.partition("=")
        if stage.strip() not in TORCH_STAGES:
            raise InvalidOption(f"torch stages are {', '.join(TORCH_STAGES)}; not {stage.strip()!r}")
        dtypes[stage.strip()] = dtype.strip()
    return dtypes
