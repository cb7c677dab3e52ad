#!/usr/bin/env bash
# On a machine with CUDA: the reference benchmark on the GPU, then GPU vs CPU results within 1e-4.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device here')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python bench/reference_speed.py --device cuda
python bench/gpu_check.py
