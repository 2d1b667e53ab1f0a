"""The modules the unit layer tests import neither Ray nor a model runtime at import time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = [
    "pipeline.plan", "pipeline.config", "pipeline.cache_keys", "pipeline.cache_entries",
    "pipeline.placement", "pipeline.diarize", "pipeline.models", "serve.cache_client",
    "serve.config", "serve.admission", "serve.http", "serve.errors",
    "cluster.inputs", "cluster.stages", "cluster.placement", "cluster.schema",
    "pipeline.batch_size", "cluster.gpu", "cluster.asr_memory",
]  # fmt: skip
HEAVY = ["ray", "torch", "whisperx", "faster_whisper", "ctranslate2", "resemblyzer", "pyannote"]


@pytest.mark.parametrize("heavy", [HEAVY])
def test_unit_modules_stay_light(heavy):
    code = (
        "import importlib, sys\n"
        f"for m in {MODULES!r}: importlib.import_module(m)\n"
        f"print(','.join(h for h in {heavy!r} if h in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at module level: {out.stdout.strip()}"
