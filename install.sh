#!/usr/bin/env bash
# semlat's one-command install. Run from the repository root:   bash install.sh
#
# 1. System packages: flite and espeak-ng for the demo corpus, chromium for the app's browser tests (dev extra)
#    (apt-get where available, else a hint).
# 2. A Python environment: the active virtualenv/conda env if there is one, else ./.venv.
# 3. PyTorch: kept if already installed (bring your own CUDA build first), else torch==2.13.0 (CPU).
# 4. semlat in editable mode with the extras in $SEMLAT_EXTRAS (default "dev"), pinned to the
#    installed torch by a constraints file so no dependency can swap it for another build.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '[install] %s\n' "$*"; }

# --- 1. system packages ------------------------------------------------------------------
missing=()
command -v flite >/dev/null 2>&1 || missing+=(flite)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
# pesq, pyworld and webrtcvad (the eval metrics, in the dev extra) compile C code at install time.
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
# The app's browser tests (dev extra) drive the system chromium headlessly (playwright, no browser download).
case ",${SEMLAT_EXTRAS:-dev}," in
  *,dev,*) command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium) ;;
esac
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd=(sudo); fi
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ ${#sudo_cmd[@]} -gt 0 ]; }; then
    say "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null \
      || { "${sudo_cmd[@]}" apt-get update -qq >/dev/null && "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null; } \
      || say "WARNING: apt-get could not install ${missing[*]}; the demo corpus (and the app tests) need them"
  else
    say "WARNING: ${missing[*]} not found and apt-get is not usable here. The demo corpus (and the app tests) need them:"
    say "  Fedora: sudo dnf install flite espeak-ng chromium    macOS: brew install flite espeak-ng (and a Chromium)"
  fi
fi

# --- 2. python environment ---------------------------------------------------------------
if [ -n "${VIRTUAL_ENV:-}" ] || [ -n "${CONDA_PREFIX:-}" ]; then
  py=python
  say "using the active environment ($(command -v python))"
else
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    "${PYTHON:-python3}" -m venv .venv
  fi
  py=.venv/bin/python
fi
"$py" -m pip install -q --upgrade "pip>=23" >/dev/null 2>&1 || true

# --- 3. torch ----------------------------------------------------------------------------
if "$py" -c "import torch" >/dev/null 2>&1; then
  say "keeping installed torch $("$py" -W ignore -c 'import torch; print(torch.__version__)')"
else
  say "installing torch==${SEMLAT_TORCH_VERSION:-2.13.0}"
  "$py" -m pip install -q "torch==${SEMLAT_TORCH_VERSION:-2.13.0}" 2>&1 | grep -v "is ignored: it is neither" || true
  "$py" -W ignore -c "import torch" || { say "ERROR: torch did not install"; exit 1; }
fi

# --- 4. semlat ---------------------------------------------------------------------------
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
"$py" -W ignore -c 'import torch; print("torch==" + torch.__version__)' > "$constraints"
extras=${SEMLAT_EXTRAS:-dev}
say "installing semlat[$extras] (torch pinned: $(cat "$constraints"))"
if ! "$py" -m pip install -q -c "$constraints" -e ".[$extras]" 2>&1 | { grep -v "is ignored: it is neither" || true; }; then
  say "ERROR: pip could not install semlat[$extras] (pesq, pyworld and webrtcvad need a C compiler and the Python headers)"
  exit 1
fi
"$py" -c 'import semlat, torch; print("[install] semlat", semlat.__version__, "with torch", torch.__version__)'
if [ "$py" = ".venv/bin/python" ]; then
  say "done: activate with   source .venv/bin/activate"
fi
