#!/usr/bin/env bash
# Set up a virtual environment (CPU PyTorch) and run the test suite, offline.
#   bash scripts/test.sh            # default suite (a few minutes)
#   bash scripts/test.sh -m slow    # long checks on real data
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_venv.sh dev
exec .venv/bin/python -m pytest "$@"
