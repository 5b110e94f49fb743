#!/usr/bin/env bash
# The codec A/B of issue 21, resumable across working days: the denoising recipe
# (configs/encoders/codec_small.yaml) against CALM's variational one
# (configs/encoders/codec_calm.yaml), from scratch, at equal steps (equal batches of the same
# data stream, so equal tokens), on the codec data of the widened corpus, then the round trip
# of each (in-domain test split and every held-out source, clean and with noise 0.1 and 0.3).
#
# Usage: tools/codec_ab.sh CODEC_DATA [WORK_DIR] [STEPS]
#   CODEC_DATA  tools/prepare_codec_data.py output (e.g. ~/data/codec_v3)
#   WORK_DIR    runs and reports (default ~/codec_ab)
#   STEPS       steps per arm (default 3000; warmup-stable-decay, so a run still in its
#               stable phase extends when STEPS is raised)
# Rerunning continues each run from its newest checkpoint; a finished arm is skipped.
set -euo pipefail
DATA=${1:?usage: tools/codec_ab.sh CODEC_DATA [WORK_DIR] [STEPS]}
WORK=${2:-$HOME/codec_ab}
STEPS=${3:-3000}
mkdir -p "$WORK/eval"
for arm in small calm; do
  run=$WORK/runs/codec_$arm
  lcm train "configs/encoders/codec_$arm.yaml" data.data_dir="$DATA" run_dir="$run" \
    steps="$STEPS" optim.decay=wsd optim.cooldown_steps=$((STEPS / 5)) \
    checkpoint.every=250 checkpoint.keep=2 --no-progress
  out=$WORK/eval/codec_$arm.test.json
  [ -f "$out" ] || {
    lcm eval-codec "$run" --data "$DATA" --split test --noise 0.1 0.3 --json "$out.tmp"
    mv "$out.tmp" "$out"
  }
done
