#!/usr/bin/env bash
# GPU check (docs/benchmarks.md, "GPU check"): every family on a random Llama of a 1B-parameter shape, bf16 and fp32,
# tokens/s, peak memory and bf16-vs-fp32 agreement in one JSON. No downloads; meant to finish in under 8 minutes on
# one GPU (a hard stop at 9). Arguments go to benchmarks/gpu_check.py, e.g.
#   benchmarks/gpu_check.sh                          # writes gpu_check.json
#   benchmarks/gpu_check.sh --out /tmp/g.json --dtypes bf16
#   benchmarks/gpu_check.sh --shape micro --device cpu --threads 1   # the fast CPU form the tests run
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export ACTLAB_QUIET=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
exec timeout 540 "$PY" benchmarks/gpu_check.py --shape 1b --out gpu_check.json "$@"
