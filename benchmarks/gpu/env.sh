# Source on the device machine, in the repo root, in a call that carries .whl-gpu
# (benchmarks/gpu/wheels.sh made it here):
#   source benchmarks/gpu/env.sh && python3 -m benchmarks.bench_gpu --out $OUT/bench_gpu.md
W=$PWD/.whl-gpu
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$W"/wheels/*.whl || return 1
export PYTHONPATH=$W/stubs:/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export WXS_WHISPER_TOKENIZER_DIR=$W/whisper-base-tokenizer
export PYANNOTE_METRICS_ENABLED=false HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
# CTranslate2 ships kernels up to sm_86 (+ PTX): a Hopper GPU JIT-compiles them on first use,
# cached here; bench_gpu warms every model up before timing. libcublas.so.12 (CTranslate2 is
# built for CUDA 12; the machine has CUDA 13): bench_gpu.py links it to the .so.13 itself.
export CUDA_CACHE_MAXSIZE=4294967296
