#!/usr/bin/env bash
# Build the reference venv of the SONAR parity tests (tests/test_sonar.py): sonar-space and
# fairseq2 on a CPU torch, without fairseq2's native library (tools/sonar_reference.py puts
# a pure-Python stand-in for it on sys.path). Kept apart from the project's venv, whose
# jax/numpy versions it must not touch.
#
#   tools/setup_sonar_venv.sh [VENV_DIR]        (default: .venv-sonar)
#
# Environment:
#   TORCH_SPEC        what pip installs as torch (default "torch"; a CPU build is enough, e.g.
#                     "torch --index-url https://download.pytorch.org/whl/cpu" or a .whl path)
#   SONAR_WHEELS_DIR  a folder holding sonar_space-0.5.0 / fairseq2-0.8.1 wheels (optional)
# Then: export LCM_SONAR_PYTHON=VENV_DIR/bin/python (or use .venv-sonar, found by default).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-sonar}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)
# shellcheck disable=SC2086  # TORCH_SPEC may hold options
"${PIP[@]}" ${TORCH_SPEC:-torch}
FIND=()
[ -n "${SONAR_WHEELS_DIR:-}" ] && FIND=(--find-links "$SONAR_WHEELS_DIR")
# --no-deps: fairseq2's own requirements pin fairseq2n (native, CUDA torch) and pull in
# wandb, tensorboard, ...; the imports of its model, generation and SONAR code need only these.
"${PIP[@]}" --no-deps "${FIND[@]}" "fairseq2==0.8.1" "sonar-space==0.5.0"
"${PIP[@]}" numpy tqdm "packaging~=24.1" "huggingface_hub~=0.32" "importlib_resources~=6.4" \
    "importlib_metadata~=7.0" "ruamel.yaml~=0.18" "mypy-extensions~=1.0" "psutil~=5.9" \
    "rich~=14.2" "typing_extensions~=4.12" "fsspec>=2024.1" "safetensors~=0.6" \
    "clusterscope~=0.0.31" "transformers~=4.57" "tiktoken~=0.12"
"$VENV/bin/python" tools/sonar_reference.py --check
echo "SONAR reference venv ready: export LCM_SONAR_PYTHON=$VENV/bin/python"
