#!/usr/bin/env bash
# Train the codec in a fixed wall-clock budget (made for a borrowed GPU), then export it:
#   1. stable phase at constant learning rate until 70% of the budget (`--time-limit`);
#   2. the measured steps/s sizes a linear cooldown that fills the rest of the budget;
#   3. `lcm export` writes the model directory to RUN_DIR/export.
# Each phase checkpoints, so an interrupted run resumes with the same command.
#
# Usage: tools/train_codec_gpu.sh DATA_DIR RUN_DIR BUDGET_MINUTES [key=value ...]
#   DATA_DIR  prepared codec data (tools/prepare_codec_data.py), e.g. ~/data/codec_v2
#   CONFIG    $CONFIG, default configs/encoders/codec_gpu.yaml; LCM, default `lcm`
set -euo pipefail
DATA=${1:?usage: tools/train_codec_gpu.sh DATA_DIR RUN_DIR BUDGET_MINUTES [key=value ...]}
RUN=${2:?run dir}
BUDGET=${3:?budget in minutes}
shift 3
CONFIG=${CONFIG:-configs/encoders/codec_gpu.yaml}
LCM=${LCM:-lcm}
START=$(date +%s)
EXPORT_S=40  # export and margin

elapsed() { echo $(( $(date +%s) - START )); }

# 1. stable phase
STABLE_MIN=$(python3 -c "print($BUDGET * 0.7)")
$LCM train "$CONFIG" data.data_dir="$DATA" run_dir="$RUN" --time-limit "$STABLE_MIN" \
  --no-progress "$@"

# 2. cooldown sized from the measured speed
read -r DONE COOL LIMIT < <(python3 - "$RUN/metrics.jsonl" "$BUDGET" "$(elapsed)" "$EXPORT_S" <<'PY'
import json, statistics, sys
records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
done = records[-1]["step"]
rate = statistics.median(r["steps_per_s"] for r in records[-5:] if "steps_per_s" in r)
left = float(sys.argv[2]) * 60 - float(sys.argv[3]) - float(sys.argv[4])
compile_s = 80  # restore, then the changed schedule recompiles each bucket (~70 s on an H100)
cool = max(int(rate * (left - compile_s)), 1)
print(done, cool, max(left, 1) / 60)
PY
)
echo "stable phase ended at step $DONE after $(elapsed) s; cooldown of $COOL steps"
$LCM train "$CONFIG" data.data_dir="$DATA" run_dir="$RUN" steps=$((DONE + COOL)) \
  optim.cooldown_steps="$COOL" --time-limit "$LIMIT" --no-progress "$@" ||
  echo "cooldown phase failed; exporting the last checkpoint"

# 3. model directory
$LCM export "$RUN" "$RUN/export"
echo "done in $(elapsed) s"
