#!/usr/bin/env bash
# The scaled default LCM of issue 20, end to end and resumable across working days:
#   1. the corpus (every shared source but the dictionary fragments: wordnet, gcide_defs) as
#      concepts of the codec; the task documents likewise (as tools/train_default_lcm.sh);
#   2. stage 1: a 14M Base-LCM pre-trained by MSE on the corpus
#      (configs/lcm/corpus_base_lcm_m.yaml);
#   3. stage 2: the likelihood fine-tune on the tasks, init_from stage 1
#      (configs/lcm/tasks_likelihood_lcm_m.yaml);
#   4. export and evaluation on the whole test split of both tasks.
#
# Usage: tools/train_scaled_lcm.sh CODEC_DIR [WORK_DIR] [SHARED_DATA]
#   CODEC_DIR    the codec whose space the LCM lives in (e.g. encoders/default)
#   WORK_DIR     data, runs and outputs (default ~/lcm_scale)
#   SHARED_DATA  the shared data folder (default ../shared/data)
# Environment: STAGE1_STEPS, STAGE2_STEPS override the configs' steps (both schedules are
# warmup-stable-decay, so raising the steps of a run still in its stable phase extends it).
# Every step is skipped when its output exists, and training resumes from its newest checkpoint.
set -euo pipefail
CODEC=${1:?usage: tools/train_scaled_lcm.sh CODEC_DIR [WORK_DIR] [SHARED_DATA]}
WORK=${2:-$HOME/lcm_scale}
SHARED=${3:-../shared/data}
PAIRS=$SHARED/pairs/debian_bookworm.jsonl.gz
mkdir -p "$WORK"

if [ ! -f "$WORK/corpus_raw/manifest.json" ]; then
  mapfile -t files < <(ls "$SHARED"/corpus/*.docs.jsonl.gz | grep -v -e /wordnet. -e /gcide_defs.)
  lcm data shards "${files[@]}" --out "$WORK/corpus_raw" --overwrite --no-progress
fi
[ -f "$WORK/corpus/manifest.json" ] ||
  lcm data embed "$WORK/corpus_raw" --codec "$CODEC" --out "$WORK/corpus" --resume --no-progress
[ -f "$WORK/tasks_raw/manifest.json" ] ||
  lcm data build-tasks "$PAIRS" --plain --max-concepts 64 --out "$WORK/tasks_raw" --overwrite
[ -f "$WORK/tasks/manifest.json" ] ||
  lcm data embed "$WORK/tasks_raw" --codec "$CODEC" --out "$WORK/tasks" --resume --no-progress
[ -f "$WORK/tasks/normalizer.npz" ] ||
  lcm data fit-normalizer "$WORK/tasks" --out "$WORK/tasks/normalizer.npz"

data="data.normalizer=$WORK/tasks/normalizer.npz"
lcm train configs/lcm/corpus_base_lcm_m.yaml data.shards="$WORK/corpus" "$data" \
  run_dir="$WORK/runs/corpus_base_lcm_m" ${STAGE1_STEPS:+steps=$STAGE1_STEPS} --no-progress
lcm train configs/lcm/tasks_likelihood_lcm_m.yaml data.shards="$WORK/tasks" "$data" \
  init_from="$WORK/runs/corpus_base_lcm_m" run_dir="$WORK/runs/tasks_likelihood_lcm_m" \
  ${STAGE2_STEPS:+steps=$STAGE2_STEPS} --no-progress
lcm export "$WORK/runs/tasks_likelihood_lcm_m" "$WORK/likelihood_lcm_m"
for task in summarize expand; do
  out=$WORK/eval/likelihood_lcm_m.$task.test.json
  mkdir -p "$WORK/eval"
  lcm eval-task --task "$task" --data "$PAIRS" --split test --model "$WORK/likelihood_lcm_m" \
    --codec "$CODEC" --json "$out.tmp"
  mv "$out.tmp" "$out"
done
