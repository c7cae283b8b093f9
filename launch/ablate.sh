#!/usr/bin/env bash
# The papers' ablations on the demo corpus, one table (launch/ablate.py says what each study is):
# with vs without chronological negatives, MLPBase vs MLP-S vs MLP, 2-modal vs 3-modal.
# Builds the default demo corpus (3,000 clips, about 3 minutes) unless a current one exists, then trains and
# evaluates every arm for every seed (2 runs at a time). Extra arguments go to launch/ablate.py,
# e.g. `bash launch/ablate.sh --seeds 0 --retrieval-steps 100`. Finished runs are reused.
set -euo pipefail
start=$(date +%s)
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
data="data/demo-default"
ensure_demo "$data" default 1   # demo generator 1: the corpus the README's ablation figures were measured on
trimo-ablate --data "$data" --out runs/ablate "$@"
echo "[trimo] ablations finished in $(( $(date +%s) - start )) s"
