"""cluster/preload.py's argument handling and its report (no model is downloaded or loaded)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from cluster import preload
from cluster.preload import Plan, parse_args, run

ROOT = Path(__file__).resolve().parents[2]


def test_models_come_from_the_gpu_config():
    plan = parse_args(["--config", str(ROOT / "config.gpu.yaml")])
    assert plan.asr == ("large-v3-turbo",)
    assert plan.align == "default"
    assert plan.diarize == "pyannote/speaker-diarization-community-1"
    assert plan.languages == ("en",)
    assert not plan.check_only


def test_the_cpu_config_needs_only_the_bundled_asr_models():
    plan = parse_args(["--config", str(ROOT / "config.yaml")])
    assert plan.asr == ("base", "bundled") and plan.align is None and plan.diarize is None
    assert plan.align_models() == []


def test_without_a_config_the_gpu_profile_models():
    plan = parse_args([])
    assert (plan.asr, plan.align, plan.diarize) == (
        ("large-v3-turbo",),
        "default",
        "pyannote/speaker-diarization-community-1",
    )


def test_flags_override_the_config_and_none_turns_a_stage_off():
    plan = parse_args(
        ["--config", str(ROOT / "config.gpu.yaml"), "--asr-model", "medium", "--diarize-model", "none", "--check"]
    )
    assert plan.asr == ("medium",) and plan.diarize is None and plan.align == "default" and plan.check_only


def test_languages_list_all_and_defaults_without_a_model():
    assert parse_args(["--languages", "EN, de,en,fr"]).languages == ("en", "de", "fr")
    everything = parse_args(["--languages", "all"]).languages
    assert {"en", "fr", "de", "ja", "zh"} <= set(everything)
    # a Whisper language whisperx has no default wav2vec2 for is listed as skipped (None)
    plan = parse_args(["--languages", "en,sw"])
    models = dict(plan.align_models())
    assert models["en"] == "default"
    assert "sw" not in everything and models["sw"] is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--languages", "xx"],
        ["--languages", " , "],
        ["--asr-model", "none"],
        ["--app", "whisperx"],  # --app without --config
        ["--config", "/nonexistent/config.yaml"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err


def test_config_app_selection(tmp_path):
    config = tmp_path / "two.yaml"
    config.write_text(
        "applications:\n"
        "  - {name: a, import_path: serve.app:build_app, args: {profile: gpu, diarize_model: none}}\n"
        "  - {name: b, import_path: serve.app:build_app, args: {profile: cpu}}\n"
    )
    with pytest.raises(SystemExit):
        parse_args(["--config", str(config)])  # two apps, none named whisperx: must pick
    assert parse_args(["--config", str(config), "--app", "a"]).diarize is None
    assert parse_args(["--config", str(config), "--app", "b"]).asr == ("base", "bundled")
    with pytest.raises(SystemExit):
        parse_args(["--config", str(config), "--app", "c"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("applications:\n  - {name: whisperx, args: {profile: gpu, asr_modle: x}}\n")
    with pytest.raises(SystemExit):
        parse_args(["--config", str(bad)])  # ServiceArgs refuses the misspelt field


def test_run_reports_every_model_and_sets_downloads(monkeypatch):
    seen = []

    def fake_asr(name, check_only):
        seen.append(("asr", name, check_only, os.environ.get("WXS_ALLOW_DOWNLOAD")))
        return "/cache/asr"

    def fake_align(language, name, check_only):
        if language == "de":
            raise RuntimeError("offline")
        return name

    monkeypatch.setattr(preload, "fetch_asr", fake_asr)
    monkeypatch.setattr(preload, "fetch_align", fake_align)
    monkeypatch.setattr(preload, "fetch_diarize", lambda name, check_only: name)
    plan = Plan(("large-v3-turbo",), "default", (), ("en", "de", "sw"), "pyannote/x")

    out = io.StringIO()
    monkeypatch.delenv("WXS_ALLOW_DOWNLOAD", raising=False)
    assert run(plan, out) == 1  # de failed; the others are still reported
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("ok      asr large-v3-turbo")
    assert lines[1].startswith("ok      align en default")
    assert lines[2].startswith("failed  align de default: RuntimeError: offline")
    assert lines[3].startswith("skip    align sw")
    assert lines[4].startswith("ok      diarize pyannote/x")
    assert seen[-1][3] == "1"  # downloads allowed while fetching

    monkeypatch.setenv("WXS_ALLOW_DOWNLOAD", "1")
    out = io.StringIO()
    check = Plan(("large-v3-turbo",), None, (), ("en",), None, check_only=True)
    assert run(check, out) == 0
    assert seen[-1][2:] == (True, None)  # --check never lets a resolver download
    assert out.getvalue().count("\n") == 1


def test_every_service_field_passes_the_typo_check(tmp_path):
    """preload cannot import serve/; its misspelling check must never refuse a real ServiceArgs field."""
    from serve.config import ServiceArgs

    config = tmp_path / "all.yaml"
    args = ServiceArgs(profile="gpu", diarize_model="none").model_dump(mode="json")
    config.write_text(json.dumps({"applications": [{"name": "whisperx", "args": args}]}))
    assert parse_args(["--config", str(config)]).diarize is None


def test_a_config_cannot_turn_asr_off(tmp_path, capsys):
    config = tmp_path / "off.yaml"
    config.write_text("applications:\n  - {name: whisperx, args: {asr_model: none}}\n")
    with pytest.raises(SystemExit) as exc:
        parse_args(["--config", str(config)])
    assert exc.value.code == 2 and "asr_model" in capsys.readouterr().err
