#!/usr/bin/env bash
# The ablation as run for docs/ablation.md: phases in priority order, each resumable (runs already in
# ablation.json are skipped), so whatever finished in the time available is in the table.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
A="python benchmarks/ablation.py --out benchmarks/results/ablation"
$A --datasets sst2 --residuals none add                          # 1. the core comparison, SST-2
$A --datasets sst2 --residuals none-noln --noln-depths 1 8 12    # 2. the classic plain stack (no LayerNorm)
$A --datasets imdb --residuals none add                          # 3. the core comparison, IMDB subset
$A --datasets sst2 --residuals gated                             # 4. highway mode
$A --datasets imdb --residuals gated
$A --datasets imdb --residuals none-noln --noln-depths 8 12
$A --datasets sst2 --residuals none add --seeds 1                # 5. a second seed
$A --datasets sst2 --residuals none add --depths 12 8 --seeds 1 2   # 6. three seeds where the modes differ most
$A --datasets imdb --residuals none add --depths 12 8 --seeds 1 2
$A --datasets sst2 --residuals none add --depths 1 2 4 --seeds 2    # 7. a third seed for the shallow SST-2 runs
$A --datasets imdb --residuals none add --depths 1 2 4 --seeds 1 2  # 8. three seeds everywhere else
$A --datasets sst2 --residuals gated --seeds 1 2
$A --datasets imdb --residuals gated --seeds 1 2
$A --datasets sst2 --residuals none-noln --noln-depths 1 8 12 --seeds 1 2
$A --datasets imdb --residuals none-noln --noln-depths 8 12 --seeds 1 2
