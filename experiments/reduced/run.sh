#!/usr/bin/env bash
# The study's second experiment (clear vs cloudy training of a ResNet18 SAR+optical fusion
# network, SHAPE relevance on clear / cloudy / very cloudy test data) at reduced scale on
# generated SEN12MS + SEN12MS-CR data. See docs/study.md.
#
#   experiments/reduced/run.sh [WORK]      from the repository root
#
# WORK (default: experiments/reduced/work, git-ignored) holds the generated data, stores and
# checkpoints; the small outputs (results JSONs, training metrics, cards, report) are copied to
# experiments/reduced/results/, which is committed. Scale knobs (environment variables):
# PATCHES (generated patches, 75 % train), SIZE (px), EPOCHS, SEEDS (runs per setup), BATCH.
set -euo pipefail

cd "$(dirname "$0")/../.."  # the repository root: paths in the outputs stay relative
here=experiments/reduced
work="${1:-$here/work}"
results="${RESULTS:-$here/results}"
sareval="${SAREVAL:-sareval}"
patches="${PATCHES:-1200}"
size="${SIZE:-32}"
epochs="${EPOCHS:-25}"
seeds="${SEEDS:-0-2}"
batch="${BATCH:-32}"
setups=("clear:0" "cloudy:0.8")
subsets=(clear cloudy very_cloudy)

start=$(date +%s)
log() { echo "[$(( $(date +%s) - start )) s] $*"; }
mkdir -p "$work" "$results"

# 1. data: the generator (seed 0) gives train and held-out test scenes; the same generator
#    with seed 1 gives independent scenes for validation (its train list).
if [ ! -d "$work/data" ]; then
  log "generating $patches patches of ${size}x${size} px"
  "$sareval" -q synth sen12ms "$work/data" --patches "$patches" --size "$size" --seed 0
fi
if [ ! -d "$work/data-val" ]; then
  "$sareval" -q synth sen12ms "$work/data-val" --patches $(( patches / 4 )) --size "$size" --seed 1
fi

# 2. stores (with the SEN12MS-CR cloudy optical version and the clear/cloudy/very_cloudy subsets)
for spec in train:data:train test:data:test val:data-val:train; do
  IFS=: read -r name tree split <<< "$spec"
  if [ ! -f "$work/stores/$name.h5" ]; then
    log "preprocessing $name"
    ms="$work/$tree/sen12ms"
    "$sareval" -q preprocess sen12ms "$ms" --split-list "$ms/${split}_list.pkl" \
      --labels "$ms/IGBP_probability_labels.pkl" --cr-root "$work/$tree/sen12mscr" \
      --out "$work/stores/$name.h5"
  fi
done

# 3. training: both setups, several seeds each (an interrupted run resumes from last.pt)
for setup in "${setups[@]}"; do
  IFS=: read -r label prob <<< "$setup"
  log "training $label (cloudy-prob $prob), seeds $seeds, $epochs epochs"
  "$sareval" train --data "$work/stores/train.h5" --val "$work/stores/val.h5" \
    --arch resnet18 --preset study-resnet18 --task single-label --cloudy-prob "$prob" \
    --epochs "$epochs" --batch-size "$batch" --seeds "$seeds" --device cpu --in-memory \
    --out "$work/runs/$label"
  test -f "$work/runs/$label/seed-${seeds%%[-,]*}/model.onnx"
done

# 4. SHAPE relevance of every run on the test subsets; copy the small outputs
for setup in "${setups[@]}"; do
  label="${setup%%:*}"
  for run in "$work/runs/$label"/seed-*; do
    dest="$results/$label/$(basename "$run")"
    mkdir -p "$dest"
    cp "$run/metrics.jsonl" "$run/config.json" "$run/card.json" "$dest/"
    for subset in "${subsets[@]}"; do
      by=()
      [ "$subset" = cloudy ] && by=(--by cloud-cover)
      "$sareval" -q shape --model "$run/model.onnx" --data "$work/stores/test.h5" \
        --subset "$subset" "${by[@]}" --out "$dest/shape-$subset.json" --overwrite > /dev/null
      rm -f "$dest/shape-$subset.csv"
    done
  done
  log "evaluated $label"
done

# 5. report: tables and figures over the runs of each setup
"$sareval" report "clear-trained=$results/clear" "cloudy-trained=$results/cloudy" \
  --metric oa,aa,f1_macro --out "$results/report" --overwrite > /dev/null
log "done: $results/report/summary.md"
