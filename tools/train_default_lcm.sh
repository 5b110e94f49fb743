#!/usr/bin/env bash
# Rebuild the default LCM (lcm/default) from a codec, end to end:
#   task documents from the pairs' train split -> concepts -> normalizer -> training ->
#   model directory -> evaluation on the pairs' test split.
#
# Usage: tools/train_default_lcm.sh CODEC_DIR [PAIRS] [WORK_DIR] [CONFIG] [key=value ...]
#   CODEC_DIR  the codec whose space the LCM lives in (e.g. encoders/default)
#   PAIRS      pairs file (default ../shared/data/pairs/debian_bookworm.jsonl.gz)
#   WORK_DIR   data, run and output folder (default ~/lcm_default)
#   CONFIG     training config (default configs/lcm/tasks_base_lcm.yaml)
# Every step is skipped when its output exists, so a rerun resumes where it stopped.
set -euo pipefail
CODEC=${1:?usage: tools/train_default_lcm.sh CODEC_DIR [PAIRS] [WORK_DIR] [CONFIG] [key=value ...]}
PAIRS=${2:-../shared/data/pairs/debian_bookworm.jsonl.gz}
WORK=${3:-$HOME/lcm_default}
CONFIG=${4:-configs/lcm/tasks_base_lcm.yaml}
shift $(( $# < 4 ? $# : 4 ))
NAME=$(basename "$CONFIG" .yaml)
mkdir -p "$WORK"

[ -f "$WORK/tasks_raw/manifest.json" ] ||
  lcm data build-tasks "$PAIRS" --plain --max-concepts 64 --out "$WORK/tasks_raw" --overwrite
[ -f "$WORK/tasks/manifest.json" ] ||
  lcm data embed "$WORK/tasks_raw" --codec "$CODEC" --out "$WORK/tasks" --overwrite
[ -f "$WORK/tasks/normalizer.npz" ] ||
  lcm data fit-normalizer "$WORK/tasks" --out "$WORK/tasks/normalizer.npz"
lcm train "$CONFIG" data.shards="$WORK/tasks" data.normalizer="$WORK/tasks/normalizer.npz" \
  run_dir="$WORK/runs/$NAME" --no-progress "$@"
lcm export "$WORK/runs/$NAME" "$WORK/$NAME"
for task in summarize expand; do
  lcm eval-task --task "$task" --data "$PAIRS" --split test --limit 200 \
    --model "$WORK/$NAME" --codec "$CODEC" --json "$WORK/$NAME.eval-$task.json"
done
