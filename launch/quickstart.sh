#!/usr/bin/env bash
# The main job on the built-in demo data (CPU or GPU): build the demo shards, train every head jointly
# with `accelerate launch` (2 processes, DeepSpeed ZeRO-2), evaluate on the demo test split.
# Environment knobs: TRIMO_DEMO_SIZE (tiny|small|default|large), TRIMO_DEMO_GENERATOR (2, or 1: the
# corpus the ablations were measured on), TRIMO_QUICKSTART_STEPS,
# TRIMO_NUM_PROCESSES (default: the GPU count, 2 on CPU).
set -euo pipefail
start=$(date +%s)
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
size="${TRIMO_DEMO_SIZE:-small}"
generator="${TRIMO_DEMO_GENERATOR:-2}"
data="data/demo-$size$([ "$generator" = 1 ] || echo "-v$generator")"   # generator 1 kept the old folder names
run="runs/quickstart"

echo "[trimo] 1/3 demo corpus ($size, generator $generator) -> $data"
ensure_demo "$data" "$size" "$generator"

# One process per GPU on a CUDA machine, two over gloo on CPU (TRIMO_NUM_PROCESSES overrides).
if gpus=$(python -c "import torch, sys; n = torch.cuda.device_count(); print(n); sys.exit(n == 0)"); then
    where="$gpus GPU(s)"
else
    gpus=2 where="CPU"
fi
procs="${TRIMO_NUM_PROCESSES:-$gpus}"
echo "[trimo] 2/3 training all heads jointly: $procs processes, DeepSpeed ZeRO-2 on $where"
rm -rf "$run"
accelerate launch --config_file accelerate_config.yaml --num_processes "$procs" -m launch.train \
    --config configs/quickstart.yaml \
    run.output_dir="$run" \
    data.retrieval.index="$data/retrieval/shards.json" \
    data.localization.index="$data/localization/shards.json" \
    data.caption_cache="$data/caption_embeddings.safetensors" \
    validation.retrieval_index="$data/retrieval/shards.json" \
    validation.localization_index="$data/localization/shards.json" \
    ${TRIMO_QUICKSTART_STEPS:+run.max_steps=$TRIMO_QUICKSTART_STEPS}

echo "[trimo] 3/3 evaluation on the demo test split"
trimo-evaluate --model "$run/export" \
    --shards "$data/retrieval/shards.json" --localization-shards "$data/localization/shards.json" \
    --split test --out "$run/eval"

cat "$run/eval/metrics.md"
echo
echo "[trimo] plots:      $run/eval/plots/"
echo "[trimo] metrics:    $run/eval/metrics.json"
echo "[trimo] checkpoint: $run/checkpoints/ (latest), exported model: $run/export/"
echo "[trimo] quickstart finished in $(( $(date +%s) - start )) s (set-up, corpus, training, evaluation)"
