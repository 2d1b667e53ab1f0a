"""Stand-in for PyAV on the GPU benchmark machine, which lacks it (its wheel is 34 MiB).

faster_whisper imports av at module level but only decode_audio() uses it; the benchmark
passes float32 arrays. torchvision.io probes av at import (logging.set_level,
VideoFrame.pict_type, FFmpegError): those names exist so the probe passes; any real use fails.
"""

from types import SimpleNamespace as _NS

__version__ = "0+stub"


class FFmpegError(Exception):
    pass


AVError = FFmpegError
logging = _NS(ERROR=16, set_level=lambda level: None)
video = _NS(frame=_NS(VideoFrame=type("VideoFrame", (), {"pict_type": None})))


def open(*args, **kwargs):  # noqa: A001
    raise RuntimeError("PyAV is stubbed on this machine: pass audio as a float32 numpy array")
