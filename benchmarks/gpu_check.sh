#!/usr/bin/env bash
# The GPU check (issue 21 §4): on one GPU, with nothing downloadable, each section in its own
# process under its own timeout, then one table (also written to $OUT_DIR/table.md).
#
#   bash benchmarks/gpu_check.sh                      # on the GPU machine (~6-9 min)
#   bash benchmarks/gpu_check.sh --dry-run            # CPU, tiny shapes, seconds
#   SECTIONS=env,matmul,ranker bash benchmarks/gpu_check.sh   # a subset
#
# Environment: PYTHON (default python3), OUT_DIR (default a new temp folder; $OUT when set),
# BUDGET_S (all sections together, default 540: one 10-minute device call), SECTIONS,
# TRAIN_LAYERS (layers of the Llama-2-7B-shaped model in zero3/fsdp, default 4 of 32),
# LIMIT_S (one ceiling for every section instead of each one's own), LIMIT_S_<section>.
set -u
cd "$(dirname "$0")/.."
DRY=""
[ "${1:-}" = "--dry-run" ] && DRY="--dry-run"
PYTHON=${PYTHON:-python3}
OUT_DIR=${OUT_DIR:-${OUT:-$(mktemp -d -t gpu_check.XXXXXX)}}
BUDGET_S=${BUDGET_S:-540}
SECTIONS=${SECTIONS:-env,matmul,ranker,hf_generate,vllm,fsdp,zero3}
TRAIN_LAYERS=${TRAIN_LAYERS:-4}
mkdir -p "$OUT_DIR"
# This checkout's sources, uninstalled: the GPU machine's own Python has torch/transformers.
export PYTHONPATH="$PWD/shared/src$(for p in packages/*/src; do printf ':%s' "$PWD/$p"; done)${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1

limit_for() {  # each section's own ceiling (seconds)
  local own="LIMIT_S_$1"
  if [ -n "${!own:-}" ]; then echo "${!own}"; return; fi
  if [ -n "${LIMIT_S:-}" ]; then echo "$LIMIT_S"; return; fi
  case "$1" in
    env) echo 60 ;; matmul) echo 60 ;; ranker) echo 150 ;; hf_generate) echo 180 ;;
    vllm) echo 240 ;; fsdp|zero3) echo 240 ;; *) echo 120 ;;
  esac
}

start=$(date +%s)
for name in ${SECTIONS//,/ }; do
  left=$(( BUDGET_S - ($(date +%s) - start) - 15 ))  # keep 15 s for the table
  if [ "$left" -lt 5 ]; then
    printf '{"section": "%s", "status": "skipped", "reason": "no time left in BUDGET_S=%s", "rows": []}\n' \
      "$name" "$BUDGET_S" > "$OUT_DIR/$name.json"
    continue
  fi
  limit=$(limit_for "$name")
  [ "$left" -lt "$limit" ] && limit=$left
  echo "== $name (limit ${limit}s)"
  rm -f "$OUT_DIR/$name.json"  # a result from an earlier run must not stand in for this one
  timeout -k 10 "$limit" "$PYTHON" benchmarks/gpu_check.py section "$name" --out "$OUT_DIR" \
    --train-layers "$TRAIN_LAYERS" $DRY > "$OUT_DIR/$name.log" 2>&1
  rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    printf '{"section": "%s", "status": "failed", "reason": "timed out after %ss (log: %s.log)", "rows": []}\n' \
      "$name" "$limit" "$name" > "$OUT_DIR/$name.json"
  fi
  tail -n 1 "$OUT_DIR/$name.log"
done
echo
"$PYTHON" benchmarks/gpu_check.py table "$OUT_DIR" --sections "$SECTIONS"
echo "(results and logs: $OUT_DIR)"
