"""Put the models a service config names into this machine's model caches, before replicas need them.

    python -m cluster.preload --config config.gpu.yaml --languages en,de,fr   # download what is missing
    python -m cluster.preload --config config.gpu.yaml --languages en,de,fr --check   # download nothing
    python -m cluster.preload --asr-model large-v3-turbo --align-model default --languages all \\
        --diarize-model pyannote/speaker-diarization-community-1

The models are those the service would load (a Serve config's application `args` through
`PipelineSettings`, profile defaults included; `--asr-model`/`--align-model`/`--diarize-model` override them,
`none` leaves one out), fetched with the pipeline's own loaders, so a replica with downloads off finds them:
ASR and most wav2vec2 models in the HF cache (`HF_HOME`), torchaudio's (en, fr, de, es, it) under `TORCH_HOME`,
pyannote's (gated: the first download needs `HF_TOKEN`) in the HF cache. A language whisperx has no default
alignment model for is skipped (Whisper's word times). `--check` downloads nothing and only looks, the way the
service does (a pod's initContainer waits on it; cluster/deploy/README.md). Exit: 0 all present, 1 something
missing or failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import difflib
import gc
import os
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.settings import OFF, PipelineSettings

DEFAULT_APP = "whisperx"


@dataclass(frozen=True)
class Plan:
    """What to put in the caches (None: that stage needs no model)."""

    asr: tuple[str, ...]  # the ASR models the config holds, its `model` first
    align: str | None
    language_models: tuple[tuple[str, str], ...]  # per-language alignment models from the config
    languages: tuple[str, ...]
    diarize: str | None
    check_only: bool = False

    def align_models(self) -> list[tuple[str, str | None]]:
        """(language, model name or None where `default` has no model for it), in language order."""
        from pipeline.align import AlignConfig

        config = AlignConfig(model=self.align, language_models=dict(self.language_models))
        if not config.enabled:
            return []
        return [(language, config.model_name(language)) for language in self.languages]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cluster.preload",
        description="Download the models a service config names into the HF / torch caches (or --check them).",
    )
    p.add_argument("--config", type=Path, help="a Serve config (e.g. config.gpu.yaml): its application's args")
    p.add_argument(
        "--app", default=None, help=f"the application in --config (default: {DEFAULT_APP!r} or the only one)"
    )
    p.add_argument("--asr-model", help="ASR model (overrides the config; default without one: large-v3-turbo)")
    p.add_argument("--align-model", help="'default' (whisperx's wav2vec2 per language), an HF name, a dir, or none")
    p.add_argument("--diarize-model", help="pyannote pipeline (HF name or dir), or none")
    p.add_argument(
        "--languages",
        default="en",
        help="comma-separated language codes to fetch alignment models for, or 'all' (default: en)",
    )
    p.add_argument("--check", action="store_true", help="download nothing: exit 1 if a model is not cached")
    return p


def parse_args(argv: list[str] | None = None) -> Plan:
    """The command line -> a Plan. Bad arguments exit 2 (argparse's convention), naming the field."""
    p = parser()
    ns = p.parse_args(argv)
    if ns.config is None and ns.app is not None:
        p.error("--app needs --config")
    try:
        # no config: the gpu profile's models
        settings = settings_from_config(ns.config, ns.app) if ns.config else PipelineSettings(profile="gpu")
        given = {"asr_model": ns.asr_model, "align_model": ns.align_model, "diarize_model": ns.diarize_model}
        config = replace(settings, **{k: v.strip() for k, v in given.items() if v is not None}).pipeline_config()
    except (OSError, ValueError, PipelineError) as exc:
        p.error(f"--config {ns.config}: {exc}" if ns.config else str(exc))
    if config.asr.model == OFF:
        p.error("asr_model / --asr-model cannot be 'none': the service needs an ASR model")
    try:
        languages = parse_languages(ns.languages)
    except ValueError as exc:
        p.error(f"--languages: {exc}")
    return Plan(
        asr=config.asr.model_names(),
        align=config.align.model,
        language_models=tuple(sorted(config.align.language_models.items())),
        languages=languages,
        diarize=config.diarize.model,
        check_only=ns.check,
    )


def settings_from_config(path: Path, app: str | None) -> PipelineSettings:
    """The pipeline settings among a Serve config's application args."""
    import yaml

    document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    apps = document.get("applications") or []
    if not apps:
        raise ValueError("has no applications")
    named = [a for a in apps if a.get("name") == (DEFAULT_APP if app is None else app)]
    if app is not None and not named:
        raise ValueError(f"has no application {app!r} (it has: {', '.join(str(a.get('name')) for a in apps)})")
    if not named and len(apps) > 1:
        raise ValueError(f"has {len(apps)} applications: pick one with --app")
    chosen = (named or apps)[0]
    args = chosen.get("args") or {}
    # The service's own fields are the service's to check (cluster/ does not import serve/), but a
    # misspelt model setting would silently pre-load the profile's model instead: refuse it here.
    names = [f.name for f in fields(PipelineSettings)]
    for key in args:
        close = difflib.get_close_matches(key, names, n=1)
        if key not in names and close:
            raise ValueError(f"invalid args: {key!r} is not a setting (did you mean {close[0]!r}?)")
    return PipelineSettings.from_mapping(args)


def parse_languages(spec: str) -> tuple[str, ...]:
    """'en,de' -> ('en', 'de') (order kept, repeats dropped); 'all' -> every language whisperx
    has a default alignment model for. Codes must be Whisper's."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    spec = spec.strip()
    if spec == "all":
        from whisperx.alignment import DEFAULT_ALIGN_MODELS_HF, DEFAULT_ALIGN_MODELS_TORCH

        return tuple(sorted({*DEFAULT_ALIGN_MODELS_TORCH, *DEFAULT_ALIGN_MODELS_HF}))
    codes = [code.strip().lower() for code in spec.split(",") if code.strip()]
    if not codes:
        raise ValueError("no language given (use e.g. en,de or all)")
    unknown = [code for code in codes if code not in _LANGUAGE_CODES]
    if unknown:
        raise ValueError(f"not Whisper language codes: {', '.join(unknown)}")
    return tuple(dict.fromkeys(codes))


# --- fetching and checking, with the pipeline's own code ---------------------------------------


def fetch_asr(name: str, check_only: bool) -> str:
    from pipeline.models import resolve_asr_model

    return str(resolve_asr_model(name).path)  # downloads only when WXS_ALLOW_DOWNLOAD is set


def fetch_align(language: str, name: str, check_only: bool) -> str:
    from pipeline.align import DEFAULT, _load_align_model, _torchaudio_weights_cached
    from pipeline.diarize.pyannote import in_hf_cache
    from pipeline.errors import ModelNotFound

    if check_only:
        from whisperx.alignment import DEFAULT_ALIGN_MODELS_HF, DEFAULT_ALIGN_MODELS_TORCH

        defaults = {**DEFAULT_ALIGN_MODELS_HF, **DEFAULT_ALIGN_MODELS_TORCH}  # torchaudio's where both have one
        resolved = defaults[language] if name == DEFAULT else name
        import torchaudio

        if Path(resolved).expanduser().is_dir():
            return resolved
        if resolved in torchaudio.pipelines.__all__:  # torchaudio fetches these into TORCH_HOME
            if _torchaudio_weights_cached(resolved):
                return f"{resolved} (torch hub cache)"
        elif in_hf_cache(resolved):
            return f"{resolved} (HF cache)"
        raise ModelNotFound(f"alignment model {resolved} for {language!r} is not cached")
    model, _metadata = _load_align_model(language, name, "cpu")  # downloads, then loads once to prove it
    del model
    gc.collect()
    return name


def fetch_diarize(name: str, check_only: bool) -> str:
    from pipeline.diarize.pyannote import PyannoteBackend, in_hf_cache
    from pipeline.errors import ModelNotFound

    local = Path(name).expanduser()
    if local.is_dir() or in_hf_cache(name):
        return str(local) if local.is_dir() else f"{name} (HF cache)"
    if check_only:
        raise ModelNotFound(f"diarization model {name!r} is not cached")
    if not os.environ.get("HF_TOKEN"):
        raise ModelNotFound(
            f"{name!r} is gated on Hugging Face: set HF_TOKEN to a token whose account accepted its conditions"
        )
    backend = PyannoteBackend(name, "cpu")
    del backend
    gc.collect()
    return name


def run(plan: Plan, out=sys.stdout) -> int:
    from pipeline.models import ALLOW_DOWNLOAD_ENV

    if plan.check_only:
        os.environ.pop(ALLOW_DOWNLOAD_ENV, None)
    else:
        os.environ[ALLOW_DOWNLOAD_ENV] = "1"
    # (stage, fetch, its arguments); an alignment model None: `default` has none for that language
    models = [("asr", fetch_asr, (name,)) for name in plan.asr]
    models += [("align", fetch_align, (language, name)) for language, name in plan.align_models()]
    models += [("diarize", fetch_diarize, (plan.diarize,))] if plan.diarize else []
    failed = 0
    for stage, fetch, names in models:
        label = " ".join([stage, *filter(None, names)])
        if None in names:
            print(f"skip    {label}: whisperx has no default model (words keep Whisper's times)", file=out, flush=True)
            continue
        try:
            where = fetch(*names, plan.check_only)
        except Exception as exc:  # report every model, not just the first that fails
            failed += 1
            word = "missing" if plan.check_only else "failed"
            print(f"{word:7} {label}: {type(exc).__name__}: {str(exc)[:300]}", file=out, flush=True)
        else:
            print(f"ok      {label} -> {where}", file=out, flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
