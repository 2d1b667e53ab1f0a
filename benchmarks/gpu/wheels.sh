#!/usr/bin/env bash
# Prepares what bench_gpu.py carries to the device machine (python3 3.12 there, with torch
# 2.11+cu130, transformers 5.17, huggingface_hub 1.33, numpy 2.5, lightning 2.6.6; no internet).
# Only what that machine lacks, without dependencies (pip --no-deps), into .whl-gpu/ (ignored):
#   wheels (whisperx and Resemblyzer repacked without their checkpoints' optimizer state: same
#   weights, -20 MiB), stubs/av (faster_whisper imports PyAV, a 34 MiB wheel, but only its file
#   decoder uses it), and whisper-base-tokenizer/ (the random-weight model's tokenizer).
# A call may carry 64 MiB with the repo; this is about 62 MiB, the repo 0.5 MiB. ray (72 MiB) cannot travel, so
# bench_gpu's service section does not run there.
# Usage (repo root, here): bash benchmarks/gpu/wheels.sh ; then see benchmarks/gpu/env.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=.whl-gpu
grep -qx "/$OUT/" .git/info/exclude 2>/dev/null || echo "/$OUT/" >> .git/info/exclude
rm -rf "$OUT"
mkdir -p "$OUT/dl" "$OUT/wheels" "$OUT/stubs/av" "$OUT/whisper-base-tokenizer"
dl() {
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$OUT/dl" "$@"
}
# ASR: pipeline.asr -> whisperx.asr, whose module level imports ctranslate2, faster_whisper and
# whisperx.vads -> pyannote.audio (-> torch_audiomentations -> julius, torch_pitch_shift -> primePy;
# pyannote.database/.metrics/.pipeline -> optuna -> colorlog; pyannote telemetry -> opentelemetry).
# soundfile + cffi read WAV (ffmpeg may be missing there).
dl ctranslate2==4.8.5 faster-whisper==1.2.1 whisperx==3.8.6 \
   pyannote-audio==4.0.7 pyannote-core==6.1.0 pyannote-database==6.1.1 pyannote-metrics==4.2.0 pyannote-pipeline==4.1.0 \
   torch-audiomentations==0.12.0 torch-pitch-shift==1.2.5 julius==0.2.8 primePy==1.3 optuna==5.0.0 colorlog==6.12.0 \
   opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-semantic-conventions==0.66b2 \
   opentelemetry-proto==1.45.2 opentelemetry-exporter-otlp-proto-http==1.45.2 \
   opentelemetry-exporter-otlp-proto-common==1.45.2 opentelemetry-exporter-http-transport==0.66b2 \
   opentelemetry-exporter-otlp-common==0.66b2 soundfile==0.14.0 cffi==2.1.1
# VAD: the segmentation checkpoint holds omegaconf objects; PyanNet's SincNet -> asteroid_filterbanks
dl asteroid-filterbanks==0.4.0 omegaconf==2.4.0
# alignment: whisperx.alignment imports nltk at module level
dl nltk==3.10.4
# offline speaker encoder: resemblyzer -> webrtcvad (webrtcvad-wheels: same module, a cp312 wheel),
# librosa -> soundfile, audioread, soxr, pooch -> platformdirs, decorator
dl Resemblyzer==0.1.4 webrtcvad-wheels==2.0.14.post1 librosa==0.11.0 soxr==1.1.0 audioread==3.1.0 \
   pooch==1.9.0 decorator==5.3.1 platformdirs==4.14.8
.venv/bin/python benchmarks/gpu/slim_wheels.py "$OUT/dl" "$OUT/wheels"
for f in "$OUT"/dl/*.whl; do [[ -e "$OUT/wheels/$(basename "$f")" ]] || mv "$f" "$OUT/wheels/"; done
rm -rf "$OUT/dl"
cp benchmarks/gpu/av_stub.py "$OUT/stubs/av/__init__.py"
base=$(.venv/bin/python -c "from pipeline.bundled import assembled_model_dir; print(assembled_model_dir('base'))")
cp "$base"/tokenizer.json "$OUT/whisper-base-tokenizer/"
du -sm --apparent-size "$OUT" "$OUT"/* | sed 's/^/MiB /'
