#!/usr/bin/env bash
# GPU readiness in one command on a CUDA node: kernels vs eager, attention timings, the
# contrastive loss at B = 65,536, a DeepSpeed bf16 run and the quickstart (launch/gpu_check.py).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
python -m launch.gpu_check "$@"
