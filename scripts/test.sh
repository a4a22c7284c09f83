#!/usr/bin/env bash
# Set up a virtual environment (CPU PyTorch) and run the test suite, offline.
#   bash scripts/test.sh            # default suite (a few minutes)
#   bash scripts/test.sh -m slow    # long checks on real data
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_venv.sh dev
# one thread (two contend badly on small CPUs) and nothing waits on the network
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest "$@"
