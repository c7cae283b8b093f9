# Sourced by quickstart.sh and test.sh: create/refresh a local virtual environment in .venv.
# torch goes in first so that no dependency pulls a multi-GB CUDA build on CPU machines;
# an already-installed compatible torch (>= 2.13) is kept.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TRIMO_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[trimo] creating virtual environment in $VENV"
    "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"

have_torch=$(python - <<'PY'
try:
    import torch
    major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    print("yes" if (major, minor) >= (2, 13) else "no")
except Exception:
    print("no")
PY
)
if [ "$have_torch" != "yes" ]; then
    echo "[trimo] installing torch 2.13.0"
    pip install --quiet "torch==2.13.0"
fi

# Mesa's EGL (CPU llvmpipe) for the headless video renderer; without it rendering falls back to
# the slower NumPy rasterizer. Installed only when missing and when we may (root with apt-get).
if ! ldconfig -p 2>/dev/null | grep -q "libEGL_mesa.so.0" || ! ldconfig -p 2>/dev/null | grep -q "libGL.so.1"; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        echo "[trimo] installing Mesa EGL (libegl1 libgl1) for headless rendering"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri) \
            >/dev/null || echo "[trimo] could not install libegl1/libgl1: rendering will use the NumPy fallback"
    else
        echo "[trimo] libEGL/libGL not found: rendering will use the NumPy fallback (apt-get install libegl1 libgl1)"
    fi
fi

# Reinstall the project only when pyproject.toml changed since the last install.
stamp="$VENV/.trimo-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "[trimo] installing trimo (editable) with its dependencies"
    pip install --quiet -e "$ROOT[dev]"
    touch "$stamp"
fi

# DeepSpeed's CPU accelerator where torch sees no GPU (tests and quickstart on CPU machines); on a
# GPU machine DeepSpeed picks CUDA itself.
if [ -z "${DS_ACCELERATOR:-}" ] && [ "$(python -c 'import torch; print(torch.cuda.is_available())')" != "True" ]; then
    export DS_ACCELERATOR=cpu
fi
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export WANDB_MODE="${WANDB_MODE:-offline}"
export TOKENIZERS_PARALLELISM=false
cd "$ROOT"

# ensure_demo DIR SIZE [GENERATOR]: the demo corpus in DIR, built unless both of its shard sets are
# ones this trimo reads (an index of an older schema version is rebuilt, never trained on), the
# localization set has the default moment style ("context"; an older "isolated" set is rebuilt)
# and both come from the generator version asked for (2 unless named; 1 records none).
ensure_demo() {
    local data="$1" size="$2" generator="${3:-2}"
    if python -c "import sys; from shards.reader import load_index; indices = [load_index(p) for p in sys.argv[2:]]
assert indices[1].extra.get('moments') == 'context'
assert all(i.extra.get('generator', 1) == int(sys.argv[1]) for i in indices)" \
        "$generator" "$data/retrieval/shards.json" "$data/localization/shards.json" 2>/dev/null; then
        echo "[trimo] reusing $data (delete it to rebuild)"
    else
        trimo-build-demo --out "$data" --size "$size" --seed 0 --generator "$generator"
    fi
}
