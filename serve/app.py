"""config.yaml's `import_path: serve.app:build_app`: Ingress -> (Vad, Transcriber, Diarizer,
Aligner), each with the same PipelineConfig and the Serve options its profile and `deployments:`
declare. Serve validates `args` against the typed parameter, so a bad field fails `serve run`."""

# No `from __future__ import annotations` here: Serve reads the builder's annotation as a class.
import os

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

from ray import serve  # noqa: E402
from ray.serve.config import BackpressureConfig  # noqa: E402

from serve.config import ServiceArgs  # noqa: E402
from serve.deployments import AlignerDeployment, DiarizerDeployment, TranscriberDeployment, VadDeployment  # noqa: E402
from serve.ingress import Ingress  # noqa: E402


def deployment_options(args: ServiceArgs, name: str) -> dict:
    options = args.deployment_options(name)
    if name == "Ingress":
        options.setdefault("backpressure_config", BackpressureConfig(status_code=503, retry_after_s=args.retry_after_s))
    return options


def build_app(args: ServiceArgs) -> serve.Application:
    if not isinstance(args, ServiceArgs):  # called directly with a dict (tests, notebooks)
        args = ServiceArgs.model_validate(args or {})
    config = args.pipeline_config()

    def bind(deployment, name: str, *more):
        return deployment.options(**deployment_options(args, name)).bind(config, args.threads(name), *more)

    transcriber = bind(TranscriberDeployment, "Transcriber")  # batches with @serve.batch instead

    def bind_deferred(deployment, name: str):  # loads its model now, or once the Transcriber has
        first = transcriber if args.loads_after_transcriber(name) else None
        return bind(deployment, name, args.concurrent_calls(name), first)

    diarizer = bind_deferred(DiarizerDeployment, "Diarizer")
    aligner = bind_deferred(AlignerDeployment, "Aligner") if config.align.enabled else None
    vad = bind(VadDeployment, "Vad", args.concurrent_calls("Vad")) if args.vad_deployed else None
    return Ingress.options(**deployment_options(args, "Ingress")).bind(args, transcriber, diarizer, aligner, vad)
