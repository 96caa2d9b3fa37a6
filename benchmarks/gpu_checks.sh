#!/usr/bin/env bash
# The prepared GPU checks of the project, as one script (issue 11). Run it on a machine with a CUDA
# device from the repository root; every step has its own time limit and a rerun continues where
# the last one stopped (finished runs are never retrained), so it fits short device sessions:
#
#   bash benchmarks/gpu_checks.sh [BOOK_SECONDS]      # default 420 s for the gpu preset's book
#
# It prints (and writes to ${OUT:-.}/gpu_checks.log): every backbone at the paper's input size
# (knees/s, peak memory, bf16 vs fp32), `pytest -m gpu` (mamba_ssm against the PyTorch scan where
# mamba_ssm installs), and as much of `oaprobe book --preset gpu` as BOOK_SECONDS allow.
set -uo pipefail
cd "$(dirname "$0")/.."
log="${OUT:-.}/gpu_checks.log"
book_seconds="${1:-420}"
py=python
[ -x .venv/bin/python ] && py=.venv/bin/python
{
  echo "== nvidia-smi"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  echo "== torch"; $py -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.version.cuda)"
  echo "== backbones at the paper's input size"; timeout 240 $py benchmarks/gpu_check.py --steps 5 || echo "gpu_check: exit $?"
  echo "== pytest -m gpu"; timeout 240 $py -m pytest -q -m gpu -p no:randomly || echo "pytest -m gpu: exit $?"
  echo "== gpu preset book (${book_seconds} s; rerun to continue)"
  start=$(date +%s)
  timeout "$book_seconds" $py -m oaprobe book --preset gpu --jobs 1 --runs runs-gpu --site _build/gpu-site
  echo "book: exit $? after $(( $(date +%s) - start )) s; finished runs: $(ls runs-gpu/*/DONE 2>/dev/null | wc -l)"
} 2>&1 | tee "$log"
